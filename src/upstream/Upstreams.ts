/**
 * Runtime state of one configured upstream: a pool, a `TargetState` (load,
 * latency, passive health, circuit breaker) per target, the balancer, active
 * health checks and the retry budget.
 *
 * Selection (`select`) is a plain function on the request path: the balancer
 * yields a bounded candidate sequence and the first target that is enabled,
 * healthy and admitted by its circuit wins (`TargetState.eligible()`, which may
 * take a half-open probe slot: the caller must then `begin`/`end` or `cancel`).
 *
 * Reload: `makeUpstreamRuntime(config, deps, previous)` builds a new balancer
 * over the new target list but keeps the `TargetState` (breaker and health) and
 * the pool of every target whose settings did not change. Pools are reference
 * counted, so closing the retired runtime closes only what the new one did not
 * take over. `launchUpstream` also starts the active health checks in a scope
 * of their own that `close` ends (the upstream went away).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { UpstreamConfig } from "../config/Schema.js"
import { makeBalancer, pick, type Balancer, type BalancerContext, type Picked } from "./Balancer.js"
import { type CircuitState, CircuitBreaker } from "./Circuit.js"
import type { DnsCache } from "./Dns.js"
import {
  runActiveHealthChecks,
  TargetHealth,
  type HealthChange,
  type ProbeTarget,
  type UpstreamHealth
} from "./Health.js"
import { closeTargetPool, makeTargetPool, poolConnections, tlsConnectOptions, type TargetPool } from "./Pool.js"
import type { TargetRef } from "./Forward.js"
import { RetryBudget } from "./Retry.js"
import { TargetState } from "./Target.js"

/** Where upstream events go (metrics and logs, wired in App.ts). Every member must not throw. */
export interface UpstreamObserver {
  readonly healthChanged: (change: HealthChange) => void
  readonly circuitChanged: (upstream: string, target: string, from: CircuitState, to: CircuitState) => void
  /** One attempt (first try or retry) is sent to a target. */
  readonly attempt: (upstream: string, route: string) => void
  /** An attempt settled (answered, failed or aborted) `ms` after it was sent to `target`. */
  readonly settled: (upstream: string, target: string, ms: number) => void
  /** An attempt failed; `reason` as in the error table (`connect_refused`, `status_503`, ...). */
  readonly failure: (upstream: string, route: string, reason: string) => void
  /** A retry is made; `reason` is the retry decision's (`nothing-sent`, `idempotent`, `opted-in`). */
  readonly retry: (upstream: string, route: string, reason: string) => void
}

export const silentObserver: UpstreamObserver = {
  healthChanged: () => {},
  circuitChanged: () => {},
  attempt: () => {},
  settled: () => {},
  failure: () => {},
  retry: () => {}
}

export interface UpstreamDeps {
  readonly observer?: UpstreamObserver
  /** Resolver cache for host-name targets (App builds one per process). */
  readonly dns?: DnsCache
  /** Clock for breakers and health (ms); default `performance.now`. */
  readonly now?: () => number
}

export interface UpstreamTarget {
  readonly index: number
  /** "host:port" as configured; also the balancer's stable id. */
  readonly key: string
  readonly pool: TargetPool
  readonly state: TargetState
  /** `{ upstream, target }` for errors and spans, made once. */
  readonly ref: TargetRef
}

