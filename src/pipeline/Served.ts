/**
 * Responses a stage has ready (a cache hit, a stale entry served when the upstream failed):
 * written through the route's `DirectSink`, so they get what an upstream answer gets (trace
 * id headers, the route's response policy and stages, `Connection: close` while draining).
 */
import { abortResponse } from "../http/Response.js"
import type { AnswerEnv } from "./Answer.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import type { ProxyError } from "./Errors.js"
import type { RequestContext } from "./RequestContext.js"
import { DirectSink } from "./ResponseSinks.js"
import type { Served } from "./Stage.js"

const sinkFor = (ctx: RequestContext, env: AnswerEnv, dp: Dataplane, plan: RoutePlan): DirectSink =>
  new DirectSink(ctx, env.draining, plan, undefined, dp.limits.responseBufferSize)

/** Writes a stage's ready response; a failure to write leaves the connection aborted, never throws. */
export const serveStep = (ctx: RequestContext, env: AnswerEnv, dp: Dataplane, plan: RoutePlan, step: Served): void => {
  try {
    step.write(sinkFor(ctx, env, dp, plan))
  } catch {
    ctx.error ??= "served_failed"
    abortResponse(ctx.res)
  }
}

/** The upstream failed: the route's tap (the cache) may answer instead (a stale entry). True when it did. */
export const rescueFromTap = (ctx: RequestContext, env: AnswerEnv, dp: Dataplane, plan: RoutePlan, error: ProxyError): boolean => {
  const tap = ctx.tap
  if (tap === undefined || ctx.res.headersSent || ctx.res.destroyed || error._tag === "ClientClosed") return false
  try {
    return tap.rescue(error._tag, sinkFor(ctx, env, dp, plan))
  } catch {
    return false
  }
}
