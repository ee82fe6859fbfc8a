/**
 * Circuit breaker: Closed -> Open -> HalfOpen -> Closed, as a pure transition function
 * (`step`) plus a small mutable wrapper (`CircuitBreaker`) for the hot path.
 *
 * Semantics follow Sentinel (`crates/common/src/circuit_breaker.rs`): consecutive failures
 * open it; after the open timeout it becomes half-open and admits a bounded number of probes;
 * `successThreshold` consecutive successes close it; any failure in half-open reopens it.
 *
 * Two ways Sentinel's breaker got stuck that this one cannot:
 * - Open -> HalfOpen is decided from the clock whenever the state is read (`state`,
 *   `tryAcquire`), so a target the balancer skipped is still re-checked (#261/#282).
 * - A half-open probe whose outcome never comes back (client went away, bug) does not hold
 *   its slot forever: `release()` gives it back, and a slot older than `probeTimeoutMs` is
 *   reclaimed.
 */

export type CircuitState = "closed" | "open" | "half-open"

/** KDL: `circuit-breaker { failure-threshold; success-threshold; timeout-seconds; half-open-max-requests }` */
export interface CircuitConfig {
  /** `failure-threshold`: consecutive failures that open the circuit. Default 5. */
  readonly failureThreshold: number
  /** `success-threshold`: consecutive half-open successes that close it. Default 2. */
  readonly successThreshold: number
  /** `timeout-seconds` (in ms here): how long it stays open before probing. Default 30000. */
  readonly openTimeoutMs: number
  /** `half-open-max-requests`: probes admitted at once while half-open. Default 1. */
  readonly halfOpenMaxRequests: number
  /**
   * Not in Sentinel's KDL: a half-open probe slot not settled (success/failure/release)
   * within this time is reclaimed, so a lost probe cannot wedge the breaker. Default
   * `openTimeoutMs`.
   */
  readonly probeTimeoutMs?: number
}

export const defaultCircuitConfig: CircuitConfig = {
  failureThreshold: 5,
  successThreshold: 2,
  openTimeoutMs: 30_000,
  halfOpenMaxRequests: 1
}

/** The whole breaker state, immutable. */
export interface CircuitSnapshot {
  readonly state: CircuitState
  /** Consecutive failures while closed. */
  readonly failures: number
  /** Consecutive successes while half-open. */
  readonly successes: number
  /** When it last opened (ms); meaningful while open. */
  readonly openedAt: number
  /** Half-open probes admitted and not yet settled. */
  readonly probes: number
  /** When the last probe was admitted (ms); used to reclaim lost probes. */
  readonly lastProbeAt: number
}

export type CircuitEvent = "acquire" | "success" | "failure" | "release"

export interface StepResult {
  readonly next: CircuitSnapshot
  /** For "acquire": whether the request may go. Always true for other events. */
  readonly admitted: boolean
}

export const initialSnapshot: CircuitSnapshot = {
  state: "closed",
  failures: 0,
  successes: 0,
  openedAt: 0,
  probes: 0,
  lastProbeAt: 0
}

const open = (now: number): CircuitSnapshot => ({
  state: "open",
  failures: 0,
  successes: 0,
  openedAt: now,
  probes: 0,
  lastProbeAt: 0
})

const halfOpen = (now: number): CircuitSnapshot => ({
  state: "half-open",
  failures: 0,
  successes: 0,
  openedAt: now,
  probes: 0,
  lastProbeAt: 0
})

/** Applies the passage of time only: Open -> HalfOpen after the timeout, lost probes reclaimed. */
export const advance = (config: CircuitConfig, s: CircuitSnapshot, now: number): CircuitSnapshot => {
  if (s.state === "open" && now - s.openedAt >= config.openTimeoutMs) return halfOpen(now)
  if (
    s.state === "half-open" &&
    s.probes > 0 &&
    now - s.lastProbeAt >= (config.probeTimeoutMs ?? config.openTimeoutMs)
  ) {
    return { ...s, probes: 0 }
  }
  return s
}

