/**
 * The proxy as Effect layers. `App.layer(options)` is the composition of the proxy's
 * long-lived parts, each a service with its own `layer`:
 *
 *   Logs          access and audit logs (+ the error log when provided)   observability/ProxyLogs.ts
 *   Upstreams     pools, health checks, breakers, DNS                     upstream/UpstreamSet.ts
 *   Agents        agent managers and their route extension                agents/Agents.ts
 *   RequestPath   the dataplane and the request handler                   pipeline/RequestPath.ts
 *   Listeners     sockets, TLS, HTTP/2, admission, drain                  server/ListenerSet.ts
 *   Sentinel      reloads across all of them; follows the ConfigSource    here
 *
 * and requires what it does not build: `ConfigSource` (a value or a file), `MetricsService`
 * (a registry), optionally `Tracing` and `ErrorLogService`, and whatever services your own
 * Effect stages need. `App.layerFrom(config)` is the default wiring (a fresh registry,
 * tracing from `observability { tracing }`); `Program.ts` wires the command line.
 *
 * Closing the layer's scope drains the listeners (in-flight requests finish, up to `system {
 * graceful-shutdown-timeout-secs }`), then closes agents, upstream pools and logs, in the
 * reverse order they were built. Nothing is left behind: no socket, timer or fiber.
 *
 * `reload(config)` swaps the dataplane atomically: requests in flight finish on the
 * configuration they started with; upstreams whose definition did not change keep their pools
 * (and health/circuit state); the others are drained and closed after the grace period;
 * listeners are added, removed or rebound; the logs are switched on/off, moved or reformatted.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { SentinelConfig } from "./config/Schema.js"
import { ConfigSource } from "./config/ConfigSource.js"
import type { ConfigReloader } from "./config/Reload.js"
import { type Metrics, makeMetrics, MetricsService } from "./observability/Metrics.js"
import { Logs } from "./observability/ProxyLogs.js"
import { Tracing, tracingLayer, type RequestTracing } from "./observability/Tracing.js"
import type { LogOpenFailed } from "./observability/LogWriter.js"
import type { Dataplane } from "./pipeline/Dataplane.js"
import type { PhaseEdit } from "./pipeline/Phases.js"
import { RequestPath } from "./pipeline/RequestPath.js"
import type { RouteExtension } from "./pipeline/Stage.js"
import type { ListenerBindFailed } from "./server/Listener.js"
import { type BoundAddress, Listeners } from "./server/ListenerSet.js"
import { Upstreams } from "./upstream/UpstreamSet.js"
import { Agents } from "./agents/Agents.js"
import type { AgentStatus } from "./agents/AgentManager.js"
import type { ChallengePolicy } from "./agents/AgentDecision.js"
import { VERSION } from "./Version.js"

export type { BoundAddress }

export interface SentinelOptions<R = never> {
  /** Metrics registry to use (`layerFrom`/`make` only; with `layer`, provide `MetricsService`). Default: a fresh one. */
  readonly metrics?: Metrics
  /** Stages before or after a built-in phase, or replacing one (`before`, `after`, `replace` of Phases.ts). */
  readonly phases?: ReadonlyArray<PhaseEdit<R>>
  /** Extra route features (stages) after the built-in phases. */
  readonly extensions?: ReadonlyArray<RouteExtension<R>>
  /** What an agent's challenge decision becomes. Default: 403 with the type in `x-sentinel-challenge`. */
  readonly agentChallenge?: Partial<ChallengePolicy>
  /**
   * The request path's tracer (`layerFrom`/`make` only). Default: the `Tracing` service when the
   * caller provides one, else one built from `observability { tracing }` for the proxy's
   * lifetime; none without that block.
   */
  readonly tracing?: RequestTracing
  /** The response cache's clock in epoch ms (freshness, ages). Default `Date.now`; tests pass a controllable one. */
  readonly cacheClock?: () => number
}

export interface ReloadSummary {
  readonly upstreamsKept: number
  readonly upstreamsStarted: number
  readonly upstreamsRetired: number
  readonly listenersStarted: number
  readonly listenersStopped: number
}

