/**
 * The upstream pools of a proxy, as a service: one `UpstreamRuntime` per `upstream { }`
 * block (targets, pools, health checks, breakers), the DNS cache their host names resolve
 * through, and their metrics. A reload is two-step: `stage(next)` launches what changed (an
 * unchanged definition keeps its pools, health and circuit state; a changed one keeps the
 * state of its unchanged targets) without touching what requests use now; `commit` retires
 * the replaced runtimes (closed once their requests are done, or after the grace period),
 * `rollback` closes the new ones. Everything closes with the layer, after the listeners
 * drained.
 */
import { isIP } from "node:net"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { ConfigSource } from "../config/ConfigSource.js"
import type { SentinelConfig } from "../config/Schema.js"
import { CircuitStateValue, type Metrics, MetricsService } from "../observability/Metrics.js"
import { callbackLogger } from "../observability/ProxyLogs.js"
import { makeDnsCache } from "./Dns.js"
import { describeUpstream, launchUpstream, upstreamConnections, type UpstreamObserver, type UpstreamRuntime } from "./Upstreams.js"

/** What a reload prepared: the runtimes the next configuration uses. */
export interface UpstreamStage {
  readonly runtimes: ReadonlyMap<string, UpstreamRuntime>
  readonly kept: number
  readonly started: number
  readonly retired: number
  /** Make the staged set current; the replaced runtimes close after their requests. */
  readonly commit: () => Effect.Effect<void>
  /** Forget the staged set; its new runtimes close now. */
  readonly rollback: () => void
}

export interface UpstreamsService {
  /** The runtimes in force, by upstream id. */
  readonly runtimes: () => ReadonlyMap<string, UpstreamRuntime>
  readonly stage: (next: SentinelConfig) => Effect.Effect<UpstreamStage>
  /** `/status`'s view of each upstream. */
  readonly describe: () => ReadonlyArray<ReturnType<typeof describeUpstream>>
}

/** Identity of an upstream definition: same key = reuse pools and state across a reload. */
const upstreamKey = (u: SentinelConfig["upstreams"][number]): string => JSON.stringify(u)

/** Upstream events to metrics and log lines (every health and circuit change is logged). */
export const upstreamObserver = (metrics: Metrics, log: (effect: Effect.Effect<void>) => void): UpstreamObserver => ({
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

export const make = (initial: SentinelConfig, metrics: Metrics): Effect.Effect<UpstreamsService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    let graceMs = Duration.toMillis(initial.system.gracefulShutdownTimeout)
    const log = callbackLogger(yield* Effect.runtime<never>())
    // Host names of targets resolve here, off the request path; the cache's fiber keeps them fresh.
    const hostNames = new Set(initial.upstreams.flatMap((u) => u.targets.map((t) => t.host)).filter((h) => isIP(h) === 0))
    const dns = yield* makeDnsCache([...hostNames], initial.system.dns)
    const deps = { dns, observer: upstreamObserver(metrics, log) }
    // Each upstream runs its active health checks in a scope of its own (ended by `close`).
    const launch = (u: SentinelConfig["upstreams"][number], previous?: UpstreamRuntime) =>
      launchUpstream(u, deps, scope, previous).pipe(
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
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.all([...[...upstreams.values()].map((u) => u.runtime), ...retiring].map((u) => u.close(graceMs)))).pipe(
        Effect.asVoid
      )
    )
    const runtimesOf = (m: ReadonlyMap<string, { runtime: UpstreamRuntime }>) => new Map([...m].map(([id, u]) => [id, u.runtime]))

    // Pool sizes are read when scraped (every scrape path: builtin, metrics listener, cluster),
    // through prom-client's `collect` hook of the gauge, instead of a timer.
    const poolGauge = metrics.connectionPoolSize.metric as { collect?: () => void }
    poolGauge.collect = () => {
      for (const u of upstreams.values()) metrics.connectionPoolSize.set(upstreamConnections(u.runtime), u.runtime.id)
    }
    yield* Effect.addFinalizer(() => Effect.sync(() => void (poolGauge.collect = undefined)))

    /** Close a retired runtime once its in-flight requests are done (or after the grace period). */
    const retire = (runtime: UpstreamRuntime) => {
      retiring.add(runtime)
      return Effect.forkIn(
        Effect.promise(() => runtime.close(graceMs)).pipe(Effect.ensuring(Effect.sync(() => retiring.delete(runtime)))),
        scope
      )
    }

    const stage = (next: SentinelConfig): Effect.Effect<UpstreamStage> =>
      Effect.gen(function* () {
        let kept = 0
        let started = 0
        const staged = new Map<string, { key: string; runtime: UpstreamRuntime }>()
        for (const u of next.upstreams) {
          const key = upstreamKey(u)
          const old = upstreams.get(u.id)
          if (old !== undefined && old.key === key) {
            staged.set(u.id, old)
            kept++
          } else {
            // a changed upstream keeps the pools and breaker/health state of unchanged targets
            staged.set(u.id, { key, runtime: yield* launch(u, old?.runtime) })
            started++
          }
        }
        const before = [...upstreams.values()]
        const retired = before.filter((u) => staged.get(u.runtime.id) !== u)
        return {
          runtimes: runtimesOf(staged),
          kept,
          started,
          retired: retired.length,
          commit: () =>
            Effect.suspend(() => {
              upstreams = staged
              graceMs = Duration.toMillis(next.system.gracefulShutdownTimeout)
              return Effect.forEach(retired, (u) => retire(u.runtime), { discard: true })
            }),
          rollback: () => {
            for (const u of staged.values()) if (!before.includes(u)) void u.runtime.close(0)
          }
        }
      })

    return {
      runtimes: () => runtimesOf(upstreams),
      stage,
      describe: () => [...upstreams.values()].map((u) => describeUpstream(u.runtime))
    }
  })

export class Upstreams extends Context.Tag("sentinel/upstream/Upstreams")<Upstreams, UpstreamsService>() {
  /** The pools of the source's initial configuration. */
  static readonly layer: Layer.Layer<Upstreams, never, ConfigSource | MetricsService> = Layer.scoped(
    Upstreams,
    Effect.flatMap(Effect.all([ConfigSource, MetricsService]), ([source, metrics]) => make(source.initial.config, metrics))
  )
}
