/**
 * Target health: active checks (one scoped fiber per upstream, on a jittered Schedule) and
 * passive checks (a bounded sliding window of request outcomes per target).
 *
 * "Enabled by the operator" is kept apart from "healthy" (Pingora): an operator-disabled
 * target stays disabled whatever its checks say, and re-enabling it does not forge health.
 * Active health flips only after N consecutive results. A passively ejected target comes
 * back after a cool-down (otherwise it would get no traffic and so never recover), or as soon
 * as it passes an active check that started after the ejection (Envoy's
 * `successful_active_health_check_uneject_host`, on by default there too); the same pass
 * closes the target's circuit breaker (`onActivePass`, wired in `Upstreams.ts`).
 *
 * Reads on the request path (`eligible()`) are plain synchronous calls.
 */
import * as net from "node:net"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { Agent, request } from "./Undici.js"

/** KDL: `health-check { type "http" { path; expected-status; host } | "tcp"; ... }` (missing type = tcp, as Sentinel). */
export type HealthCheckType =
  | {
      readonly kind: "http"
      /** `path`; default "/health". */
      readonly path: string
      /** `expected-status` (one or more); default 200. */
      readonly expectedStatus: ReadonlyArray<number>
      /** `host`: Host header to send; default the target's "host:port". */
      readonly host?: string
    }
  | { readonly kind: "tcp" }

/** KDL: `health-check { ...; interval-secs 10; timeout-secs 5; healthy-threshold 2; unhealthy-threshold 3 }` */
export interface ActiveHealthConfig {
  readonly type: HealthCheckType
  /** `interval-secs` (ms here); default 10000. Each interval is jittered by ±10 %. */
  readonly intervalMs: number
  /** `timeout-secs` (ms here): deadline of one probe; default 5000. */
  readonly timeoutMs: number
  /** `healthy-threshold`: consecutive successes to become healthy; default 2. */
  readonly healthyThreshold: number
  /** `unhealthy-threshold`: consecutive failures to become unhealthy; default 3. */
  readonly unhealthyThreshold: number
}

export const defaultActiveHealthConfig: ActiveHealthConfig = {
  type: { kind: "tcp" },
  intervalMs: 10_000,
  timeoutMs: 5_000,
  healthyThreshold: 2,
  unhealthyThreshold: 3
}

/** Passive checks. Sentinel hard-codes 50 % over a window of 100; exposed here. */
export interface PassiveHealthConfig {
  /** Outcomes remembered per target (bounded ring); default 100. */
  readonly windowSize: number
  /** Failure share above which the target is ejected; default 0.5. */
  readonly failureRatio: number
  /** Outcomes needed in the window before judging; default 10. */
  readonly minRequests: number
  /** How long an ejected target stays out before it gets traffic again; default 10000 ms. */
  readonly cooldownMs: number
}

export const defaultPassiveHealthConfig: PassiveHealthConfig = {
  windowSize: 100,
  failureRatio: 0.5,
  minRequests: 10,
  cooldownMs: 10_000
}

/** What one forwarded request tells about the target. Client aborts (499) are not recorded. */
export type PassiveOutcome = "success" | "connect-failure" | "timeout" | "server-error"

export type HealthSource = "active" | "passive" | "operator"

export interface HealthChange {
  readonly upstream: string
  readonly target: string
  readonly index: number
  /** Whether the target is now eligible for traffic (enabled and healthy). */
  readonly eligible: boolean
  readonly healthy: boolean
  readonly enabled: boolean
  readonly source: HealthSource
  /** Why, e.g. "status 503", "ECONNREFUSED", "failure ratio 0.62". */
  readonly reason: string
}

/** Consecutive-result state of active checks (pure, property-tested). */
export interface ActiveState {
  readonly healthy: boolean
  readonly successes: number
  readonly failures: number
}

export const initialActiveState: ActiveState = { healthy: true, successes: 0, failures: 0 }

export const stepActive = (
  s: ActiveState,
  ok: boolean,
  cfg: Pick<ActiveHealthConfig, "healthyThreshold" | "unhealthyThreshold">
): ActiveState => {
  if (ok) {
    const successes = s.successes + 1
    return { healthy: s.healthy || successes >= Math.max(1, cfg.healthyThreshold), successes, failures: 0 }
  }
  const failures = s.failures + 1
  return { healthy: s.healthy && failures < Math.max(1, cfg.unhealthyThreshold), successes: 0, failures }
}

/** Health of one target. */
export class TargetHealth {
  private active: ActiveState = initialActiveState
  private readonly window: Uint8Array
  private pos = 0
  private count = 0
  private failures = 0
  private ejectedUntil = 0
  /** When the current passive ejection began (`now()`); meaningful while `ejectedUntil !== 0`. */
  private ejectedAt = 0
  private enabledByOperator = true
  private reported: boolean

