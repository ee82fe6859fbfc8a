/**
 * The proxy as an Effect service: `Sentinel.layer(config)` starts every
 * listener on a dataplane compiled from `config`; closing the layer's scope
 * drains the listeners (in-flight requests finish, up to
 * `system { graceful-shutdown-timeout-secs }`), then closes the upstream
 * pools and the logs. Nothing is left behind: no socket, timer or fiber.
 *
 * Programs embed the proxy by providing this layer, or by calling `make`
 * inside their own scope.
 */
import { Context, Duration, Effect, Layer, Runtime, type Scope } from "effect"
import type { SentinelConfig } from "./config/Schema.js"
import type { BuiltinView } from "./handlers/Builtin.js"
import { makeMetrics, type Metrics } from "./observability/Metrics.js"
import { compileDataplane, type Dataplane } from "./pipeline/Dataplane.js"
import { makeRequestHandler, type PipelineHooks } from "./pipeline/Pipeline.js"
import type { RequestContext } from "./pipeline/RequestContext.js"
import { startListener, type ListenerBindFailed, type ListenerHandle } from "./server/Listener.js"
import { makeUpstreamRuntime, type UpstreamRuntime } from "./upstream/Upstreams.js"
import { makeAccessLog, type AccessLog } from "./observability/AccessLog.js"
import { VERSION } from "./Version.js"

export interface BoundAddress {
  readonly host: string
  readonly port: number
}

export interface SentinelOptions {
  /** Metrics registry to use (default: a fresh one per proxy). */
  readonly metrics?: Metrics
}

export class Sentinel extends Context.Tag("sentinel/App/Sentinel")<
  Sentinel,
  {
    /** Where each listener is bound (port 0 in config = chosen by the OS). */
    readonly addresses: ReadonlyMap<string, BoundAddress>
    /** The dataplane requests arriving now will use. */
    readonly dataplane: () => Dataplane
    readonly metrics: Metrics
  }
>() {}

const buildUpstreams = (config: SentinelConfig): Map<string, UpstreamRuntime> =>
  new Map(config.upstreams.map((u) => [u.id, makeUpstreamRuntime(u)]))

export const make = (
  config: SentinelConfig,
  options: SentinelOptions = {}
): Effect.Effect<Context.Tag.Service<Sentinel>, ListenerBindFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const startedAt = Date.now()
    const metrics = options.metrics ?? makeMetrics({ version: VERSION, defaultMetrics: false })
    const accessLog: AccessLog = yield* makeAccessLog(config.observability.logging.accessLog, metrics)

    // Pools close after the listeners drained (finalizers run in reverse order).
    const upstreams = buildUpstreams(config)
    const graceMs = Duration.toMillis(config.system.gracefulShutdownTimeout)
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.all([...upstreams.values()].map((u) => u.close(graceMs)))).pipe(Effect.asVoid)
    )

    let current = compileDataplane(config, upstreams)
    const dataplane = () => current

    const builtinView = (): BuiltinView => ({
      version: VERSION,
      startedAt,
      routes: current.config.routes.map((r) => ({
        id: r.id,
        priority: r.priority,
        kind: r.builtinHandler !== undefined ? "builtin" : "upstream"
      })),
      upstreams: [...current.upstreams.values()].map((u) => ({
        id: u.id,
        targets: u.targets.map((t) => ({ address: t.key, weight: t.target.weight, active: t.active, healthy: true }))
      })),
      metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() })
    })

    const hooks: PipelineHooks = {
      onComplete: (ctx: RequestContext) => {
        const route = ctx.routeId === "" ? "none" : ctx.routeId
        metrics.requests.inc(route, ctx.method, ctx.status)
        accessLog.write(ctx)
      },
      onReject: (_ctx, reason) => {
        metrics.rejected.inc(reason)
      }
    }

    const runtime = yield* Effect.runtime<never>()
    const addresses = new Map<string, BoundAddress>()
    const handles: Array<ListenerHandle> = []
    for (const listener of config.listeners) {
      const handle = yield* startListener(
        listener,
        config.limits,
        (h) =>
          makeRequestHandler({
            listenerId: listener.id,
            scheme: "http",
            runtime: runtime as Runtime.Runtime<never>,
            dataplane,
            builtinView,
            hooks,
            draining: h.draining
          }),
        {
          onClientError: (_listener, _status, reason) => metrics.rejected.inc(reason),
          onConnection: () => {}
        }
      )
      handles.push(handle)
      addresses.set(listener.id, { host: handle.host, port: handle.port })
      yield* Effect.addFinalizer(() => Effect.promise(() => handle.drain(graceMs)))
    }
    yield* Effect.logInfo("sentinel started").pipe(
      Effect.annotateLogs({
        version: VERSION,
        listeners: handles.map((h) => `${h.id}=${h.host}:${h.port}`).join(" ")
      })
    )
    return { addresses, dataplane, metrics }
  })

export const layer = (config: SentinelConfig, options?: SentinelOptions): Layer.Layer<Sentinel, ListenerBindFailed> =>
  Layer.scoped(Sentinel, make(config, options))
