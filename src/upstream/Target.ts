/**
 * Per-target runtime state that selection reads and forwarding updates: in-flight count,
 * peak-EWMA latency, passive health, circuit breaker. Implements the balancer's
 * `TargetView`, so `pick(balancer, ctx, targets)` works on it directly.
 *
 * Protocol for one attempt (plain calls, no Effect, request path):
 *   const picked = pick(balancer, ctx, targets, n, tried)   // eligible() may take a half-open probe slot
 *   const t = targets[picked.index]; t.begin()
 *   ... the exchange (Forward.ts) ...
 *   t.end(outcome, latencyMs)                      // exactly once
 */
import type { TargetView } from "./Balancer.js"
import { PeakEwma } from "./PeakEwma.js"
import { CircuitBreaker } from "./Circuit.js"
import type { TargetHealth } from "./Health.js"

/**
 * How an attempt on this target ended, as far as the target is concerned.
 * "aborted": the client went away or the proxy gave up for its own reasons (499, budget):
 * not the target's fault, it counts neither way.
 */
export type AttemptResult = "success" | "connect-failure" | "timeout" | "server-error" | "aborted"

/** Sentinel counts a response as success when `0 < status < 500`. */
export const resultOfStatus = (status: number): AttemptResult =>
  status > 0 && status < 500 ? "success" : "server-error"

export class TargetState implements TargetView {
  activeRequests = 0
  private readonly latency: PeakEwma

  constructor(
    readonly index: number,
    readonly id: string,
    readonly weight: number,
    readonly health: TargetHealth,
    readonly circuit: CircuitBreaker,
    options: { readonly ewmaDecayMs?: number; readonly now?: () => number } = {}
  ) {
    this.latency = new PeakEwma(options.ewmaDecayMs ?? 10_000, options.now)
  }

  get ewmaLatencyMs(): number {
    return this.latency.latencyMs
  }

  /**
   * Operator-enabled, healthy, and the breaker admits. Evaluated lazily by `pick` only for
   * candidates in order, so when it returns true the caller MUST use this target and later
   * call `end` (or `cancel`), because a half-open probe slot may have been taken.
   */
  eligible(): boolean {
    return this.health.eligible() && this.circuit.tryAcquire()
  }

  /** The attempt starts (after `eligible()` returned true). */
  begin(): void {
    this.activeRequests++
  }

  /** The attempt ended. Updates load, latency, passive health and the breaker. */
  end(result: AttemptResult, latencyMs?: number): void {
    if (this.activeRequests > 0) this.activeRequests--
    switch (result) {
      case "success":
        if (latencyMs !== undefined) this.latency.observe(latencyMs)
        this.health.recordPassive("success")
        this.circuit.onSuccess()
        return
      case "aborted":
        this.circuit.release()
        return
      default:
        if (result === "timeout" && latencyMs !== undefined) this.latency.observe(latencyMs)
        this.health.recordPassive(result)
        this.circuit.onFailure()
    }
  }

  /** `eligible()` returned true but the attempt never started (e.g. shutting down): give the slot back. */
  cancel(): void {
    this.circuit.release()
  }
}