  constructor(
    readonly upstream: string,
    readonly id: string,
    readonly index: number,
    private readonly activeCfg: Pick<ActiveHealthConfig, "healthyThreshold" | "unhealthyThreshold">,
    private readonly passiveCfg: PassiveHealthConfig,
    private readonly onChange: (change: HealthChange) => void,
    /** The clock (ms) ejections, probes and the target's breaker share. */
    readonly now: () => number,
    /**
     * Called when an active check that started at `startedAt` passed and the target is
     * healthy by active checks: the target's breaker closes if it opened before then.
     */
    private readonly onActivePass?: (startedAt: number) => void
  ) {
    this.window = new Uint8Array(Math.max(1, Math.min(passiveCfg.windowSize, 10_000)))
    this.reported = true
  }

  get enabled(): boolean {
    return this.enabledByOperator
  }

  /** Healthy by active checks and not passively ejected. */
  get healthy(): boolean {
    if (this.ejectedUntil !== 0 && this.now() >= this.ejectedUntil) {
      // cool-down over: give it traffic again with a clean window
      this.ejectedUntil = 0
      this.clearWindow()
      this.report("passive", "ejection cool-down over")
    }
    return this.active.healthy && this.ejectedUntil === 0
  }

  /** Enabled by the operator and healthy: may receive traffic (the circuit breaker is checked separately). */
  eligible(): boolean {
    return this.enabledByOperator && this.healthy
  }

  setEnabled(enabled: boolean): void {
    this.enabledByOperator = enabled
    this.report("operator", enabled ? "enabled" : "disabled")
  }

  /**
   * One active check's result. `startedAt` (default now) is when the probe began: a pass
   * lifts only a passive ejection (and, through `onActivePass`, a breaker opening) that is
   * older than the probe, so a probe answered just before the target died cannot undo what
   * traffic found after.
   */
  recordActive(ok: boolean, reason: string, startedAt: number = this.now()): void {
    this.active = stepActive(this.active, ok, this.activeCfg)
    if (ok && this.active.healthy) {
      if (this.ejectedUntil !== 0 && this.ejectedAt <= startedAt) {
        this.ejectedUntil = 0
        this.clearWindow()
      }
      try {
        this.onActivePass?.(startedAt)
      } catch {
        // an observer must not break health tracking
      }
    }
    this.report("active", reason)
  }

  recordPassive(outcome: PassiveOutcome): void {
    const failed = outcome === "success" ? 0 : 1
    if (this.count === this.window.length) this.failures -= this.window[this.pos]
    else this.count++
    this.window[this.pos] = failed
    this.failures += failed
    this.pos = (this.pos + 1) % this.window.length
    if (
      this.ejectedUntil === 0 &&
      this.count >= Math.min(this.passiveCfg.minRequests, this.window.length) &&
      this.failures / this.count > this.passiveCfg.failureRatio
    ) {
      this.ejectedAt = this.now()
      this.ejectedUntil = this.ejectedAt + Math.max(1, this.passiveCfg.cooldownMs)
      this.report("passive", `failure ratio ${(this.failures / this.count).toFixed(2)} (last: ${outcome})`)
    }
  }

  /** For admin/metrics. */
  get snapshot() {
    return {
      enabled: this.enabledByOperator,
      healthy: this.healthy,
      active: this.active,
      passive: { outcomes: this.count, failures: this.failures, ejected: this.ejectedUntil !== 0 }
    }
  }

  private clearWindow(): void {
    this.window.fill(0)
    this.pos = 0
    this.count = 0
    this.failures = 0
  }

  private report(source: HealthSource, reason: string): void {
    const eligible = this.enabledByOperator && this.active.healthy && this.ejectedUntil === 0
    if (eligible === this.reported) return
    this.reported = eligible
    try {
      this.onChange({
        upstream: this.upstream,
        target: this.id,
        index: this.index,
        eligible,
        healthy: this.active.healthy && this.ejectedUntil === 0,
        enabled: this.enabledByOperator,
        source,
        reason
      })
    } catch {
      // observers (logs, metrics) must not break health tracking
    }
  }
}

/** A target as the active checker reaches it. */
export interface ProbeTarget {
  readonly id: string
  readonly host: string
  readonly port: number
  /** Probe over TLS (the upstream has a `tls` block); default false. */
  readonly https?: boolean
}

/** TLS settings of the upstream (its `tls { sni; insecure-skip-verify; ca-cert }`), for https probes. */
export interface ProbeTls {
  readonly servername?: string
  /** false = `insecure-skip-verify #true`; default true. */
  readonly rejectUnauthorized?: boolean
  readonly ca?: string | Buffer
}