export interface SentinelService {
  /** Where each listener is bound (port 0 in config = chosen by the OS). Updated by reloads. */
  readonly addresses: ReadonlyMap<string, BoundAddress>
  /** The dataplane requests arriving now will use. */
  readonly dataplane: () => Dataplane
  readonly metrics: Metrics
  /**
   * Swap in a new (already validated) configuration. On failure the running one stays.
   * Access and audit logs follow it (nginx-like): a log file that cannot be opened
   * fails the reload (`LogOpenFailed`) before anything changed; lines queued for a
   * replaced sink are flushed to it, then it is closed.
   */
  readonly reload: (config: SentinelConfig) => Effect.Effect<ReloadSummary, ListenerBindFailed | LogOpenFailed>
  /** Reopen log files (logrotate's SIGUSR1). */
  readonly reopenLogs: () => Effect.Effect<void>
  /** Connection, queue and circuit state of each agent of the current manager. */
  readonly agentStatus: () => ReadonlyArray<AgentStatus>
  /**
   * The configuration source followed: `reload(trigger)` re-reads and applies the file (SIGHUP),
   * `current` is the configuration in force. A value source never changes (`Unchanged`).
   */
  readonly config: ConfigReloader
}

export class Sentinel extends Context.Tag("sentinel/App/Sentinel")<Sentinel, SentinelService>() {}

/** Every service `App.layer` builds. */
export type Services = Sentinel | Listeners | RequestPath | Agents | Upstreams | Logs

/** The reload across every part, and the source followed. */
const makeSentinel: Effect.Effect<
  SentinelService,
  never,
  Scope.Scope | ConfigSource | MetricsService | Logs | Upstreams | Agents | RequestPath | Listeners
> = Effect.gen(function* () {
  const source = yield* ConfigSource
  const metrics = yield* MetricsService
  const logs = yield* Logs
  const upstreams = yield* Upstreams
  const agents = yield* Agents
  const path = yield* RequestPath
  const listeners = yield* Listeners

  const swap = (next: SentinelConfig): Effect.Effect<ReloadSummary, ListenerBindFailed> =>
    Effect.gen(function* () {
      // certificates of kept listeners are re-read first: one that fails changes nothing
      const bound = yield* listeners.stage(next)
      const staged = yield* upstreams.stage(next)
      const previous = path.dataplane()
      // a changed agents block gets a new manager; routes compiled below capture it
      yield* agents.reload(next)
      path.set(path.compile(next, staged.runtimes))
      const { started, stopped } = yield* bound.rebind().pipe(
        Effect.tapError(() =>
          Effect.sync(() => {
            // Roll back the swap: the old configuration keeps serving.
            path.set(previous)
            staged.rollback()
          })
        )
      )
      yield* bound.renew()
      // series of targets and agents this configuration no longer has stop being exported
      metrics.retain(next)
      yield* staged.commit()
      return {
        upstreamsKept: staged.kept,
        upstreamsStarted: staged.started,
        upstreamsRetired: staged.retired,
        listenersStarted: started,
        listenersStopped: stopped
      }
    })

  /** Logs switch after the rest succeeded (requests in flight log to either sink, each line once). */
  const reload = (next: SentinelConfig): Effect.Effect<ReloadSummary, ListenerBindFailed | LogOpenFailed> =>
    Effect.gen(function* () {
      const swapLogs = yield* logs.prepare(next)
      return yield* swap(next).pipe(
        Effect.onExit((exit) => Effect.sync(() => (Exit.isSuccess(exit) ? swapLogs.commit() : swapLogs.abort())))
      )
    })

  const config = yield* source.follow(
    (next) =>
      reload(next).pipe(
        Effect.tap((summary) => Effect.logInfo("configuration applied").pipe(Effect.annotateLogs({ ...summary }))),
        Effect.mapError((e) => ({
          message:
            e._tag === "LogOpenFailed"
              ? `${e.log} log cannot be opened: ${e.file}: ${e.message}`
              : `listener "${e.listener}" cannot bind ${e.address}: ${e.message}`
        })),
        Effect.asVoid
      ),
    metrics
  )

  yield* Effect.logInfo("sentinel started").pipe(
    Effect.annotateLogs({
      version: VERSION,
      listeners: [...listeners.addresses].map(([id, a]) => `${id}=${a.host}:${a.port}`).join(" ")
    })
  )
  return {
    addresses: listeners.addresses,
    dataplane: path.dataplane,
    metrics,
    reload,
    agentStatus: agents.status,
    reopenLogs: logs.reopen,
    config
  }
})