export interface UpstreamRuntime {
  readonly id: string
  readonly config: UpstreamConfig
  readonly targets: ReadonlyArray<UpstreamTarget>
  /** `targets[i].state`, in order (what the balancer reads). */
  readonly states: ReadonlyArray<TargetState>
  readonly balancer: Balancer
  readonly health: UpstreamHealth
  readonly budget: RetryBudget
  readonly observer: UpstreamObserver
  /** Response head deadline (`timeouts { read }`), from dispatch. */
  readonly headersTimeoutMs: number
  /** Longest silence between response body chunks (`timeouts { read }`). */
  readonly bodyIdleTimeoutMs: number
  /** Total deadline of one attempt, dispatch to end of response body (`timeouts { request }`), 0 = none. */
  readonly requestTimeoutMs: number
  /** Longest stall of a streamed request body on the upstream socket (`timeouts { write }`), 0 = none. */
  readonly writeTimeoutMs: number
  /** `Retry-After` of the 503 when no target is eligible: when the earliest recovery may happen. */
  readonly retryAfterSecs: number
  /**
   * The first eligible candidate not in `tried` (falls back to a tried one when every
   * untried candidate is ineligible), or undefined: no target can take the request.
   */
  readonly select: (ctx: BalancerContext, tried: ReadonlyArray<number>) => Picked | undefined
  /** Lets go of this runtime's pools (a pool taken over by a newer runtime stays open) and stops its health checks. */
  readonly close: (graceMs: number) => Promise<void>
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

/** Settings a pool is built from; a pool is reused across a reload only if these are equal. */
const poolKey = (c: UpstreamConfig) => [c.connectionPool, c.timeouts.connect, c.tls, c.httpVersion]
/** Settings a target's health and breaker are built from. */
const stateKey = (c: UpstreamConfig) => [c.circuitBreaker, c.passiveHealth, c.healthCheck?.healthyThreshold, c.healthCheck?.unhealthyThreshold]

export const makeUpstreamRuntime = (
  config: UpstreamConfig,
  deps: UpstreamDeps = {},
  previous?: UpstreamRuntime
): UpstreamRuntime => {
  const observer = deps.observer ?? silentObserver
  const now = deps.now ?? (() => performance.now())
  const samePools = previous !== undefined && same(poolKey(previous.config), poolKey(config))
  const sameStates = previous !== undefined && same(stateKey(previous.config), stateKey(config))
  const tlsOptions = tlsConnectOptions(config)
  const active = config.healthCheck ?? { healthyThreshold: 2, unhealthyThreshold: 3 }

  const targets: Array<UpstreamTarget> = config.targets.map((t, index) => {
    const key = t.address
    const old = previous?.targets.find((p) => p.key === key)
    let pool: TargetPool
    if (samePools && old !== undefined && old.pool.refs > 0) {
      pool = old.pool
      pool.refs++
    } else {
      pool = makeTargetPool(config, t, deps.dns, tlsOptions)
    }
    let state: TargetState
    if (sameStates && old !== undefined && old.state.weight === t.weight) {
      // the balancer needs targets[i].index === i: keep the object only if its index holds
      state =
        old.state.index === index
          ? old.state
          : new TargetState(index, key, t.weight, old.state.health, old.state.circuit, { now })
    } else {
      const circuit = new CircuitBreaker(
        config.circuitBreaker,
        (from, to) => observer.circuitChanged(config.id, key, from, to),
        now
      )
      const health = new TargetHealth(
        config.id,
        key,
        index,
        active,
        config.passiveHealth,
        (change) => observer.healthChanged(change),
        now,
        (startedAt) => {
          // The target passed an active check that began after its breaker opened: let traffic
          // in again at once instead of waiting out the open timeout (Envoy un-ejects a host
          // that passes an active health check; the healthy-threshold already was the gentle part).
          if (circuit.state !== "closed" && circuit.snapshot.openedAt <= startedAt) circuit.reset()
        }
      )
      state = new TargetState(index, key, t.weight, health, circuit, { now })
    }
    return { index, key, pool, state, ref: { upstream: config.id, target: key } }
  })
  const states = targets.map((t) => t.state)
  const balancer = makeBalancer(
    {
      algorithm: config.loadBalancing,
      hashKey: config.hashKey,
      virtualNodes: config.virtualNodes,
      maglevTableSize: config.maglevTableSize,
      sticky: config.sticky
    },
    targets.map((t) => ({ id: t.key, weight: t.state.weight }))
  )
  const health = { upstream: config.id, targets: states.map((s) => s.health) } as UpstreamHealth
  const budget = previous !== undefined && same(previous.config.retryBudget, config.retryBudget)
    ? previous.budget
    : new RetryBudget(config.retryBudget, now)

  const select: UpstreamRuntime["select"] = (ctx, tried) => pick(balancer, ctx, states, states.length, tried)

  const recoveryMs = Math.min(
    config.circuitBreaker.openTimeoutMs,
    config.passiveHealth.cooldownMs > 0 ? config.passiveHealth.cooldownMs : Infinity,
    config.healthCheck?.intervalMs ?? Infinity
  )
  const read = Duration.toMillis(config.timeouts.read)
  let closed = false
  return {
    id: config.id,
    config,
    targets,
    states,
    balancer,
    health,
    budget,
    observer,
    headersTimeoutMs: read,
    bodyIdleTimeoutMs: read,
    requestTimeoutMs: Duration.toMillis(config.timeouts.request),
    writeTimeoutMs: Duration.toMillis(config.timeouts.write),
    retryAfterSecs: Math.min(60, Math.max(1, Math.ceil(recoveryMs / 1000))),
    select,
    close: async (graceMs) => {
      if (closed) return
      closed = true
      await Promise.all(targets.map((t) => closeTargetPool(t.pool, graceMs)))
    }
  }
}

/**
 * Builds the runtime (see `makeUpstreamRuntime`) and starts its active health checks in a
 * scope forked from `parent`; the runtime's `close` ends that scope, and so does closing
 * `parent` (the proxy shutting down).
 */
export const launchUpstream = (
  config: UpstreamConfig,
  deps: UpstreamDeps,
  parent: Scope.Scope,
  previous?: UpstreamRuntime
): Effect.Effect<UpstreamRuntime> =>
  Effect.gen(function* () {
    const rt = makeUpstreamRuntime(config, deps, previous)
    const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
    yield* runHealthChecks(rt).pipe(Scope.extend(scope))
    const close = rt.close
    return {
      ...rt,
      close: async (graceMs: number) => {
        await Effect.runPromise(Scope.close(scope, Exit.void))
        await close(graceMs)
      }
    }
  })

/**
 * Starts the upstream's active health checks (if it has a `health-check` block) as a fiber
 * in the current scope: close the scope when the upstream goes away.
 */
export const runHealthChecks = (rt: UpstreamRuntime): Effect.Effect<void, never, Scope.Scope> => {
  const hc = rt.config.healthCheck
  if (hc === undefined) return Effect.void
  const https = rt.config.tls !== undefined
  const probes: Array<ProbeTarget> = rt.targets.map((t) => ({
    id: t.key,
    host: t.pool.target.host,
    port: t.pool.target.port,
    https
  }))
  const tls = rt.config.tls
  return runActiveHealthChecks(
    rt.health,
    probes,
    hc,
    tls === undefined
      ? {}
      : {
          ...(tls.sni !== undefined ? { servername: tls.sni } : {}),
          rejectUnauthorized: !tls.insecureSkipVerify,
          ...(tls.caCert !== undefined ? { ca: tlsConnectOptions(rt.config).ca as Buffer } : {})
        }
  )
}

/** Pool connections of this upstream, all targets (for `sentinel_connection_pool_size`). */
export const upstreamConnections = (rt: UpstreamRuntime): number =>
  rt.targets.reduce((n, t) => n + poolConnections(t.pool), 0)

/** What the `upstreams` builtin handler shows of one upstream. */
export const describeUpstream = (rt: UpstreamRuntime) => ({
  id: rt.id,
  algorithm: rt.balancer.algorithm,
  targets: rt.targets.map((t) => {
    const h = t.state.health.snapshot
    const c = t.state.circuit.snapshot
    return {
      address: t.key,
      weight: t.state.weight,
      active: t.state.activeRequests,
      healthy: h.healthy,
      enabled: h.enabled,
      eligible: h.enabled && h.healthy && t.state.circuit.wouldAdmit(),
      circuit: c.state,
      consecutive_failures: c.failures,
      passive: h.passive,
      ewma_latency_ms: Math.round(t.state.ewmaLatencyMs * 100) / 100,
      connections: poolConnections(t.pool)
    }
  })
})
