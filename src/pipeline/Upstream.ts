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
 * On plain callbacks (`runUpstream`): one `UpstreamCall` object per request,
 * one `Attempt` per target tried, each attempt one exchange (`Forward.ts`)
 * that owns its own deadlines, the per-attempt timeout included. The route's
 * deadline is armed here, once. Cancelling (client gone) aborts the exchange
 * and reports the attempt to the target as "aborted" (neither success nor
 * failure).
 */
import type { Socket } from "node:net"
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import { cookieValue } from "../http/Cookie.js"
import type { StageSpan } from "../observability/RequestTrace.js"
import type { BalancerContext } from "../upstream/Balancer.js"
import { NoHealthyUpstream, RouteCircuitOpen, UpstreamBadAnswer, type ExchangeError } from "../upstream/Errors.js"
import { startExchange, type ExchangeDone, type ExchangeHandle, type ForwardOutcome, type ForwardRequest, type ResponseSink } from "../upstream/Forward.js"
import { shouldRetry, type FailureKind } from "../upstream/Retry.js"
import { resultOfStatus, type AttemptResult } from "../upstream/Target.js"
import type { UpstreamRuntime, UpstreamTarget } from "../upstream/Upstreams.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import { errorAnswer } from "./ErrorResponse.js"
import { BodyTooLarge, RequestTimeout, type ProxyError } from "./Errors.js"
import type { RequestContext } from "./RequestContext.js"
import { holdResponse, type HeldSink } from "./ResponseHold.js"
import { BufferedSink, DirectSink } from "./ResponseSinks.js"
import { EncodingSink } from "./EncodingSink.js"
import { failureKind, NO, nothingSentKinds, requestSentOf, retryPlanOf, targetResult, type Decision, type RetryPlan } from "./RetryPlan.js"
import { bufferBody, requestBody, type BodySource } from "./UpstreamBody.js"