/** The pure transition function. `now` is milliseconds on any monotonic clock. */
export const step = (config: CircuitConfig, current: CircuitSnapshot, event: CircuitEvent, now: number): StepResult => {
  const s = advance(config, current, now)
  switch (event) {
    case "acquire":
      switch (s.state) {
        case "closed":
          return { next: s, admitted: true }
        case "open":
          return { next: s, admitted: false }
        case "half-open":
          return s.probes < Math.max(1, config.halfOpenMaxRequests)
            ? { next: { ...s, probes: s.probes + 1, lastProbeAt: now }, admitted: true }
            : { next: s, admitted: false }
      }
    case "success":
      switch (s.state) {
        case "closed":
          return { next: s.failures === 0 ? s : { ...s, failures: 0 }, admitted: true }
        case "open":
          // a late result of a request admitted before it opened: ignore
          return { next: s, admitted: true }
        case "half-open": {
          const successes = s.successes + 1
          if (successes >= Math.max(1, config.successThreshold)) return { next: initialSnapshot, admitted: true }
          return { next: { ...s, successes, probes: Math.max(0, s.probes - 1) }, admitted: true }
        }
      }
    case "failure":
      switch (s.state) {
        case "closed": {
          const failures = s.failures + 1
          return failures >= Math.max(1, config.failureThreshold)
            ? { next: open(now), admitted: true }
            : { next: { ...s, failures }, admitted: true }
        }
        case "open":
          // do not extend the open period on late results: it must always recover
          return { next: s, admitted: true }
        case "half-open":
          return { next: open(now), admitted: true }
      }
    case "release":
      return s.state === "half-open" && s.probes > 0
        ? { next: { ...s, probes: s.probes - 1 }, admitted: true }
        : { next: s, admitted: true }
  }
}

/** Invariants of a snapshot; used by the property tests. */
export const isValidSnapshot = (config: CircuitConfig, s: CircuitSnapshot): boolean => {
  switch (s.state) {
    case "closed":
      return s.failures >= 0 && s.failures < Math.max(1, config.failureThreshold) && s.successes === 0 && s.probes === 0
    case "open":
      return s.failures === 0 && s.successes === 0 && s.probes === 0
    case "half-open":
      return (
        s.failures === 0 &&
        s.successes >= 0 &&
        s.successes < Math.max(1, config.successThreshold) &&
        s.probes >= 0 &&
        s.probes <= Math.max(1, config.halfOpenMaxRequests)
      )
  }
}

/**
 * The breaker used on the request path: plain mutable object, no Effect overhead.
 * Call `tryAcquire()` before sending; then exactly one of `onSuccess()`, `onFailure()` or
 * `release()` (outcome unknown / not attributable to the target, e.g. the client left).
 */
export class CircuitBreaker {
  private snap: CircuitSnapshot = initialSnapshot
  readonly config: CircuitConfig

  constructor(
    config: Partial<CircuitConfig> = {},
    private readonly onTransition?: (from: CircuitState, to: CircuitState) => void,
    private readonly now: () => number = () => performance.now()
  ) {
    this.config = { ...defaultCircuitConfig, ...config }
  }

  private apply(event: CircuitEvent): boolean {
    const before = this.snap.state
    const { admitted, next } = step(this.config, this.snap, event, this.now())
    this.snap = next
    this.notify(before, next.state)
    return admitted
  }

  private notify(from: CircuitState, to: CircuitState): void {
    if (from !== to && this.onTransition) {
      // Open -> Closed can happen in one step only through half-open; report both edges
      try {
        this.onTransition(from, to)
      } catch {
        // a faulty observer must not break the breaker
      }
    }
  }

  /** Current state, with the open timeout applied (reading it can move Open -> HalfOpen). */
  get state(): CircuitState {
    const before = this.snap.state
    this.snap = advance(this.config, this.snap, this.now())
    this.notify(before, this.snap.state)
    return this.snap.state
  }

  /** The full snapshot (for admin/metrics). */
  get snapshot(): CircuitSnapshot {
    void this.state
    return this.snap
  }

  /** Whether a request would be admitted now, without taking a probe slot. */
  wouldAdmit(): boolean {
    const s = this.state
    return s === "closed" || (s === "half-open" && this.snap.probes < Math.max(1, this.config.halfOpenMaxRequests))
  }

  /** Admits a request (takes a probe slot when half-open). */
  tryAcquire(): boolean {
    // closed: time changes nothing and `step` admits without a new snapshot (the request path)
    if (this.snap.state === "closed") return true
    return this.apply("acquire")
  }

  onSuccess(): void {
    // closed with no failures counted: `step` keeps the snapshot as it is
    if (this.snap.state === "closed" && this.snap.failures === 0) return
    this.apply("success")
  }

  onFailure(): void {
    this.apply("failure")
  }

  /** Gives back an admitted slot without an outcome (client aborted, request not attributable). */
  release(): void {
    if (this.snap.state === "closed") return
    this.apply("release")
  }

  /** Operator reset (admin endpoint): closed, counters cleared. */
  reset(): void {
    const before = this.snap.state
    this.snap = initialSnapshot
    this.notify(before, "closed")
  }
}
