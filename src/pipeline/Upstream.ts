/**
 * The upstream stage: select a target (balancer + health + circuit), forward
 * the request with its body (bounded by `limits { max-body-size }` while
 * streaming), stream the answer back through the route's response stages, and
 * retry on another target when the route's `retry-policy` and the retry
 * budget allow it and it is safe:
 * - nothing reached the upstream (refused, connect timeout, still queued):
 *   always safe; such fail-overs are made even without a `retry-policy`
 *   (bounded by the target count, at most 3 attempts) and do not draw on the
 *   budget, since the failed target did no work;
 * - after sending: only idempotent methods unless `retry-non-idempotent`,
 *   only with a replayable body (none, or buffered), drawing on the budget;
 * - never once response headers went to the client.
 *
 * One fiber per request runs it; each attempt is one `Effect.async`
 * (`forward`) that owns its deadlines, the per-attempt timeout included.
 * Interruption (client gone) aborts the exchange and reports the attempt to
 * the target as "aborted" (neither success nor failure).
 */
import { Transform, type TransformCallback } from "node:stream"
import type { IncomingMessage } from "node:http"
import type { Socket } from "node:net"
import { performance } from "node:perf_hooks"
import { Effect } from "effect"
import type { BalancerContext } from "../upstream/Balancer.js"
import {
  startExchange,
  type ExchangeDone,
  type ExchangeHandle,
  type ForwardError,
  type ForwardOutcome,
  type ForwardRequest,
  type ResponseSink
} from "../upstream/Forward.js"
import { noRetryPolicy, shouldRetry, type FailureKind, type RetryPolicy } from "../upstream/Retry.js"
import { resultOfStatus, type AttemptResult } from "../upstream/Target.js"
import type { UpstreamRuntime, UpstreamTarget } from "../upstream/Upstreams.js"
import type { StageSpan } from "../observability/RequestTrace.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import { errorAnswer } from "./ErrorResponse.js"
import {
  ClientClosed,
  type DownstreamError,
  RouteCircuitOpen,
  NoHealthyUpstream,
  RequestRejected,
  RequestTimeout,
  type ProxyError
} from "./Errors.js"
import { connectionTokens, isHopByHop, removeHeaders } from "./Headers.js"
import type { RequestContext } from "./RequestContext.js"
import { holdResponse, type HeldSink } from "./ResponseHold.js"
import { readBodyUpTo } from "./BodyRead.js"

/**
 * Smallest buffering limit of a route whose retry-policy allows more than one attempt: a
 * declared body up to this (or up to `limits { request-buffer-size }`, if larger) is read
 * into memory before the first attempt so that a retry can replay it. Larger or chunked
 * bodies stream and are not replayed. Also the default of `request-buffer-size`.
 */
export const DEFAULT_RETRY_BUFFER_BYTES = 64 * 1024

/** Counts streamed request bytes and fails the upload once it passes the limit. */
class BodyLimit extends Transform {
  private seen = 0
  constructor(private readonly limit: number, private readonly ctx: RequestContext) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) {
      this.ctx.bodyTooLarge = true
      cb(new Error("request body over limit"))
      return
    }
    cb(null, chunk)
  }
}

interface BodySource {
  readonly body: ForwardRequest["body"]
  /** The same bytes can be sent again (no body, or a Buffer). */
  readonly replayable: boolean
}

const NO_BODY: BodySource = { body: null, replayable: true }

/** Reads a declared-length body into memory; the client going away fails it. Returns a cancel function. */
const bufferBody = (
  req: IncomingMessage,
  limit: number,
  done: (error: ProxyError | undefined, body: BodySource | undefined) => void
): (() => void) =>
  readBodyUpTo(req, limit, (read) => {
    if (read._tag === "Failed") return done(new ClientClosed(), undefined)
    // over the limit cannot happen with a correct Content-Length (the parser frames the body); be safe
    if (!read.complete) return done(new RequestRejected({ status: 413, reason: "body_too_large" }), undefined)
    done(undefined, { body: read.data, replayable: true })
  })

