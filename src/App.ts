/**
 * The proxy as an Effect service: `layer(config)` starts every listener on a
 * dataplane compiled from `config`; closing the layer's scope drains the
 * listeners (in-flight requests finish, up to `system {
 * graceful-shutdown-timeout-secs }`), then closes the upstream pools and the
 * logs. Nothing is left behind: no socket, timer or fiber.
 *
 * `reload(config)` swaps the dataplane atomically: requests in flight finish
 * on the configuration they started with; upstreams whose definition did not
 * change keep their pools (and health/circuit state); the others are drained
 * and closed after the grace period; listeners are added, removed or rebound;
 * the access and audit logs are switched on/off, moved or reformatted.
 *
 * Programs embed the proxy by providing this layer, or by calling `make`
 * inside their own scope.
 */
import { isIP } from "node:net"
import { performance } from "node:perf_hooks"
import { Context, Duration, Effect, Either, Exit, Layer, Option, Runtime, Scope } from "effect"
import type { LimitsConfig, ListenerConfig, SentinelConfig } from "./config/Schema.js"
import type { BuiltinView } from "./handlers/Builtin.js"
import { CircuitStateValue, makeMetrics, type Metrics } from "./observability/Metrics.js"
import { compileDataplane, type Dataplane } from "./pipeline/Dataplane.js"
import { makeRequestHandler, type PipelineHooks } from "./pipeline/Pipeline.js"
import type { RequestContext } from "./pipeline/RequestContext.js"
import type { RouteExtension } from "./pipeline/Stage.js"
import { admissionConfigFor, connectionLimitsFor, ListenerBindFailed, startListener, type ListenerHandle } from "./server/Listener.js"
import { Admission, ConnectionTracker } from "./server/Admission.js"
import { loadListenerTls, type ListenerTls } from "./server/Tls.js"
import { makeFilterChain } from "./filters/Chain.js"
import { makeStaticFilesRoute } from "./handlers/StaticFilesRoute.js"
import { makeDnsCache } from "./upstream/Dns.js"
import {
  describeUpstream,
  launchUpstream,
  upstreamConnections,
  type UpstreamObserver,
  type UpstreamRuntime
} from "./upstream/Upstreams.js"
import { makeAccessLog, makeRejectionLog, type AccessLog } from "./observability/AccessLog.js"
import { Tracing, tracingLayer, type RequestTracing } from "./observability/Tracing.js"
import { makeAuditLog } from "./observability/AuditLog.js"
import { combineLogSwaps, type LogOpenFailed, type LogSwap } from "./observability/Logs.js"
import { makeAgents } from "./agents/AgentsExtension.js"
import type { AgentStatus } from "./agents/Manager.js"
import type { ChallengePolicy } from "./agents/AgentDecision.js"
import { VERSION } from "./Version.js"
import { makeWebSockets } from "./websocket/WebSockets.js"

export interface BoundAddress {
  readonly host: string
  readonly port: number
}

export interface SentinelOptions {
  /** Metrics registry to use (default: a fresh one per proxy). */
  readonly metrics?: Metrics
  /** Extra route features (stages) besides the built-in ones. */
  readonly extensions?: ReadonlyArray<RouteExtension>
  /** What an agent's challenge decision becomes. Default: 403 with the type in `x-sentinel-challenge`. */
  readonly agentChallenge?: Partial<ChallengePolicy>
  /**
   * The request path's tracer. Default: the `Tracing` service when the caller
   * provides one (main.ts: `tracingLayerOptional`), else one built from
   * `observability { tracing }` for the proxy's lifetime; none without that block.
   */
  readonly tracing?: RequestTracing
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
}

export class Sentinel extends Context.Tag("sentinel/App/Sentinel")<Sentinel, SentinelService>() {}

interface ListenerEntry {
  readonly key: string
  readonly handle: ListenerHandle
  readonly scope: Scope.CloseableScope
}

