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
import { performance } from "node:perf_hooks"
import { Effect } from "effect"
import type { BalancerContext } from "../upstream/Balancer.js"
import { exchange, type ForwardError, type ForwardOutcome, type ForwardRequest, type ResponseSink } from "../upstream/Forward.js"
import { noRetryPolicy, shouldRetry, type FailureKind, type RetryPolicy } from "../upstream/Retry.js"
import { resultOfStatus, type AttemptResult } from "../upstream/Target.js"
import type { UpstreamRuntime } from "../upstream/Upstreams.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import { errorAnswer } from "./ErrorResponse.js"
import {
  ClientClosed,
  NoHealthyUpstream,
  RequestRejected,
  RequestTimeout,
  type ProxyError
} from "./Errors.js"
import { connectionTokens, HOP_BY_HOP } from "./Headers.js"
import type { RequestContext } from "./RequestContext.js"
import { holdResponse } from "./ResponseHold.js"
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

/** The body to send: at hand, or `"buffer"` when it must be read into memory first (replayable). */
const requestBody = (ctx: RequestContext, dp: Dataplane, bufferLimit: number): BodySource | "buffer" => {
  const pre = ctx.upstreamBody
  if (pre !== undefined) return pre === null || Buffer.isBuffer(pre) ? { body: pre, replayable: true } : { body: pre, replayable: false }
  const h = ctx.req.headers
  if (h["transfer-encoding"] !== undefined) {
    const limited = new BodyLimit(dp.limits.maxBodySize, ctx)
    ctx.req.pipe(limited)
    return { body: limited, replayable: false }
  }
  const cl = h["content-length"]
  if (cl === undefined || cl === "0") return NO_BODY
  if (bufferLimit > 0 && Number(cl) <= bufferLimit) return "buffer"
  return { body: ctx.req, replayable: false }
}

const responseSink = (
  ctx: RequestContext,
  draining: () => boolean,
  plan: RoutePlan,
  setCookie: string | undefined
): ResponseSink => {
  const res = ctx.res
  return {
    start(status, raw) {
      const flat: Array<string> = []
      let connection: string | undefined
      for (let i = 0; i < raw.length; i += 2) {
        if (raw[i].length === 10 && raw[i].toString("latin1").toLowerCase() === "connection") {
          connection = raw[i + 1].toString("latin1")
        }
      }
      const named = connectionTokens(connection)
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toString("latin1")
        const lower = name.toLowerCase()
        if (HOP_BY_HOP.has(lower) || named?.has(lower)) continue
        flat.push(name, raw[i + 1].toString("latin1"))
      }
      flat.push("x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId)
      if (setCookie !== undefined) flat.push("set-cookie", setCookie)
      if (ctx.responseHeaders !== undefined) flat.push(...ctx.responseHeaders)
      plan.responsePolicy?.(flat)
      for (const stage of plan.response) stage(ctx, status, flat)
      if (draining()) flat.push("connection", "close")
      try {
        res.writeHead(status, flat)
      } catch {
        ctx.error = "upstream_invalid_header"
        return false
      }
      ctx.status = status
      return true
    },
    data(chunk) {
      ctx.bytesSent += chunk.length
      return res.write(chunk)
    },
    onDrain(resume) {
      res.once("drain", resume)
    },
    end() {
      res.end()
    }
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

const balancerContext = (ctx: RequestContext): BalancerContext => ({
  clientIp: ctx.clientIp,
  path: ctx.path,
  header: (name) => ctx.header(name.toLowerCase()),
  cookie: (name) => cookieValue(ctx.header("cookie"), name)
})

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
    bufferLimit: Math.min(
      dp.limits.maxBodySize,
      policy.maxAttempts > 1 ? Math.max(dp.limits.requestBufferSize, DEFAULT_RETRY_BUFFER_BYTES) : dp.limits.requestBufferSize
    ),
    headersTimeoutMs: perAttempt > 0 && (read <= 0 || perAttempt < read) ? perAttempt : read
  }
  retryPlans.set(plan, compiled)
  return compiled
}

