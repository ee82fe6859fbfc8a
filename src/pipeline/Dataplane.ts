/**
 * Everything the request path needs from one configuration, compiled once:
 * the router, per-route plans (header policies, deadlines, target) and the
 * upstream runtimes. A request reads the current `Dataplane` once when it
 * arrives and keeps it to the end, so a reload never changes a request in
 * flight.
 */
import * as Duration from "effect/Duration"
import type { BuiltinHandler, LimitsConfig, SentinelConfig } from "../config/Schema.js"
import { makeRouter, type Router } from "../routing/Router.js"
import type { UpstreamRuntime } from "../upstream/Upstreams.js"
import { compileHeaderOps, type HeaderPolicy } from "./Headers.js"
import type {
  CompleteStage, LocalHandler, RequestStage, ResponseEncoding, ResponseHook, ResponseStage, RouteExtension, UpgradePolicy
} from "./Stage.js"
import { makeTraceIdGenerator } from "./TraceId.js"
import { mergeContributions } from "./Phases.js"
import { CircuitBreaker } from "../upstream/Circuit.js"
import type { RouteConfig } from "../config/Schema.js"

/** The route's breaker: the previous one while its settings are the same (a reload keeps its state). */
const routeBreaker = (route: RouteConfig, previous: Dataplane | undefined): CircuitBreaker | undefined => {
  const c = route.circuitBreaker
  if (c === undefined) return undefined
  const old = previous?.plans.get(route.id)?.breaker
  if (old !== undefined && JSON.stringify(previous!.config.routes.find((r) => r.id === route.id)?.circuitBreaker) === JSON.stringify(c)) return old
  return new CircuitBreaker(c)
}

export interface RoutePlan {
  readonly id: string
  readonly upstream: UpstreamRuntime | undefined
  readonly builtin: BuiltinHandler | undefined
  readonly requestPolicy: HeaderPolicy | undefined
  readonly responsePolicy: HeaderPolicy | undefined
  /** Whole-request deadline (`policies { timeout-secs }`), 0 = none. */
  readonly timeoutMs: number
  /** Response-head deadline per upstream attempt (`timeout` filter), 0 = the upstream's `read`. */
  readonly upstreamTimeoutMs: number
  /** Deadline to get onto a connected upstream socket (`timeout` filter), 0 = the pool's. */
  readonly connectTimeoutMs: number
  /** Request-phase stages in order (filters, agents). */
  readonly request: ReadonlyArray<RequestStage>
  /** Response-head stages in order. */
  readonly response: ReadonlyArray<ResponseStage>
  readonly complete: ReadonlyArray<CompleteStage>
  /** Set when an extension serves the route itself (static files). */
  readonly local: LocalHandler | undefined
  /** Set when an extension must see the upstream response before the client does (response-phase agents). */
  readonly responseHook?: ResponseHook | undefined
  /** Request body bytes allowed on this route (`policies { max-body-size }`, else `limits`). */
  readonly maxBodySize: number
  /** `policies { buffer-requests }`: every body is read whole (up to `maxBodySize`) before going upstream. */
  readonly bufferRequests: boolean
  /** `policies { buffer-responses }`: the response is held whole (bounded) before its head goes out. */
  readonly bufferResponses: boolean
  /** The route's own `circuit-breaker`, around its upstream calls; kept across reloads while its settings stay. */
  readonly breaker: CircuitBreaker | undefined
  /** WebSocket handshakes (src/websocket/); undefined without the extension: every one is refused (403). */
  readonly upgrade?: UpgradePolicy | undefined
  /** Re-encodes upstream response bodies (the `compress` filter): pipeline/EncodingSink.ts. */
  readonly encoding?: ResponseEncoding | undefined
}

export interface Dataplane {
  readonly config: SentinelConfig
  readonly router: Router
  readonly plans: ReadonlyMap<string, RoutePlan>
  readonly upstreams: ReadonlyMap<string, UpstreamRuntime>
  readonly limits: LimitsConfig
  /** `limits { slow-reader-timeout-secs }` in ms, 0 = none. */
  readonly slowReaderTimeoutMs: number
  readonly newTraceId: () => string
}

export const compileDataplane = (
  config: SentinelConfig,
  upstreams: ReadonlyMap<string, UpstreamRuntime>,
  extensions: ReadonlyArray<RouteExtension> = [],
  /** The dataplane being replaced (a reload): route breakers whose settings did not change keep their state. */
  previous?: Dataplane
): Dataplane => {
  const plans = new Map<string, RoutePlan>()
  for (const route of config.routes) {
    const c = mergeContributions(extensions.map((e) => e.compile(route, config))) ?? {}
    const request: ReadonlyArray<RequestStage> = c.request ?? []
    const response: ReadonlyArray<ResponseStage> = c.response ?? []
    const complete: ReadonlyArray<CompleteStage> = c.complete ?? []
    const local: LocalHandler | undefined = c.handler
    const timeoutMs = c.timeoutMs ?? (route.policies.timeout === undefined ? 0 : Duration.toMillis(route.policies.timeout))
    const responseHook: ResponseHook | undefined = c.responseHook
    const upstreamTimeoutMs = c.upstreamTimeoutMs ?? 0
    const connectTimeoutMs = c.connectTimeoutMs ?? 0
    const upgrade: UpgradePolicy | undefined = c.upgrade
    const encoding: ResponseEncoding | undefined = c.encoding
    plans.set(route.id, {
      upstreamTimeoutMs,
      connectTimeoutMs,
      request,
      response,
      complete,
      local,
      responseHook,
      upgrade,
      encoding,
      id: route.id,
      upstream: route.upstream === undefined ? undefined : upstreams.get(route.upstream),
      builtin: route.builtinHandler,
      requestPolicy: compileHeaderOps(route.policies.requestHeaders),
      responsePolicy: compileHeaderOps(route.policies.responseHeaders),
      timeoutMs,
      maxBodySize: route.policies.maxBodySize ?? config.limits.maxBodySize,
      bufferRequests: route.policies.bufferRequests,
      bufferResponses: route.policies.bufferResponses,
      breaker: routeBreaker(route, previous)
    })
  }
  return {
    config,
    router: makeRouter(config.routes),
    plans,
    upstreams,
    limits: config.limits,
    slowReaderTimeoutMs: Duration.toMillis(config.limits.slowReaderTimeout),
    newTraceId: makeTraceIdGenerator(config.system.traceIdFormat)
  }
}