/** Identity of an upstream definition: same key = reuse pools and state across a reload. */
const upstreamKey = (u: SentinelConfig["upstreams"][number]): string => JSON.stringify(u)
/** A listener is rebound when its own settings or the limits its server was built with change. */
const listenerKey = (l: ListenerConfig, limits: LimitsConfig): string => JSON.stringify([l, limits])

const PROTOCOL_LABELS = {
  http: { "1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2.0": "HTTP/2" },
  https: { "1.0": "HTTP/1.0+TLS", "1.1": "HTTP/1.1+TLS", "2.0": "HTTP/2+TLS" }
} as const
/** The `protocol` label of a request: its HTTP version, and whether it came over TLS. */
const protocolLabel = (ctx: RequestContext): string =>
  PROTOCOL_LABELS[ctx.scheme][ctx.http2 ? "2.0" : ctx.req.httpVersion === "1.0" ? "1.0" : "1.1"]

/** Upstream events to metrics and log lines (every health and circuit change is logged). */
const upstreamObserver = (metrics: Metrics, log: (effect: Effect.Effect<void>) => void): UpstreamObserver => ({
  healthChanged: (c) => {
    metrics.upstreamHealth.set(c.eligible ? 1 : 0, c.upstream, c.target)
    const message = c.eligible ? "upstream target back in rotation" : "upstream target taken out of rotation"
    log(
      (c.eligible ? Effect.logInfo(message) : Effect.logWarning(message)).pipe(
        Effect.annotateLogs({ upstream: c.upstream, target: c.target, source: c.source, reason: c.reason })
      )
    )
  },
  circuitChanged: (upstream, target, from, to) => {
    const component = `upstream:${upstream}`
    metrics.circuitState.set(CircuitStateValue[to], component, target)
    metrics.circuitTransitions.inc(component, target, to)
    const message = `circuit breaker ${from} -> ${to}`
    log((to === "open" ? Effect.logWarning(message) : Effect.logInfo(message)).pipe(Effect.annotateLogs({ upstream, target, from, to })))
  },
  // per attempt: pre-bound children by (upstream, route|target), no key string built
  attempt: (upstream, route) => metrics.upstreamAttempt(upstream, route),
  settled: (upstream, target, ms) => metrics.upstreamAttemptDuration(upstream, target, ms),
  failure: (upstream, route, reason) => metrics.upstreamFailures.inc(upstream, route, reason),
  retry: (upstream, route, reason) => metrics.upstreamRetries.inc(upstream, route, reason)
})