const nothingSentKinds: ReadonlySet<FailureKind> = new Set(["connect-refused", "connect-timeout", "reset-before-send"])

const failureKind = (e: ForwardError): FailureKind => {
  switch (e._tag) {
    case "UpstreamConnectFailed":
      return "connect-refused"
    case "UpstreamTimeout":
      return e.phase === "connect" ? "connect-timeout" : "timeout"
    case "UpstreamProtocolError":
      return e.requestSent ? "reset-after-send" : "reset-before-send"
  }
}

const requestSentOf = (e: ForwardError): boolean => (e._tag === "UpstreamConnectFailed" ? false : e.requestSent)

const targetResult = (e: ForwardError): AttemptResult => {
  switch (e._tag) {
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
  const retry = retryPlanOf(dp, plan, upstream)
  const observer = upstream.observer
  upstream.budget.onRequest()
  const bctx = balancerContext(ctx)
  const tried: Array<number> = []
  let finished = false
  /** Cancels what is in progress now (body read, backoff, exchange). */
  let inProgress: (() => void) | undefined

  const finish = (error: ProxyError | undefined) => {
    if (finished) return
    finished = true
    inProgress = undefined
    done(error)
  }

  const decide = (
    attempt: number,
    body: BodySource,
    kind: FailureKind,
    requestSent: boolean,
    handedOn: boolean,
    status?: number
  ): Decision => {
    const nothingSent = kind !== "status" && (!requestSent || nothingSentKinds.has(kind))
    const d = shouldRetry({
      attempt,
      method: ctx.method,
      kind,
      ...(status !== undefined ? { status } : {}),
      requestSent,
      // a head handed on to the response path (client, or a response hook holding it) is final
      responseStarted: handedOn || ctx.res.headersSent,
      bodyReplayable: body.replayable,
      policy: nothingSent ? retry.failover : retry.policy
    })
    if (!d.retry) return NO
    // the budget bounds the extra load retries put on upstreams; a fail-over of a request
    // no target received adds none
    if (d.reason !== "nothing-sent" && !upstream.budget.tryWithdraw()) return NO
    return d
  }

  const attempt = (n: number, body: BodySource, last: ProxyError | undefined): void => {
    if (finished) return
    const picked = upstream.select(bctx, tried)
    if (picked === undefined) {
      if (last !== undefined) return finish(last)
      observer.failure(upstream.id, plan.id, "no_healthy_upstream")
      return finish(new NoHealthyUpstream({ upstream: upstream.id, retryAfterSecs: upstream.retryAfterSecs }))
    }
    const target = upstream.targets[picked.index]
    const state = target.state
    tried.push(picked.index)
    ctx.upstreamAddr = target.key
    ctx.attempts++
    state.begin()
    observer.attempt(upstream.id, plan.id)
    const started = performance.now()
    let headAt = 0
    let settled = false
    let statusRetry: Decision = NO
    let handedOn = false
    const settle = (result: AttemptResult) => {
      if (settled) return
      settled = true
      const ms = (headAt > 0 ? headAt : performance.now()) - started
      state.end(result, ms)
      observer.settled(upstream.id, target.key, ms)
    }

    const direct = responseSink(ctx, draining, plan, picked.setCookie)
    // response-phase agents: the head waits for their decision (ResponseHold.ts)
    const held = plan.responseHook === undefined ? undefined : holdResponse(ctx, plan.responseHook, direct)
    const base: ResponseSink = held ?? direct
    const retryable = retry.policy.retryableStatusCodes
    const sink: ResponseSink =
      retryable.length === 0
        ? {
            start: (status, raw) => {
              headAt = performance.now()
              return (handedOn = base.start(status, raw))
            },
            data: base.data,
            onDrain: base.onDrain,
            end: base.end
          }
        : {
            start: (status, raw) => {
              headAt = performance.now()
              if (retryable.includes(status)) {
                statusRetry = decide(n, body, "status", true, false, status)
                // discard this answer (undici drains it) and try again elsewhere
                if (statusRetry.retry) return false
              }
              return (handedOn = base.start(status, raw))
            },
            data: base.data,
            onDrain: base.onDrain,
            end: base.end
          }

    const again = (d: Decision & { retry: true }, error: ProxyError): void => {
      held?.dispose()
      observer.retry(upstream.id, plan.id, d.reason)
      if (d.delayMs <= 0) return attempt(n + 1, body, error)
      const timer = setTimeout(() => {
        inProgress = undefined
        attempt(n + 1, body, error)
      }, d.delayMs)
      inProgress = () => clearTimeout(timer)
    }

    const onExchange = (error: ForwardError | undefined, outcome: ForwardOutcome | undefined): void => {
      inProgress = undefined
      if (finished) return
      if (error === undefined) {
        const o = outcome!
        settle(resultOfStatus(o.status))
        if (statusRetry.retry) {
          observer.failure(upstream.id, plan.id, `status_${o.status}`)
          return again(statusRetry, new RequestRejected({ status: 502, reason: `upstream_status_${o.status}` }))
        }
        if (o.discarded) {
          held?.dispose()
          return finish(new RequestRejected({ status: 502, reason: ctx.error ?? "upstream_discarded" }))
        }
        if (held === undefined) return finish(undefined)
        inProgress = held.dispose
        return held.onSettled((e) => {
          held.dispose()
          finish(e)
        })
      }
      if (ctx.bodyTooLarge) {
        // our own limit tore the upload down: not the target's fault
        settle("aborted")
        held?.dispose()
        return finish(new RequestRejected({ status: 413, reason: "body_too_large" }))
      }
      if (statusRetry.retry) {
        // the discarded retryable answer then failed while draining: retry as decided
        settle("server-error")
        observer.failure(upstream.id, plan.id, errorAnswer(error).reason)
        return again(statusRetry, error)
      }
      settle(targetResult(error))
      observer.failure(upstream.id, plan.id, errorAnswer(error).reason)
      const d = decide(n, body, failureKind(error), requestSentOf(error), handedOn)
      if (!d.retry) {
        held?.dispose()
        return finish(error)
      }
      again(d, error)
    }

    // sampled requests: a span per attempt, its traceparent set in ctx.upstreamHeaders
    const span = ctx.trace?.startUpstream(ctx, upstream.id, target.key, n)
    const request: ForwardRequest = {
      method: ctx.method,
      path: ctx.upstreamPath,
      headers: ctx.upstreamHeaders,
      body: body.body,
      headersTimeoutMs: retry.headersTimeoutMs,
      bodyIdleTimeoutMs: upstream.bodyIdleTimeoutMs,
      requestTimeoutMs: upstream.requestTimeoutMs,
      writeTimeoutMs: upstream.writeTimeoutMs,
      connectTimeoutMs: plan.connectTimeoutMs
    }
    let sync = true
    let doneSync = false
    const cancel = exchange(target.pool.pool, { upstream: upstream.id, target: target.key }, request, sink, (e, o) => {
      if (sync) doneSync = true
      span?.endExchange(e, o, ctx)
      onExchange(e, o)
    })
    sync = false
    if (!doneSync && !finished) {
      inProgress = () => {
        cancel()
        settle("aborted")
        held?.dispose()
      }
    }
  }

  const prepared = requestBody(ctx, dp, retry.bufferLimit)
  if (prepared === "buffer") {
    inProgress = bufferBody(ctx.req, retry.bufferLimit, (error, body) => {
      inProgress = undefined
      if (finished) return
      if (error !== undefined) return finish(error)
      attempt(1, body!, undefined)
    })
  } else {
    attempt(1, prepared, undefined)
  }
  return () => {
    if (finished) return
    finished = true
    const c = inProgress
    inProgress = undefined
    c?.()
  }
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
