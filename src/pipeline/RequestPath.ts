/**
 * The request path as a service: the dataplane compiled from the configuration in force
 * (router, route plans built from the named phases, upstream runtimes), and the request
 * handler each listener serves with. What a request does, in order (Pipeline.ts): validate,
 * trace, route, the route's phases (filters, agents, static files, your stages: Phases.ts),
 * upstream or handler, response stages, log (metrics, access line, span end).
 *
 * A reload compiles the next dataplane (`compile`) and puts it in force (`set`); requests
 * read the dataplane once when they arrive, so one in flight finishes on the configuration
 * it started with.
 */
import { performance } from "node:perf_hooks"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type { SentinelConfig } from "../config/Schema.js"
import { ConfigSource } from "../config/ConfigSource.js"
import { Agents } from "../agents/Agents.js"
import { makeFilterChain } from "../filters/Chain.js"
import { configView } from "../config/ConfigView.js"
import type { RedisBackendHooks } from "../filters/RedisRateLimit.js"
import type { BuiltinView } from "../handlers/Builtin.js"
import { makeStaticFilesRoute } from "../handlers/StaticFilesRoute.js"
import { CircuitStateValue, type Metrics, MetricsService } from "../observability/Metrics.js"
import { callbackLogger, Logs } from "../observability/ProxyLogs.js"
import { Tracing, type RequestTracing } from "../observability/Tracing.js"
import { describeUpstream, type UpstreamRuntime } from "../upstream/Upstreams.js"
import { Upstreams } from "../upstream/UpstreamSet.js"
import { compileDataplane, type Dataplane } from "./Dataplane.js"
import { combineExtensions, editedPhase, type PhaseEdit, phaseEditProblems } from "./Phases.js"
import { makeRequestHandler, type PipelineHooks } from "./Pipeline.js"
import type { RequestContext } from "./RequestContext.js"
import type { RouteExtension } from "./Stage.js"
import { makeWebSockets, type WebSockets } from "../websocket/WebSockets.js"
import { ResponseCache } from "../cache/Cache.js"
import { cacheBuiltin } from "../cache/Builtins.js"
import { cacheExtension } from "../cache/CacheStage.js"
import { refreshInBackground } from "./Refresh.js"

export interface RequestPathOptions {
  /** Edits of the built-in phases: stages before or after one, or a replacement. */
  readonly phases?: ReadonlyArray<PhaseEdit> | undefined
  /** Route features after the built-in phases. */
  readonly extensions?: ReadonlyArray<RouteExtension> | undefined
  readonly version: string
  /** The response cache's clock (epoch ms). Default `Date.now`; tests pass their own. */
  readonly cacheClock?: (() => number) | undefined
}

export interface RequestPathService {
  /** The dataplane requests arriving now use. */
  readonly dataplane: () => Dataplane
  /** The next configuration's dataplane, not yet in force (route breakers of unchanged routes carried over). */
  readonly compile: (next: SentinelConfig, upstreams: ReadonlyMap<string, UpstreamRuntime>) => Dataplane
  readonly set: (dataplane: Dataplane) => void
  /** The request handler of one listener (`draining`: its drain flag). */
  readonly handlerFor: (
    listener: { readonly id: string; readonly protocol: string },
    draining: () => boolean
  ) => ReturnType<typeof makeRequestHandler>
  readonly tracing: RequestTracing | undefined
  /** WebSocket tunnels: their registry (drained with the listeners) and limits (`configure` on reload). */
  readonly websockets: WebSockets
  /** The response cache (src/cache/): its store survives reloads for routes whose cache settings stay. */
  readonly cache: ResponseCache
}

/** The `protocol` label of a request: its HTTP version, and whether it came over TLS. */
const PROTOCOL_LABELS = {
  http: { "1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2.0": "HTTP/2" },
  https: { "1.0": "HTTP/1.0+TLS", "1.1": "HTTP/1.1+TLS", "2.0": "HTTP/2+TLS" }
} as const
const protocolLabel = (ctx: RequestContext): string =>
  PROTOCOL_LABELS[ctx.scheme][ctx.http2 ? "2.0" : ctx.req.httpVersion === "1.0" ? "1.0" : "1.1"]

/** Redis-backed rate limits to metrics and (already throttled) log lines. */
const redisHooks = (metrics: Metrics, log: (effect: Effect.Effect<void>) => void): RedisBackendHooks => ({
  backendError: (filterId, reason) => metrics.rateLimitBackendErrors.inc(filterId, reason),
  circuitChanged: (backend, from, to) => {
    if (from === to) {
      metrics.circuitState.set(CircuitStateValue[to], "ratelimit-redis", backend)
      return
    }
    metrics.circuitChanged("ratelimit-redis", backend, to)
  },
  backendClosed: (backend) => void metrics.circuitState.remove("ratelimit-redis", backend),
  log: (level, message, fields) =>
    log((level === "warn" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs(fields)))
})

