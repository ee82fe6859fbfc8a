/**
 * Everything the request path needs from one configuration, compiled once:
 * the router, per-route plans (header policies, deadlines, target) and the
 * upstream runtimes. A request reads the current `Dataplane` once when it
 * arrives and keeps it to the end, so a reload never changes a request in
 * flight.
 */
import { Duration } from "effect"
import type { BuiltinHandler, LimitsConfig, SentinelConfig } from "../config/Schema.js"
import { makeRouter, type Router } from "../routing/Router.js"
import type { UpstreamRuntime } from "../upstream/Upstreams.js"
import { compileHeaderOps, type HeaderPolicy } from "./Headers.js"
import { makeTraceIdGenerator } from "./TraceId.js"

export interface RoutePlan {
  readonly id: string
  readonly upstream: UpstreamRuntime | undefined
  readonly builtin: BuiltinHandler | undefined
  readonly requestPolicy: HeaderPolicy | undefined
  readonly responsePolicy: HeaderPolicy | undefined
  /** Whole-request deadline (`policies { timeout-secs }`), 0 = none. */
  readonly timeoutMs: number
}

export interface Dataplane {
  readonly config: SentinelConfig
  readonly router: Router
  readonly plans: ReadonlyMap<string, RoutePlan>
  readonly upstreams: ReadonlyMap<string, UpstreamRuntime>
  readonly limits: LimitsConfig
  readonly newTraceId: () => string
}

export const compileDataplane = (
  config: SentinelConfig,
  upstreams: ReadonlyMap<string, UpstreamRuntime>
): Dataplane => {
  const plans = new Map<string, RoutePlan>()
  for (const route of config.routes) {
    plans.set(route.id, {
      id: route.id,
      upstream: route.upstream === undefined ? undefined : upstreams.get(route.upstream),
      builtin: route.builtinHandler,
      requestPolicy: compileHeaderOps(route.policies.requestHeaders),
      responsePolicy: compileHeaderOps(route.policies.responseHeaders),
      timeoutMs: route.policies.timeout === undefined ? 0 : Duration.toMillis(route.policies.timeout)
    })
  }
  return {
    config,
    router: makeRouter(config.routes),
    plans,
    upstreams,
    limits: config.limits,
    newTraceId: makeTraceIdGenerator(config.system.traceIdFormat)
  }
}