export const make = (
  initial: SentinelConfig,
  options: SentinelOptions = {}
): Effect.Effect<SentinelService, ListenerBindFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const startedAt = Date.now()
    // First, so that it is closed (spans flushed) after the listeners drained.
    const tracing: RequestTracing | undefined =
      options.tracing ??
      Option.getOrUndefined(yield* Effect.serviceOption(Tracing)) ??
      (initial.observability.tracing === undefined
        ? undefined
        : Context.get(yield* Layer.build(tracingLayer({ serviceVersion: VERSION, ...initial.observability.tracing })), Tracing))
    const metrics =
      options.metrics ??
      makeMetrics({ version: VERSION, defaultMetrics: false, maxSeriesPerMetric: initial.observability.metrics.maxSeriesPerMetric })
    const accessLog: AccessLog = yield* makeAccessLog(initial.observability.logging.accessLog, metrics)

    let config = initial
    const graceMs = () => Duration.toMillis(config.system.gracefulShutdownTimeout)
    // Agents (and the audit log) close after the listeners drained: their finalizers come first.
    const auditLog = yield* makeAuditLog(initial.observability.logging.auditLog, metrics)
    const agents = yield* makeAgents(initial, {
      metrics,
      audit: auditLog,
      graceMs,
      proxyVersion: VERSION,
      ...(options.agentChallenge ? { challenge: options.agentChallenge } : {})
    })
    // Filters run in each route's `filters` order, agent filters (one stage) at their position.
    const filterChain = makeFilterChain({
      agents: agents.extension,
      onDecision: (ctx, d) => {
        if (d.reason === "rate-limited") metrics.rateLimited.inc(ctx.routeId)
        else if (d.status === 403) metrics.blocked.inc(d.reason)
        // answers are counted as `rejected` by the pipeline; continued-but-altered ones here
        if (d.status === 0) metrics.rejected.inc(d.reason)
      }
    })
    const staticFiles = makeStaticFilesRoute({ responseStages: (ctx) => current.plans.get(ctx.routeId)?.response ?? [] })
    // WebSocket handshakes and tunnels (src/websocket/): every route gets its upgrade policy
    const websockets = makeWebSockets(initial, { metrics, audit: auditLog, frameAgents: agents.websocketFrames })
    const extensions = [filterChain, staticFiles, websockets.extension, ...(options.extensions ?? [])]
    // One in-flight admission and one connection count for all listeners of the process.
    const admission = new Admission(admissionConfigFor(initial.limits))
    const connections = new ConnectionTracker(connectionLimitsFor(initial.limits))
    const runSync = Runtime.runSync(yield* Effect.runtime<never>())
    const log = (effect: Effect.Effect<void>) => {
      try {
        runSync(effect)
      } catch {
        // a log line must never break the request path
      }
    }
    // Host names of targets resolve here, off the request path; the cache's fiber keeps them fresh.
    const hostNames = new Set(initial.upstreams.flatMap((u) => u.targets.map((t) => t.host)).filter((h) => isIP(h) === 0))
    const dns = yield* makeDnsCache([...hostNames], initial.system.dns)
    const upstreamDeps = { dns, observer: upstreamObserver(metrics, log) }
    // Each upstream runs its active health checks in a scope of its own (ended by `close`).
    const launch = (u: SentinelConfig["upstreams"][number], previous?: UpstreamRuntime) =>
      launchUpstream(u, upstreamDeps, scope, previous).pipe(
        Effect.tap((rt) =>
          Effect.sync(() => {
            for (const t of rt.targets) {
              metrics.upstreamHealth.set(t.state.health.eligible() ? 1 : 0, rt.id, t.key)
              metrics.circuitState.set(CircuitStateValue[t.state.circuit.state], `upstream:${rt.id}`, t.key)
            }
          })
        )
      )
    let upstreams = new Map<string, { key: string; runtime: UpstreamRuntime }>()
    for (const u of initial.upstreams) upstreams.set(u.id, { key: upstreamKey(u), runtime: yield* launch(u) })
    const retiring = new Set<UpstreamRuntime>()
    // Pools close after the listeners drained (finalizers run in reverse order of addition).
    yield* Effect.addFinalizer(() =>
      Effect.promise(() =>
        Promise.all([...[...upstreams.values()].map((u) => u.runtime), ...retiring].map((u) => u.close(graceMs())))
      ).pipe(Effect.asVoid)
    )

    // Pool sizes are read when scraped (every scrape path: builtin, metrics listener, cluster),
    // through prom-client's `collect` hook of the gauge, instead of a timer.
    const poolGauge = metrics.connectionPoolSize.metric as { collect?: () => void }
    poolGauge.collect = () => {
      for (const u of current.upstreams.values()) metrics.connectionPoolSize.set(upstreamConnections(u), u.id)
    }
    yield* Effect.addFinalizer(() => Effect.sync(() => void (poolGauge.collect = undefined)))

    const runtimes = () => new Map([...upstreams].map(([id, u]) => [id, u.runtime]))
    let current = compileDataplane(initial, runtimes(), extensions)
    const dataplane = () => current

    const builtinView = (): BuiltinView => ({
      version: VERSION,
      startedAt,
      routes: current.config.routes.map((r) => ({
        id: r.id,
        priority: r.priority,
        kind: r.builtinHandler !== undefined ? "builtin" : "upstream"
      })),
      upstreams: [...current.upstreams.values()].map(describeUpstream),
      metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() })
    })

    const hooks: PipelineHooks = {
      onComplete: (ctx: RequestContext) => {
        const route = ctx.routeId === "" ? "none" : ctx.routeId
        metrics.completed(route, ctx.method, ctx.status, (performance.now() - ctx.start) / 1000)
        metrics.requestsByProtocol.inc(ctx.listenerId, protocolLabel(ctx))
        // a WebSocket handshake that became a tunnel is logged when the tunnel ends (nginx does so)
        if (ctx.websocket !== undefined && ctx.websocket.deferLog(() => accessLog.write(ctx))) return
        accessLog.write(ctx)
      },
      onReject: (_ctx, reason) => {
        metrics.rejected.inc(reason)
      }
    }

    // Sampled requests end their server span as they complete; nothing is added when tracing is off.
    const pipelineHooks: PipelineHooks =
      tracing === undefined
        ? hooks
        : {
            ...hooks,
            onComplete: (ctx) => {
              ctx.trace?.end(ctx)
              hooks.onComplete(ctx)
            }
          }

    // Refusals made by the listeners before the pipeline: counted exactly, logged per
    // AccessLog.ts (access log, or rate-limited warn lines). Its finalizer runs after the
    // listeners drained (added before them) and reports what was still suppressed.
    const rejections = makeRejectionLog({
      accessLog,
      newTraceId: () => current.newTraceId(),
      warn: (message, fields) => log(Effect.logWarning(message).pipe(Effect.annotateLogs(fields)))
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => rejections.close()))

    const runtime = (yield* Effect.runtime<never>()) as Runtime.Runtime<never>
    const addresses = new Map<string, BoundAddress>()
    const listeners = new Map<string, ListenerEntry>()
    // Read at scrape time from the listeners' own in-flight counts: nothing per request.
    metrics.readActiveRequestsFrom(() => {
      let n = 0
      for (const l of listeners.values()) n += l.handle.inFlight()
      return n
    })

    /** A listener's certificates, read now: a failure is the listener's (startup or reload fails, nothing changes). */
    const loadTls = (listener: ListenerConfig): Effect.Effect<ListenerTls | undefined, ListenerBindFailed> =>
      listener.protocol !== "https" || listener.tls === undefined
        ? Effect.succeed(undefined)
        : Either.match(loadListenerTls(listener.id, listener.tls), {
            onLeft: (problems) =>
              Effect.fail(
                new ListenerBindFailed({
                  listener: listener.id,
                  address: `${listener.address.host}:${listener.address.port}`,
                  message: problems.join("; ")
                })
              ),
            onRight: (material) => Effect.succeed(material)
          })

    /** Served certificates by listener, for the expiry gauge (refreshed every minute) and the reload log. */
    const served = new Map<string, ListenerTls>()
    const refreshExpiry = () => {
      const now = Date.now()
      for (const [id, material] of served) {
        for (const c of material.certificates) {
          for (const h of c.hostnames.length > 0 ? c.hostnames : [c.subject]) {
            metrics.tlsCertificateExpiry.set(Math.round((c.notAfter.getTime() - now) / 1000), id, h)
          }
        }
      }
    }
    const expiryTimer = setInterval(refreshExpiry, 60_000)
    expiryTimer.unref()
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(expiryTimer)))

    /** Names (and fingerprints) whose certificate a reload changed, for the log. */
    const certificateChanges = (before: ListenerTls, after: ListenerTls): Array<string> => {
      const fp = (m: ListenerTls) => new Map(m.certificates.flatMap((c) => c.hostnames.map((h) => [h, c.fingerprint256] as const)))
      const a = fp(before)
      const b = fp(after)
      const changed: Array<string> = []
      for (const [h, f] of b) if (a.get(h) !== f) changed.push(`${h} ${f.slice(0, 23)}...`)
      for (const h of a.keys()) if (!b.has(h)) changed.push(`${h} removed`)
      return changed
    }

    const openListener = (listener: ListenerConfig, limits: LimitsConfig) =>
      Effect.gen(function* () {
        const tls = yield* loadTls(listener)
        const child = yield* Scope.fork(scope, { _tag: "Sequential" } as never)
        const handle = yield* startListener(
          listener,
          limits,
          (h) =>
            makeRequestHandler({
              listenerId: listener.id,
              scheme: listener.protocol === "https" ? "https" : "http",
              runtime,
              dataplane,
              builtinView,
              hooks: pipelineHooks,
              draining: h.draining,
              tracing
            }),
          {
            onClientError: (rejection) => {
              metrics.rejected.inc(rejection.reason)
              rejections.record(rejection)
            },
            onConnection: () => metrics.openConnections.set(connections.count),
            onDefence: (reason, clientIp) => {
              if (reason.startsWith("tls_handshake_")) metrics.tlsHandshakeErrors.inc(listener.id, reason.slice("tls_handshake_".length))
              else metrics.http2Defences.inc(listener.id, reason)
              rejections.record({ listener: listener.id, status: 0, reason, clientIp, stage: "connection" })
            },
            admission,
            connections,
            tunnels: websockets.tunnels,
            ...(tls !== undefined ? { tls } : {})
          }
        ).pipe(
          Scope.extend(child),
          Effect.tapError(() => Scope.close(child, Exit.void))
        )
        yield* Scope.addFinalizer(child, Effect.promise(() => handle.drain(graceMs())))
        listeners.set(listener.id, { key: listenerKey(listener, limits), handle, scope: child })
        addresses.set(listener.id, { host: handle.host, port: handle.port })
        if (tls !== undefined) {
          served.set(listener.id, tls)
          refreshExpiry()
        }
        return handle
      })

    const closeListener = (id: string) =>
      Effect.suspend(() => {
        const entry = listeners.get(id)
        if (entry === undefined) return Effect.void
        listeners.delete(id)
        addresses.delete(id)
        return Scope.close(entry.scope, Exit.void)
      })

    for (const listener of initial.listeners) yield* openListener(listener, initial.limits)

    /** Close retired upstream runtimes once their in-flight requests are done (or after the grace period). */
    const retire = (runtime: UpstreamRuntime) => {
      retiring.add(runtime)
      return Effect.forkIn(
        Effect.promise(() => runtime.close(graceMs())).pipe(Effect.ensuring(Effect.sync(() => retiring.delete(runtime)))),
        scope
      )
    }

    /** Opens the logs `next` asks for, first: a log that cannot be opened refuses the reload. */
    const prepareLogs = (next: SentinelConfig): Effect.Effect<LogSwap, LogOpenFailed> =>
      Effect.suspend(() => {
        const logging = next.observability.logging
        const access = accessLog.prepare(logging.accessLog)
        if (Either.isLeft(access)) return Effect.fail(access.left)
        const audit = auditLog.prepare(logging.auditLog)
        if (Either.isLeft(audit)) {
          access.right.abort()
          return Effect.fail(audit.left)
        }
        return Effect.succeed(combineLogSwaps([access.right, audit.right]))
      })

    const swap = (next: SentinelConfig): Effect.Effect<ReloadSummary, ListenerBindFailed> =>
      Effect.gen(function* () {
        let kept = 0
        let started = 0
        const nextUpstreams = new Map<string, { key: string; runtime: UpstreamRuntime }>()
        for (const u of next.upstreams) {
          const key = upstreamKey(u)
          const old = upstreams.get(u.id)
          if (old !== undefined && old.key === key) {
            nextUpstreams.set(u.id, old)
            kept++
          } else {
            // a changed upstream keeps the pools and breaker/health state of unchanged targets
            nextUpstreams.set(u.id, { key, runtime: yield* launch(u, old?.runtime) })
            started++
          }
        }
        const retired = [...upstreams.values()].filter((u) => nextUpstreams.get(u.runtime.id) !== u)

        // Listeners kept as they are re-read their certificate files (same paths, new contents):
        // all of them first, so that one that fails changes nothing
        const wantedKeys = new Map(next.listeners.map((l) => [l.id, listenerKey(l, next.limits)]))
        const renewed: Array<readonly [ListenerConfig, ListenerTls]> = []
        for (const l of next.listeners) {
          if (l.protocol === "https" && listeners.get(l.id)?.key === wantedKeys.get(l.id)) {
            const material = yield* loadTls(l)
            if (material !== undefined) renewed.push([l, material])
          }
        }

        // Listeners: stop removed/changed ones first (a rebind may reuse the address), then start new ones.
        let stopped = 0
        let opened = 0
        for (const [id, entry] of [...listeners]) {
          if (wantedKeys.get(id) !== entry.key) {
            yield* closeListener(id)
            stopped++
          }
        }
        const previous = current
        const previousUpstreams = upstreams
        upstreams = nextUpstreams
        // a changed agents block gets a new manager; routes compiled below capture it
        yield* agents.reload(next)
        current = compileDataplane(next, runtimes(), extensions, current)
        admission.configure(admissionConfigFor(next.limits))
        websockets.configure(next.limits)
        connections.configure(connectionLimitsFor(next.limits))
        const previousConfig = config
        config = next
        for (const l of next.listeners) {
          if (!listeners.has(l.id)) {
            yield* openListener(l, next.limits).pipe(
              Effect.tapError(() =>
                Effect.sync(() => {
                  // Roll back the swap: the old configuration keeps serving.
                  current = previous
                  upstreams = previousUpstreams
                  config = previousConfig
                  for (const u of nextUpstreams.values()) {
                    if (![...previousUpstreams.values()].includes(u)) void u.runtime.close(0)
                  }
                })
              )
            )
            opened++
          }
        }
        // new handshakes get the new certificates; open connections keep theirs
        for (const [l, material] of renewed) {
          const changes = certificateChanges(served.get(l.id)!, material)
          listeners.get(l.id)!.handle.setTls(material)
          served.set(l.id, material)
          if (changes.length > 0) {
            yield* Effect.logInfo("listener certificates changed").pipe(Effect.annotateLogs({ listener: l.id, changed: changes.join(", ") }))
          }
        }
        for (const id of [...served.keys()]) if (!listeners.has(id)) served.delete(id)
        refreshExpiry()
        // series of targets and agents this configuration no longer has stop being exported
        metrics.retain(next)
        for (const u of retired) yield* retire(u.runtime)
        return {
          upstreamsKept: kept,
          upstreamsStarted: started,
          upstreamsRetired: retired.length,
          listenersStarted: opened,
          listenersStopped: stopped
        }
      })

    /** Logs switch after the rest succeeded (requests in flight log to either sink, each line once). */
    const reload = (next: SentinelConfig): Effect.Effect<ReloadSummary, ListenerBindFailed | LogOpenFailed> =>
      Effect.gen(function* () {
        const logs = yield* prepareLogs(next)
        return yield* swap(next).pipe(
          Effect.onExit((exit) => Effect.sync(() => (Exit.isSuccess(exit) ? logs.commit() : logs.abort())))
        )
      })

    yield* Effect.logInfo("sentinel started").pipe(
      Effect.annotateLogs({
        version: VERSION,
        listeners: [...listeners.values()].map((l) => `${l.handle.id}=${l.handle.host}:${l.handle.port}`).join(" ")
      })
    )
    return {
      addresses,
      dataplane,
      metrics,
      reload,
      agentStatus: agents.status,
      reopenLogs: () => Effect.promise(() => Promise.all([accessLog.reopen(), auditLog.reopen()])).pipe(Effect.asVoid)
    }
  })

export const layer = (config: SentinelConfig, options?: SentinelOptions): Layer.Layer<Sentinel, ListenerBindFailed> =>
  Layer.scoped(Sentinel, make(config, options))
