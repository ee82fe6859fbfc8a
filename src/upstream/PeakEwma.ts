/** Latency tracking for the peak_ewma balancer (`TargetView.ewmaLatencyMs`). */

/**
 * Peak-EWMA latency (Finagle/linkerd): jumps up to a slower sample at once, decays towards
 * faster ones with time constant `decayMs`. Feed it each response's latency.
 */
export class PeakEwma {
  private value = 0
  private at = 0
  constructor(
    private readonly decayMs = 10_000,
    private readonly now: () => number = () => performance.now()
  ) {}

  observe(latencyMs: number): void {
    const t = this.now()
    if (latencyMs > this.value || this.value === 0) {
      this.value = latencyMs
    } else {
      const w = Math.exp(-Math.max(0, t - this.at) / this.decayMs)
      this.value = this.value * w + latencyMs * (1 - w)
    }
    this.at = t
  }

  get latencyMs(): number {
    return this.value
  }
}