/** What the balancer may read of the request (hash keys, sticky cookies). */
export class BalancerView implements BalancerContext {
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
    /** The route's body re-encoding (EncodingSink.ts), if it has one: after the hook, before the client. */
    private readonly encoded: EncodingSink | undefined,
    private readonly span: StageSpan | undefined
  ) {}

  /** What holds or transforms the response after the exchange stops: stopped (client gone, failure, retry). */
  private disposeSinks(): void {
    this.held?.dispose()
    this.encoded?.dispose()
  }

  /** After the exchange completed: the held response, then the encoder's tail, reach the client; then the call ends. */
  private settleSinks(): void {
    const call = this.call
    const held = this.held
    const encoded = this.encoded
    const afterHeld = () => {
      if (encoded === undefined) return call.finish(undefined)
      call.inProgress = encoded.dispose
      encoded.onSettled((e) => call.finish(e))
    }
    if (held === undefined) return afterHeld()
    call.inProgress = () => this.disposeSinks()
    held.onSettled((e) => {
      held.dispose()
      if (e === undefined) return afterHeld()
      encoded?.dispose()
      call.finish(e)
    })
  }

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
    this.disposeSinks()
  }

  private again(d: Decision & { retry: true }, error: ProxyError): void {
    this.disposeSinks()
    this.call.retried(d, this.n, this.body, error)
  }

  private exchangeDone(error: ExchangeError | undefined, outcome: ForwardOutcome | undefined): void {
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
        return this.again(this.statusRetry, new UpstreamBadAnswer({ reason: `upstream_status_${o.status}` }))
      }
      if (o.discarded) {
        this.disposeSinks()
        return call.finish(new UpstreamBadAnswer({ reason: call.ctx.error ?? "upstream_discarded" }))
      }
      if (this.upgraded) {
        // the 101 went out and the tunnel has the sockets: no response phase follows
        this.disposeSinks()
        return call.finish(undefined)
      }
      return this.settleSinks()
    }
    if (error._tag === "DownstreamError") {
      // the client's side failed (slow reader released, response not writable): never the target's fault
      this.settle("aborted")
      this.disposeSinks()
      return call.finish(error)
    }
    if (call.ctx.bodyTooLarge) {
      // our own limit tore the upload down: not the target's fault
      this.settle("aborted")
      this.disposeSinks()
      return call.finish(new BodyTooLarge())
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
      this.disposeSinks()
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
  /** The route's deadline (`policies { timeout-secs }`, the `timeout` filter), armed once in `run`. */
  private deadline: NodeJS.Timeout | undefined = undefined

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
    if (this.plan.timeoutMs > 0) this.deadline = setTimeout(routeDeadline, this.plan.timeoutMs, this)
    const breaker = this.plan.breaker
    if (breaker !== undefined) {
      if (!breaker.tryAcquire()) {
        return this.finish(new RouteCircuitOpen({ route: this.plan.id, retryAfterSecs: Math.max(1, Math.ceil(breaker.config.openTimeoutMs / 1000)) }))
      }
      this.breakerHeld = true
    }
    const prepared = requestBody(this.ctx, this.plan, this.retry.bufferLimit)
    if (prepared !== "buffer") return this.attempt(1, prepared, undefined)
    this.inProgress = bufferBody(this.ctx, this.retry.bufferLimit, this.plan.maxBodySize, (error, body) => {
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
      case "UpstreamBadAnswer":
        // a retried 5xx answer that stayed one is the upstream's; a failed response hook is not
        return error.upstreamFault ? b.onFailure() : b.release()
      default:
        return b.release()
    }
  }

  finish(error: ProxyError | undefined): void {
    if (this.finished) return
    this.settleBreaker(error, false)
    this.finished = true
    if (this.deadline !== undefined) clearTimeout(this.deadline)
    this.inProgress = undefined
    this.current = undefined
    this.done(error)
  }

  /** Client gone: abort whatever is in progress; `done` is not called. */
  cancel(): void {
    if (this.finished) return
    this.settleBreaker(undefined, true)
    this.finished = true
    if (this.deadline !== undefined) clearTimeout(this.deadline)
    const c = this.inProgress
    const a = this.current
    this.inProgress = undefined
    this.current = undefined
    c?.()
    a?.abort()
  }

  /** The route's deadline passed: whatever is in progress is aborted (as when the client leaves), then 504. */
  expired(): void {
    if (this.finished) return
    this.cancel()
    this.done(new RequestTimeout({ phase: "route" }))
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

    const clientSink = new DirectSink(ctx, this.draining, plan, picked.setCookie, this.dp.limits.responseBufferSize)
    // the route's tap (the response cache) sees the response as the client gets it
    const directSink: ResponseSink = ctx.tap !== undefined ? ctx.tap.wrap(clientSink) : clientSink
    const direct: ResponseSink = plan.bufferResponses ? new BufferedSink(directSink, this.dp.limits.responseBufferSize, ctx.method) : directSink
    // response-phase agents: the head waits for their decision (ResponseHold.ts)
    // the `compress` filter: the client (and a cache before it) gets the encoded head and body
    const encoded = plan.encoding === undefined ? undefined : new EncodingSink(ctx, plan.encoding, direct)
    const toClient = encoded ?? direct
    const held = plan.responseHook === undefined ? undefined : holdResponse(ctx, plan.responseHook, toClient)
    // sampled requests: a span per attempt, its traceparent set in ctx.upstreamHeaders
    const span = ctx.trace?.startUpstream(ctx, upstream.id, target.key, n)
    const attempt = new Attempt(this, n, body, target, held ?? toClient, held, encoded, span)
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

/** The route deadline's timer callback (one function for every call: no closure per request). */
const routeDeadline = (call: UpstreamCall): void => call.expired()

/**
 * Forward to the upstream: select, send, and retry while policy, safety and
 * budget allow, within the route's deadline. `done` is called exactly once
 * (undefined = the response went to the client; `RequestTimeout` at the route
 * deadline) unless the returned cancel function is called first (client gone),
 * which aborts whatever is in progress: a body read, a backoff timer or an
 * exchange (reported to its target as "aborted").
 *
 * Plain callbacks, the hot path (DESIGN.md §2); `proxyToUpstream` wraps it for
 * requests that already run as a fiber.
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

/** `runUpstream` for a request that already runs as a fiber: one `Effect.async`; interruption cancels it. */
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