/** An HTTP/2 request whose HEADERS frame carried END_STREAM: it has no body. */
const headersEndedStream = (req: IncomingMessage): boolean =>
  (req as unknown as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders === true

/** The body to send: at hand, or `"buffer"` when it must be read into memory first (replayable). */
const requestBody = (ctx: RequestContext, plan: RoutePlan, bufferLimit: number): BodySource | "buffer" => {
  const pre = ctx.upstreamBody
  if (pre !== undefined) return pre === null || Buffer.isBuffer(pre) ? { body: pre, replayable: true } : { body: pre, replayable: false }
  const h = ctx.req.headers
  // HTTP/2 frames a body without Content-Length (unless the headers ended the stream): it
  // streams upstream chunked, bounded like a chunked HTTP/1.1 body
  const unframed = h["transfer-encoding"] !== undefined || (ctx.http2 && h["content-length"] === undefined && !headersEndedStream(ctx.req))
  // buffer-requests: every body is read whole first, within the route's limit
  if (unframed && plan.bufferRequests) return "buffer"
  if (unframed) {
    const limited = new BodyLimit(plan.maxBodySize, ctx)
    ctx.req.pipe(limited)
    return { body: limited, replayable: false }
  }
  const cl = h["content-length"]
  if (cl === undefined || cl === "0") return NO_BODY
  if (bufferLimit > 0 && Number(cl) <= bufferLimit) return "buffer"
  return { body: ctx.req, replayable: false }
}

/**
 * The response written to the client: head filtered and extended, body with back-pressure.
 * A client slower than the upstream gets up to `bufferLimit` bytes held for it (node's
 * writable buffer) before the upstream is paused, so a response of that size frees its
 * upstream connection at the upstream's pace, not the client's (nginx's proxy buffering,
 * in memory only).
 */
class DirectSink implements ResponseSink {
  constructor(
    private readonly ctx: RequestContext,
    private readonly draining: () => boolean,
    private readonly plan: RoutePlan,
    private readonly setCookie: string | undefined,
    private readonly bufferLimit: number
  ) {}

  start(status: number, raw: Array<Buffer>): boolean {
    const ctx = this.ctx
    const flat: Array<string> = []
    let connection: string | undefined
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString("latin1")
      if (isHopByHop(name)) {
        if (name.length === 10 && name.toLowerCase() === "connection") {
          const v = raw[i + 1].toString("latin1")
          connection = connection === undefined ? v : `${connection}, ${v}`
        }
        continue
      }
      flat.push(name, raw[i + 1].toString("latin1"))
    }
    // names listed in Connection are hop-by-hop too (rare beyond keep-alive/close)
    const named = connectionTokens(connection)
    if (named !== undefined) removeHeaders(flat, named)
    flat.push("x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId)
    if (this.setCookie !== undefined) flat.push("set-cookie", this.setCookie)
    if (ctx.responseHeaders !== undefined) flat.push(...ctx.responseHeaders)
    this.plan.responsePolicy?.(flat)
    for (const stage of this.plan.response) stage(ctx, status, flat)
    if (this.draining() && !ctx.http2) flat.push("connection", "close")
    try {
      ctx.res.writeHead(status, flat)
    } catch {
      ctx.error = "upstream_invalid_header"
      return false
    }
    ctx.status = status
    return true
  }

  data(chunk: Buffer): boolean {
    this.ctx.bytesSent += chunk.length
    const res = this.ctx.res
    // once write() says full, node emits `drain` when the buffer empties, which resumes us
    return res.write(chunk) || res.writableLength < this.bufferLimit
  }

  onDrain(resume: () => void): void {
    this.ctx.res.once("drain", resume)
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    const res = this.ctx.res
    // Trailer fields pass through (HTTP/2, or a chunked HTTP/1.1 response); node drops them
    // for a client that cannot take them (HTTP/1.0, a response with a Content-Length)
    if (trailers !== undefined && trailers !== null) {
      const fields: Record<string, string> = {}
      for (let i = 0; i + 1 < trailers.length; i += 2) {
        const name = latin1(trailers[i]).toLowerCase()
        if (isHopByHop(name) || name === "content-length" || name === "host") continue
        const v = latin1(trailers[i + 1])
        fields[name] = fields[name] === undefined ? v : `${fields[name]}, ${v}`
      }
      try {
        res.addTrailers(fields)
      } catch {
        // invalid trailer fields are dropped, the body is still complete
      }
    }
    res.end()
  }
}

const latin1 = (v: Buffer | string): string => (typeof v === "string" ? v : v.toString("latin1"))

/** No body may follow these heads (RFC 9110 §6.4.1): their Content-Length is never rewritten. */
const bodiless = (status: number, method: string): boolean => method === "HEAD" || status === 204 || status === 304 || status < 200

/**
 * `policies { buffer-responses }`: the head and body wait here until the response is complete
 * (then the head goes out with its real Content-Length) or `limit` bytes arrived (then what is
 * held goes out and the rest streams). Until the head goes out, an upstream failure is still
 * answered cleanly (the pipeline's 502), never a cut response.
 */
class BufferedSink implements ResponseSink {
  private status = 0
  private raw: Array<Buffer> = []
  private held: Array<Buffer> | undefined = []
  private size = 0
  private passed = true

  constructor(
    private readonly base: ResponseSink,
    private readonly limit: number,
    private readonly method: string
  ) {}

  start(status: number, raw: Array<Buffer>): boolean {
    this.status = status
    this.raw = raw
    return true
  }

  /** The head and what is held go out; from now on chunks pass straight through. */
  private flush(raw: Array<Buffer>): boolean {
    const held = this.held!
    this.held = undefined
    this.passed = this.base.start(this.status, raw)
    // an unusable head (invalid header): the exchange fails as the client's side, answered 502
    if (!this.passed) throw new Error("response head refused")
    let more = true
    for (const c of held) more = this.base.data(c)
    return more
  }

  data(chunk: Buffer): boolean {
    if (this.held === undefined) return this.passed ? this.base.data(chunk) : true
    this.held.push(chunk)
    this.size += chunk.length
    return this.size <= this.limit ? true : this.flush(this.raw)
  }

  onDrain(resume: () => void): void {
    if (this.held === undefined && this.passed) this.base.onDrain(resume)
    else resume()
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    if (this.held !== undefined) {
      let raw = this.raw
      if (!bodiless(this.status, this.method)) {
        raw = []
        for (let i = 0; i + 1 < this.raw.length; i += 2) {
          if (this.raw[i].length === 14 && this.raw[i].toString("latin1").toLowerCase() === "content-length") continue
          raw.push(this.raw[i], this.raw[i + 1])
        }
        raw.push(Buffer.from("content-length"), Buffer.from(String(this.size)))
      }
      this.flush(raw)
    }
    if (this.passed) this.base.end(trailers)
  }
}

/** Value of cookie `name` in a `Cookie` header, or undefined. */
export const cookieValue = (header: string | undefined, name: string): string | undefined => {
  if (header === undefined) return undefined
  let at = 0
  while (at < header.length) {
    let end = header.indexOf(";", at)
    if (end === -1) end = header.length
    const eq = header.indexOf("=", at)
    if (eq !== -1 && eq < end && header.slice(at, eq).trim() === name) {
      const v = header.slice(eq + 1, end).trim()
      return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v
    }
    at = end + 1
  }
  return undefined
}

/** What the balancer may read of the request (hash keys, sticky cookies). */
class BalancerView implements BalancerContext {
  constructor(private readonly ctx: RequestContext) {}
  get clientIp(): string {
    return this.ctx.clientIp
  }
  get path(): string {
    return this.ctx.path
  }
  header(name: string): string | undefined {
    return this.ctx.header(name.toLowerCase())
  }
  cookie(name: string): string | undefined {
    return cookieValue(this.ctx.header("cookie"), name)
  }
}

/** A route's retry settings, compiled once per (plan, configuration). */
interface RetryPlan {
  readonly policy: RetryPolicy
  /** The policy used when nothing was sent: at least min(targets, 3) attempts. */
  readonly failover: RetryPolicy
  readonly bufferLimit: number
  readonly headersTimeoutMs: number
}

const retryPlans = new WeakMap<RoutePlan, RetryPlan>()

const retryPlanOf = (dp: Dataplane, plan: RoutePlan, upstream: UpstreamRuntime): RetryPlan => {
  const cached = retryPlans.get(plan)
  if (cached !== undefined) return cached
  const policy: RetryPolicy = dp.config.routes.find((r) => r.id === plan.id)?.retryPolicy ?? noRetryPolicy
  const failoverAttempts = Math.min(upstream.targets.length, 3)
  const perAttempt = policy.perAttemptTimeoutMs ?? 0
  const read = plan.upstreamTimeoutMs > 0 ? plan.upstreamTimeoutMs : upstream.headersTimeoutMs
  const compiled: RetryPlan = {
    policy,
    failover: policy.maxAttempts >= failoverAttempts ? policy : { ...policy, maxAttempts: failoverAttempts },
    // Small declared bodies are read whole first (limits.request-buffer-size, nginx-like): one
    // piece upstream, replayable on failover; a route that retries buffers at least 64 KiB.
    bufferLimit: plan.bufferRequests
      ? plan.maxBodySize
      : Math.min(
          plan.maxBodySize,
          policy.maxAttempts > 1 ? Math.max(dp.limits.requestBufferSize, DEFAULT_RETRY_BUFFER_BYTES) : dp.limits.requestBufferSize
        ),
    headersTimeoutMs: perAttempt > 0 && (read <= 0 || perAttempt < read) ? perAttempt : read
  }
  retryPlans.set(plan, compiled)
  return compiled
}

const nothingSentKinds: ReadonlySet<FailureKind> = new Set(["connect-refused", "connect-timeout", "reset-before-send"])

/** Failures of the target's exchange (the client's side, `DownstreamError`, is handled apart). */
type TargetError = Exclude<ForwardError, DownstreamError>

const failureKind = (e: TargetError): FailureKind => {
  switch (e._tag) {
    case "UpstreamConnectFailed":
    case "UpstreamSaturated":
      // nothing was sent: another target may take it
      return "connect-refused"
    case "UpstreamTimeout":
      return e.phase === "connect" ? "connect-timeout" : "timeout"
    case "UpstreamProtocolError":
      return e.requestSent ? "reset-after-send" : "reset-before-send"
  }
}

const requestSentOf = (e: TargetError): boolean =>
  e._tag === "UpstreamConnectFailed" || e._tag === "UpstreamSaturated" ? false : e.requestSent

const targetResult = (e: TargetError): AttemptResult => {
  switch (e._tag) {
    case "UpstreamSaturated":
      // our own connection limits: the target did nothing wrong
      return "aborted"
    case "UpstreamConnectFailed":
      return "connect-failure"
    case "UpstreamTimeout":
      return e.phase === "connect" ? "connect-failure" : "timeout"
    case "UpstreamProtocolError":
      return "server-error"
  }
}

type Decision = { readonly retry: true; readonly delayMs: number; readonly reason: string } | { readonly retry: false }
const NO: Decision = { retry: false }

/**
 * One attempt on one target: the sink the exchange writes into (the route's sink, seen
 * through the retry decision on the status) and what follows when the exchange ends.
 */
class Attempt implements ResponseSink {
  private readonly started = performance.now()
  private headAt = 0
  private settled = false
  private statusRetry: Decision = NO
  private handedOn = false
  /** The upstream's 101 went to the route's upgrade policy (a WebSocket tunnel). */
  private upgraded = false
  /** Aborts the exchange; set once it is under way. */
  exchange: ExchangeHandle | undefined = undefined
  readonly onDone: ExchangeDone = (e, o) => {
    this.span?.endExchange(e, o, this.call.ctx)
    this.exchangeDone(e, o)
  }

  constructor(
    private readonly call: UpstreamCall,
    private readonly n: number,
    private readonly body: BodySource,
    private readonly target: UpstreamTarget,
    private readonly base: ResponseSink,
    /** The route's response hook holding the head (ResponseHold.ts), if it has one. */
    private readonly held: HeldSink | undefined,
    private readonly span: StageSpan | undefined
  ) {}

  start(status: number, raw: Array<Buffer>): boolean {
    this.headAt = performance.now()
    const retryable = this.call.retry.policy.retryableStatusCodes
    if (retryable.length > 0 && retryable.includes(status)) {
      this.statusRetry = this.call.decide(this.n, this.body, "status", true, false, status)
      // discard this answer (undici drains it) and try again elsewhere
      if (this.statusRetry.retry) return false
    }
    return (this.handedOn = this.base.start(status, raw))
  }

  data(chunk: Buffer): boolean {
    return this.base.data(chunk)
  }

  onDrain(resume: () => void): void {
    this.base.onDrain(resume)
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    this.base.end(trailers)
  }

  /** A WebSocket handshake answered 101: the route's upgrade policy takes both connections. */
  upgrade(status: number, raw: ReadonlyArray<Buffer>, socket: Socket): "upstream" | "client" | undefined {
    const { ctx, plan } = this.call
    if (plan.upgrade === undefined || ctx.websocket === undefined) return "upstream"
    const taken = plan.upgrade.accept(ctx, raw, socket, (s, flat) => {
      plan.responsePolicy?.(flat)
      for (const stage of plan.response) stage(ctx, s, flat)
    })
    if (taken === undefined) this.handedOn = this.upgraded = true
    return taken
  }

  private settle(result: AttemptResult): void {
    if (this.settled) return
    this.settled = true
    const ms = (this.headAt > 0 ? this.headAt : performance.now()) - this.started
    this.target.state.end(result, ms)
    this.call.upstream.observer.settled(this.call.upstream.id, this.target.key, ms)
  }

  /** The client went away or the outer deadline passed: abort, report "aborted" to the target. */
  abort(): void {
    this.exchange?.cancel()
    this.settle("aborted")
    this.held?.dispose()
  }

  private again(d: Decision & { retry: true }, error: ProxyError): void {
    this.held?.dispose()
    this.call.retried(d, this.n, this.body, error)
  }

  private exchangeDone(error: ForwardError | undefined, outcome: ForwardOutcome | undefined): void {
    const call = this.call
    if (call.current === this) call.current = undefined
    if (call.finished) return
    const upstream = call.upstream
    const routeId = call.plan.id
    if (error === undefined) {
      const o = outcome!
      this.settle(resultOfStatus(o.status))
      if (this.statusRetry.retry) {
        upstream.observer.failure(upstream.id, routeId, `status_${o.status}`)
        return this.again(this.statusRetry, new RequestRejected({ status: 502, reason: `upstream_status_${o.status}` }))
      }
      if (o.discarded) {
        this.held?.dispose()
        return call.finish(new RequestRejected({ status: 502, reason: call.ctx.error ?? "upstream_discarded" }))
      }
      if (this.upgraded) {
        // the 101 went out and the tunnel has the sockets: no response phase follows
        this.held?.dispose()
        return call.finish(undefined)
      }
      const held = this.held
      if (held === undefined) return call.finish(undefined)
      call.inProgress = held.dispose
      return held.onSettled((e) => {
        held.dispose()
        call.finish(e)
      })
    }
    if (error._tag === "DownstreamError") {
      // the client's side failed (slow reader released, response not writable): never the target's fault
      this.settle("aborted")
      this.held?.dispose()
      return call.finish(error)
    }
    if (call.ctx.bodyTooLarge) {
      // our own limit tore the upload down: not the target's fault
      this.settle("aborted")
      this.held?.dispose()
      return call.finish(new RequestRejected({ status: 413, reason: "body_too_large" }))
    }
    if (this.statusRetry.retry) {
      // the discarded retryable answer then failed while draining: retry as decided
      this.settle("server-error")
      upstream.observer.failure(upstream.id, routeId, errorAnswer(error).reason)
      return this.again(this.statusRetry, error)
    }
    this.settle(targetResult(error))
    upstream.observer.failure(upstream.id, routeId, errorAnswer(error).reason)
    const d = call.decide(this.n, this.body, failureKind(error), requestSentOf(error), this.handedOn)
    if (!d.retry) {
      this.held?.dispose()
      return call.finish(error)
    }
    this.again(d, error)
  }
}

/**
 * One request's upstream stage: select, send, retry. An object with its methods on the
 * prototype rather than a closure per step (hot path, DESIGN.md §2).
 */
class UpstreamCall {
  readonly retry: RetryPlan
  private readonly bctx: BalancerView
  private readonly tried: Array<number> = []
  finished = false
  /** The attempt whose exchange is under way. */
  current: Attempt | undefined = undefined
  /** Otherwise what is in progress: a body read, a backoff timer, a held response. */
  inProgress: (() => void) | undefined = undefined
  /** The route's breaker admitted this request: exactly one of success, failure or release follows. */
  private breakerHeld = false

  constructor(
    readonly ctx: RequestContext,
    private readonly draining: () => boolean,
    private readonly dp: Dataplane,
    readonly plan: RoutePlan,
    readonly upstream: UpstreamRuntime,
    private readonly done: (error: ProxyError | undefined) => void
  ) {
    this.retry = retryPlanOf(dp, plan, upstream)
    this.bctx = new BalancerView(ctx)
    upstream.budget.onRequest()
  }

  run(): void {
    const breaker = this.plan.breaker
    if (breaker !== undefined) {
      if (!breaker.tryAcquire()) {
        return this.finish(new RouteCircuitOpen({ route: this.plan.id, retryAfterSecs: Math.max(1, Math.ceil(breaker.config.openTimeoutMs / 1000)) }))
      }
      this.breakerHeld = true
    }
    const prepared = requestBody(this.ctx, this.plan, this.retry.bufferLimit)
    if (prepared !== "buffer") return this.attempt(1, prepared, undefined)
    this.inProgress = bufferBody(this.ctx.req, this.retry.bufferLimit, (error, body) => {
      this.inProgress = undefined
      if (this.finished) return
      if (error !== undefined) return this.finish(error)
      this.attempt(1, body!, undefined)
    })
  }

  /** The route breaker's outcome: upstream faults and 5xx answers fail; the client's side and our own limits are neither. */
  private settleBreaker(error: ProxyError | undefined, cancelled: boolean): void {
    if (!this.breakerHeld) return
    this.breakerHeld = false
    const b = this.plan.breaker!
    if (cancelled) return b.release()
    if (error === undefined) return this.ctx.status >= 500 ? b.onFailure() : b.onSuccess()
    switch (error._tag) {
      case "UpstreamConnectFailed":
      case "UpstreamTimeout":
      case "UpstreamProtocolError":
      case "NoHealthyUpstream":
        return b.onFailure()
      case "RequestRejected":
        // a retried 5xx answer that stayed one is the upstream's; our own refusals (413) are not
        return error.reason.startsWith("upstream_") ? b.onFailure() : b.release()
      default:
        return b.release()
    }
  }

  finish(error: ProxyError | undefined): void {
    if (this.finished) return
    this.settleBreaker(error, false)
    this.finished = true
    this.inProgress = undefined
    this.current = undefined
    this.done(error)
  }

  /** Client gone or outer deadline: abort whatever is in progress; `done` is not called. */
  cancel(): void {
    if (this.finished) return
    this.settleBreaker(undefined, true)
    this.finished = true
    const c = this.inProgress
    const a = this.current
    this.inProgress = undefined
    this.current = undefined
    c?.()
    a?.abort()
  }

  decide(attempt: number, body: BodySource, kind: FailureKind, requestSent: boolean, handedOn: boolean, status?: number): Decision {
    const nothingSent = kind !== "status" && (!requestSent || nothingSentKinds.has(kind))
    const d = shouldRetry({
      attempt,
      method: this.ctx.method,
      kind,
      ...(status !== undefined ? { status } : {}),
      requestSent,
      // a head handed on to the response path (client, or a response hook holding it) is final
      responseStarted: handedOn || this.ctx.res.headersSent,
      bodyReplayable: body.replayable,
      policy: nothingSent ? this.retry.failover : this.retry.policy
    })
    if (!d.retry) return NO
    // the budget bounds the extra load retries put on upstreams; a fail-over of a request
    // no target received adds none
    if (d.reason !== "nothing-sent" && !this.upstream.budget.tryWithdraw()) return NO
    return d
  }

  /** A retry was decided after attempt `n`: make attempt `n + 1`, after its backoff. */
  retried(d: Decision & { retry: true }, n: number, body: BodySource, error: ProxyError): void {
    this.upstream.observer.retry(this.upstream.id, this.plan.id, d.reason)
    if (d.delayMs <= 0) return this.attempt(n + 1, body, error)
    const timer = setTimeout(() => {
      this.inProgress = undefined
      this.attempt(n + 1, body, error)
    }, d.delayMs)
    this.inProgress = () => clearTimeout(timer)
  }

  attempt(n: number, body: BodySource, last: ProxyError | undefined): void {
    if (this.finished) return
    const ctx = this.ctx
    const upstream = this.upstream
    const plan = this.plan
    const picked = upstream.select(this.bctx, this.tried)
    if (picked === undefined) {
      if (last !== undefined) return this.finish(last)
      upstream.observer.failure(upstream.id, plan.id, "no_healthy_upstream")
      return this.finish(new NoHealthyUpstream({ upstream: upstream.id, retryAfterSecs: upstream.retryAfterSecs }))
    }
    const target = upstream.targets[picked.index]
    this.tried.push(picked.index)
    ctx.upstreamAddr = target.key
    ctx.attempts++
    target.state.begin()
    upstream.observer.attempt(upstream.id, plan.id)

    const directSink = new DirectSink(ctx, this.draining, plan, picked.setCookie, this.dp.limits.responseBufferSize)
    const direct: ResponseSink = plan.bufferResponses ? new BufferedSink(directSink, this.dp.limits.responseBufferSize, ctx.method) : directSink
    // response-phase agents: the head waits for their decision (ResponseHold.ts)
    const held = plan.responseHook === undefined ? undefined : holdResponse(ctx, plan.responseHook, direct)
    // sampled requests: a span per attempt, its traceparent set in ctx.upstreamHeaders
    const span = ctx.trace?.startUpstream(ctx, upstream.id, target.key, n)
    const attempt = new Attempt(this, n, body, target, held ?? direct, held, span)
    const request: ForwardRequest = {
      method: ctx.method,
      path: ctx.upstreamPath,
      headers: ctx.upstreamHeaders,
      body: body.body,
      headersTimeoutMs: this.retry.headersTimeoutMs,
      bodyIdleTimeoutMs: upstream.bodyIdleTimeoutMs,
      requestTimeoutMs: upstream.requestTimeoutMs,
      writeTimeoutMs: upstream.writeTimeoutMs,
      connectTimeoutMs: plan.connectTimeoutMs,
      client: ctx.clientIp,
      clientStallTimeoutMs: this.dp.slowReaderTimeoutMs,
      upgrade: ctx.websocket !== undefined ? "websocket" : undefined
    }
    // current before the exchange starts: it may end synchronously (and clear it)
    this.current = attempt
    attempt.exchange = startExchange(target.pool.pool, target.ref, request, attempt, attempt.onDone, target.pool.gate)
  }
}

/**
 * Forward to the upstream: select, send, and retry while policy, safety and
 * budget allow. `done` is called exactly once (undefined = the response went
 * to the client) unless the returned cancel function is called first (client
 * gone, outer deadline), which aborts whatever is in progress: a body read, a
 * backoff timer or an exchange (reported to its target as "aborted").
 *
 * Plain callbacks, the hot path (DESIGN.md §2); `proxyToUpstream` is the same
 * stage as one `Effect.async` for Effect compositions.
 */
export const runUpstream = (
  ctx: RequestContext,
  draining: () => boolean,
  dp: Dataplane,
  plan: RoutePlan,
  upstream: UpstreamRuntime,
  done: (error: ProxyError | undefined) => void
): (() => void) => {
  const call = new UpstreamCall(ctx, draining, dp, plan, upstream, done)
  call.run()
  return () => call.cancel()
}

/** The upstream stage as one `Effect.async`; interruption cancels it. */
export const proxyToUpstream = (
  ctx: RequestContext,
  draining: () => boolean,
  dp: Dataplane,
  plan: RoutePlan,
  upstream: UpstreamRuntime
): Effect.Effect<void, ProxyError> =>
  Effect.async<void, ProxyError>((resume) => {
    const cancel = runUpstream(ctx, draining, dp, plan, upstream, (error) =>
      resume(error === undefined ? Effect.void : Effect.fail(error))
    )
    return Effect.sync(cancel)
  })

export const withDeadline = (effect: Effect.Effect<void, ProxyError>, plan: RoutePlan): Effect.Effect<void, ProxyError> =>
  plan.timeoutMs > 0
    ? Effect.timeoutFail(effect, {
        duration: plan.timeoutMs,
        onTimeout: (): ProxyError => new RequestTimeout({ phase: "route" })
      })
    : effect
