/**
 * The upstream stage: pick a target, forward the request with its body
 * (bounded by `limits { max-body-size }` while streaming), stream the answer
 * back through the route's response stages. One fiber per request runs it;
 * interruption aborts the exchange.
 */
import { Transform, type TransformCallback } from "node:stream"
import { Effect } from "effect"
import { forward, type ForwardRequest, type ResponseSink } from "../upstream/Forward.js"
import type { UpstreamRuntime } from "../upstream/Upstreams.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import { NoHealthyUpstream, RequestRejected, RequestTimeout, type ProxyError } from "./Errors.js"
import { connectionTokens, HOP_BY_HOP } from "./Headers.js"
import type { RequestContext } from "./RequestContext.js"

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

const requestBody = (ctx: RequestContext, dp: Dataplane): ForwardRequest["body"] => {
  if (ctx.upstreamBody !== undefined) return ctx.upstreamBody
  const h = ctx.req.headers
  if (h["transfer-encoding"] !== undefined) {
    const limited = new BodyLimit(dp.limits.maxBodySize, ctx)
    ctx.req.pipe(limited)
    return limited
  }
  if (h["content-length"] === undefined || h["content-length"] === "0") return null
  return ctx.req
}

const responseSink = (ctx: RequestContext, draining: () => boolean, plan: RoutePlan): ResponseSink => {
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

/** Forward to the first usable candidate of the route's upstream. */
export const proxyToUpstream = (
  ctx: RequestContext,
  draining: () => boolean,
  dp: Dataplane,
  plan: RoutePlan,
  upstream: UpstreamRuntime
): Effect.Effect<void, ProxyError> =>
  Effect.suspend((): Effect.Effect<void, ProxyError> => {
    const candidates = upstream.candidates(ctx)
    const target = candidates[0]
    if (target === undefined) {
      return Effect.fail(new NoHealthyUpstream({ upstream: upstream.id, retryAfterSecs: 5 }))
    }
    ctx.upstreamAddr = target.key
    ctx.attempts++
    target.active++
    const request: ForwardRequest = {
      method: ctx.method,
      path: ctx.upstreamPath,
      headers: ctx.upstreamHeaders,
      body: requestBody(ctx, dp),
      headersTimeoutMs: upstream.headersTimeoutMs,
      bodyIdleTimeoutMs: upstream.bodyIdleTimeoutMs
    }
    return forward(target.pool, { upstream: upstream.id, target: target.key }, request, responseSink(ctx, draining, plan)).pipe(
      Effect.ensuring(Effect.sync(() => target.active--)),
      Effect.flatMap((outcome) =>
        outcome.discarded
          ? Effect.fail(new RequestRejected({ status: 502, reason: ctx.error ?? "upstream_discarded" }))
          : Effect.void
      ),
      Effect.catchIf(
        () => ctx.bodyTooLarge,
        () => Effect.fail(new RequestRejected({ status: 413, reason: "body_too_large" }))
      )
    )
  })

export const withDeadline = (effect: Effect.Effect<void, ProxyError>, plan: RoutePlan): Effect.Effect<void, ProxyError> =>
  plan.timeoutMs > 0
    ? Effect.timeoutFail(effect, {
        duration: plan.timeoutMs,
        onTimeout: (): ProxyError => new RequestTimeout({ phase: "route" })
      })
    : effect