export class RequestPath extends Context.Tag("sentinel/pipeline/RequestPath")<RequestPath, RequestPathService>() {
  static readonly layer = (
    options: RequestPathOptions
  ): Layer.Layer<RequestPath, never, ConfigSource | MetricsService | Logs | Agents | Upstreams> =>
    Layer.scoped(
      RequestPath,
      Effect.gen(function* () {
        const initial = (yield* ConfigSource).initial.config
        const metrics = yield* MetricsService
        const logs = yield* Logs
        const agents = yield* Agents
        const upstreams = yield* Upstreams
        const tracing = Option.getOrUndefined(yield* Effect.serviceOption(Tracing))
        const edits = options.phases ?? []
        const problems = phaseEditProblems(edits)
        if (problems.length > 0) return yield* Effect.dieMessage(`phase edits: ${problems.join("; ")}`)
        const startedAt = Date.now()

        // Filters run in each route's `filters` order, the agents' slot at its position.
        const agentsSlot = editedPhase("agents", agents.extension, edits)
        const filterChain = makeFilterChain({
          ...(agentsSlot !== undefined ? { agents: agentsSlot } : {}),
          onDecision: (ctx, d) => {
            if (d.reason === "rate-limited") metrics.rateLimited.inc(ctx.routeId)
            else if (d.status === 403) metrics.blocked.inc(d.reason)
            // answers are counted as `rejected` by the pipeline; continued-but-altered ones here
            if (d.status === 0) metrics.rejected.inc(d.reason)
          },
          redis: redisHooks(metrics, callbackLogger(yield* Effect.runtime<never>())),
          compression: {
            skipped: (route, reason) => metrics.compressionSkipped.inc(route, reason),
            compressed: (route, coding, bytesIn, bytesOut) => {
              metrics.compressed.inc(route, coding)
              metrics.compressionIn.add(bytesIn, route, coding)
              metrics.compressionOut.add(bytesOut, route, coding)
            }
          }
        })
        // Redis connections close after the listeners drained (finalizers run in reverse order).
        yield* Effect.addFinalizer(() => Effect.sync(() => filterChain.close()))
        // a replaced `filters` phase keeps the agents' slot, right after the replacement
        const filtersPhase = editedPhase(
          "filters",
          filterChain,
          edits.map((e) =>
            e.phase === "filters" && e.at === "replace" && agentsSlot !== undefined
              ? { ...e, extension: combineExtensions("filters", [e.extension, agentsSlot])! }
              : e
          )
        )
        const staticFiles = makeStaticFilesRoute({ responseStages: (ctx) => current.plans.get(ctx.routeId)?.response ?? [] })
        // WebSocket handshakes and tunnels (src/websocket/): every route gets its upgrade policy
        const websockets = makeWebSockets(initial, { metrics, audit: logs.audit, frameAgents: agents.websocketFrames })
        // the response cache (src/cache/): one store for every route, carried across reloads
        const cache = new ResponseCache(
          initial,
          {
            result: (route, result) => metrics.cacheRequests.inc(route, result),
            evicted: (route) => metrics.cacheEvictions.inc(route),
            changed: (route, s) => {
              metrics.cacheBytes.set(s.bytes, route)
              metrics.cacheEntries.set(s.entries, route)
            },
            dropped: (route) => {
              metrics.cacheBytes.remove(route)
              metrics.cacheEntries.remove(route)
            },
            refresh: (ctx, headers, sink, done) => {
              const plan = current.plans.get(ctx.routeId)
              return plan !== undefined && refreshInBackground(ctx, current, plan, headers, sink, done)
            }
          },
          { now: options.cacheClock }
        )
        const extensions = [
          filtersPhase,
          editedPhase("static-files", staticFiles, edits),
          editedPhase("cache", cacheExtension(cache), edits),
          websockets.extension,
          ...(options.extensions ?? [])
        ].filter((e): e is RouteExtension => e !== undefined)

        let current = compileDataplane(initial, upstreams.runtimes(), extensions)

        const builtinView = (): BuiltinView => ({
          version: options.version,
          startedAt,
          routes: current.config.routes.map((r) => ({
            id: r.id,
            priority: r.priority,
            kind: r.builtinHandler !== undefined ? "builtin" : "upstream"
          })),
          upstreams: [...current.upstreams.values()].map(describeUpstream),
          metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
          config: () => configView(current.config),
          cache: (name, request) => cacheBuiltin(cache, () => current.config.cache.adminOnly, logs.audit.operator, name, request)
        })

        const log: PipelineHooks = {
          onComplete: (ctx: RequestContext) => {
            const route = ctx.routeId === "" ? "none" : ctx.routeId
            metrics.completed(route, ctx.method, ctx.status, (performance.now() - ctx.start) / 1000)
            metrics.servedOver(ctx.listenerId, protocolLabel(ctx))
            // a WebSocket handshake that became a tunnel is logged when the tunnel ends (nginx does so)
            if (ctx.websocket !== undefined && ctx.websocket.deferLog(() => logs.access.write(ctx))) return
            logs.access.write(ctx)
          },
          onReject: (_ctx, reason) => {
            metrics.rejected.inc(reason)
          }
        }
        // Sampled requests end their server span as they complete; nothing is added when tracing is off.
        const hooks: PipelineHooks =
          tracing === undefined
            ? log
            : {
                ...log,
                onComplete: (ctx) => {
                  ctx.trace?.end(ctx)
                  log.onComplete(ctx)
                }
              }
        // Effect stages run on this runtime: it carries the services the layer was built with.
        const runtime = (yield* Effect.runtime<never>()) as Runtime.Runtime<never>
        return {
          dataplane: () => current,
          compile: (next, runtimes) => compileDataplane(next, runtimes, extensions, current),
          set: (d) => {
            // routes whose cache settings changed (or that are gone) lose their entries
            if (d.config !== current.config) cache.configure(d.config)
            current = d
          },
          handlerFor: (listener, draining) =>
            makeRequestHandler({
              listenerId: listener.id,
              scheme: listener.protocol === "https" ? "https" : "http",
              runtime,
              dataplane: () => current,
              builtinView,
              hooks,
              draining,
              tracing
            }),
          tracing,
          websockets,
          cache
        }
      })
    )
}