/**
 * The proxy, built from its parts; requires `ConfigSource`, `MetricsService` and the services
 * of your Effect stages (`R`), optionally `Tracing` and `ErrorLogService`.
 */
export const layer = <R = never>(
  options: SentinelOptions<R> = {}
): Layer.Layer<Services, ListenerBindFailed, ConfigSource | MetricsService | R> => {
  // Stages' services come from the layer's context (the request path's runtime carries them).
  const requestPath = RequestPath.layer({
    version: VERSION,
    phases: options.phases as ReadonlyArray<PhaseEdit> | undefined,
    extensions: options.extensions as ReadonlyArray<RouteExtension> | undefined,
    cacheClock: options.cacheClock
  }) as Layer.Layer<RequestPath, never, ConfigSource | MetricsService | Logs | Agents | Upstreams | R>
  return Layer.scoped(Sentinel, makeSentinel).pipe(
    Layer.provideMerge(Listeners.layer),
    Layer.provideMerge(requestPath),
    Layer.provideMerge(Agents.layer({ challenge: options.agentChallenge, proxyVersion: VERSION })),
    Layer.provideMerge(Upstreams.layer),
    Layer.provideMerge(Logs.layer)
  )
}

/**
 * Tracing as `observability { tracing }` of the source's initial configuration asks (restart-only),
 * unless a `Tracing` service is provided already. Provides `Tracing` when configured.
 */
export const tracingFromConfig: Layer.Layer<never, never, ConfigSource> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const existing = yield* Effect.serviceOption(Tracing)
    if (existing._tag === "Some") return Layer.succeed(Tracing, existing.value) as Layer.Layer<never>
    const t = (yield* ConfigSource).initial.config.observability.tracing
    return t === undefined ? Layer.empty : (tracingLayer({ serviceVersion: VERSION, ...t }) as Layer.Layer<never>)
  })
)

/** A fresh registry sized by the source's `observability { metrics { max-series-per-metric } }`. */
export const metricsFromConfig = (options: { readonly defaultMetrics?: boolean } = {}): Layer.Layer<MetricsService, never, ConfigSource> =>
  Layer.effect(
    MetricsService,
    Effect.map(ConfigSource, (source) =>
      makeMetrics({
        version: VERSION,
        defaultMetrics: options.defaultMetrics ?? false,
        maxSeriesPerMetric: source.initial.config.observability.metrics.maxSeriesPerMetric
      })
    )
  )

/** The default wiring around `layer`: the configuration value, a fresh registry (or `options.metrics`), tracing from the config. */
export const layerFrom = <R = never>(
  config: SentinelConfig,
  options: SentinelOptions<R> = {}
): Layer.Layer<Services | MetricsService, ListenerBindFailed, R> =>
  layer(options).pipe(
    Layer.provideMerge(options.metrics !== undefined ? Layer.succeed(MetricsService, options.metrics) : metricsFromConfig()),
    Layer.provide(options.tracing !== undefined ? (Layer.succeed(Tracing, options.tracing) as Layer.Layer<never>) : tracingFromConfig),
    Layer.provide(ConfigSource.fromValue(config))
  )

/** The proxy in the caller's scope, from a configuration value (`layerFrom`'s wiring). */
export const make = <R = never>(
  config: SentinelConfig,
  options: SentinelOptions<R> = {}
): Effect.Effect<SentinelService, ListenerBindFailed, Scope.Scope | R> =>
  Effect.map(Layer.build(layerFrom(config, options)), (ctx) => Context.get(ctx, Sentinel))