/** The health of all targets of one upstream, in target order. */
export class UpstreamHealth {
  readonly targets: ReadonlyArray<TargetHealth>

  constructor(
    readonly upstream: string,
    targetIds: ReadonlyArray<string>,
    options: {
      readonly active?: Pick<ActiveHealthConfig, "healthyThreshold" | "unhealthyThreshold">
      readonly passive?: Partial<PassiveHealthConfig>
      readonly onChange?: (change: HealthChange) => void
      readonly now?: () => number
    } = {}
  ) {
    const active = options.active ?? defaultActiveHealthConfig
    const passive = { ...defaultPassiveHealthConfig, ...options.passive }
    const onChange = options.onChange ?? (() => {})
    const now = options.now ?? (() => performance.now())
    this.targets = targetIds.map((id, i) => new TargetHealth(upstream, id, i, active, passive, onChange, now))
  }
}

export interface ProbeResult {
  readonly ok: boolean
  readonly reason: string
}

const tcpProbe = (t: ProbeTarget): Effect.Effect<ProbeResult> =>
  Effect.async<ProbeResult>((resume) => {
    const socket = net.connect({ host: t.host, port: t.port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed({ ok: true, reason: "connected" }))
    })
    socket.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed({ ok: false, reason: e.code ?? e.message })))
    return Effect.sync(() => socket.destroy())
  })

const httpProbe = (
  t: ProbeTarget,
  type: Extract<HealthCheckType, { kind: "http" }>,
  dispatcher: Agent
): Effect.Effect<ProbeResult> =>
  Effect.tryPromise({
    try: async (signal) => {
      const host = type.host ?? `${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`
      const origin = `${t.https ? "https" : "http"}://${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`
      const res = await request(origin + type.path, {
        dispatcher,
        method: "GET",
        headers: { host, "user-agent": "sentinel-health-check" },
        signal
      })
      // read (bounded by the timeout) and discard the body so the connection can be reused
      await res.body.dump({ limit: 64 * 1024 })
      return res.statusCode
    },
    catch: (e) => e
  }).pipe(
    Effect.map((status) => ({
      ok: (type.expectedStatus.length === 0 ? [200] : type.expectedStatus).includes(status),
      reason: `status ${status}`
    })),
    Effect.catchAll((e) =>
      Effect.succeed({ ok: false, reason: (e as { code?: string })?.code ?? String((e as Error)?.message ?? e) })
    )
  )

/** One probe of one target, with its deadline. */
export const probe = (t: ProbeTarget, config: ActiveHealthConfig, dispatcher: Agent): Effect.Effect<ProbeResult> =>
  (config.type.kind === "http" ? httpProbe(t, config.type, dispatcher) : tcpProbe(t)).pipe(
    Effect.timeoutTo({
      duration: Duration.millis(config.timeoutMs),
      onSuccess: (r) => r,
      onTimeout: () => ({ ok: false, reason: `timeout after ${config.timeoutMs} ms` })
    })
  )

/**
 * Starts active checks for one upstream: a fiber in the current scope probes every target
 * (at most 8 at once), then again every `intervalMs` ±10 %, recording into `health`. The
 * first round runs at once. Closing the scope interrupts the fiber, aborts in-flight probes
 * and closes the check's own connection pool.
 */
export const runActiveHealthChecks = (
  health: UpstreamHealth,
  targets: ReadonlyArray<ProbeTarget>,
  config: ActiveHealthConfig,
  tls: ProbeTls = {}
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const dispatcher = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new Agent({
            connections: 1,
            keepAliveTimeout: Math.max(1000, config.intervalMs * 2),
            // backstops only: the Effect deadline above is the real one (undici's fire late)
            headersTimeout: config.timeoutMs * 2,
            bodyTimeout: config.timeoutMs * 2,
            connect: {
              timeout: config.timeoutMs,
              ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
              ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
              ...(tls.ca !== undefined ? { ca: tls.ca } : {})
            }
          })
      ),
      (agent) => Effect.promise(() => agent.destroy().catch(() => {}))
    )
    const round = Effect.forEach(
      targets,
      (t, i) =>
        Effect.suspend(() => {
          const target = health.targets[i]
          const startedAt = target?.now() ?? 0
          return probe(t, config, dispatcher).pipe(
            Effect.tap((r) => Effect.sync(() => target?.recordActive(r.ok, r.reason, startedAt)))
          )
        }),
      { concurrency: 8, discard: true }
    )
    const schedule = Schedule.spaced(Duration.millis(Math.max(1, config.intervalMs))).pipe(
      Schedule.jitteredWith({ min: 0.9, max: 1.1 })
    )
    yield* round.pipe(Effect.repeat(schedule), Effect.asVoid, Effect.forkScoped)
  })
