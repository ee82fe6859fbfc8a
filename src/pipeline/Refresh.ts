/**
 * One upstream request made for the proxy itself, not for a client: the response cache's
 * background refresh of a stale entry (stale-while-revalidate). One attempt on one target the
 * balancer picks, the route's deadlines, the response into the caller's sink; nothing reaches
 * a client. The target's health and load see it as any other attempt.
 */
import { performance } from "node:perf_hooks"
import { startExchange, type ResponseSink } from "../upstream/Forward.js"
import { resultOfStatus } from "../upstream/Target.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import type { RequestContext } from "./RequestContext.js"
import { retryPlanOf, targetResult } from "./RetryPlan.js"
import { BalancerView } from "./Upstream.js"

/**
 * GETs `ctx.upstreamPath` with `headers` from the route's upstream into `sink`; `done` once with
 * whether a complete response arrived. False (and no `done`) when no target can take it.
 */
export const refreshInBackground = (
  ctx: RequestContext,
  dp: Dataplane,
  plan: RoutePlan,
  headers: Array<string>,
  sink: ResponseSink,
  done: (ok: boolean) => void
): boolean => {
  const upstream = plan.upstream
  if (upstream === undefined) return false
  const picked = upstream.select(new BalancerView(ctx), [])
  if (picked === undefined) return false
  const target = upstream.targets[picked.index]
  const started = performance.now()
  target.state.begin()
  upstream.observer.attempt(upstream.id, plan.id)
  const retry = retryPlanOf(dp, plan, upstream)
  startExchange(
    target.pool.pool,
    target.ref,
    {
      method: "GET",
      path: ctx.upstreamPath,
      headers,
      body: null,
      headersTimeoutMs: retry.headersTimeoutMs,
      bodyIdleTimeoutMs: upstream.bodyIdleTimeoutMs,
      requestTimeoutMs: upstream.requestTimeoutMs,
      writeTimeoutMs: upstream.writeTimeoutMs,
      connectTimeoutMs: plan.connectTimeoutMs,
      client: ctx.clientIp,
      clientStallTimeoutMs: 0,
      upgrade: undefined
    },
    sink,
    (error, outcome) => {
      const ms = performance.now() - started
      if (error === undefined) target.state.end(resultOfStatus(outcome!.status), ms)
      else {
        target.state.end(error._tag === "DownstreamError" ? "aborted" : targetResult(error), ms)
        upstream.observer.failure(upstream.id, plan.id, "cache_refresh_failed")
      }
      upstream.observer.settled(upstream.id, target.key, ms)
      done(error === undefined && !outcome!.discarded)
    },
    target.pool.gate
  )
  return true
}
