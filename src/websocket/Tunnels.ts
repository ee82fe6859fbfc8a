/**
 * The process's WebSocket tunnels: how many there are in total and per client IP (handshakes
 * past `limits { max-websocket-tunnels }` / `max-websocket-tunnels-per-client` get 503; each
 * tunnel also holds its client connection, which counts against the connection limits), one
 * sweep a second for idle timeouts, maximum lifetimes and the byte/frame metrics, and the
 * drain of a listener's tunnels (1001 after the grace period).
 *
 * A slot is reserved when a handshake is accepted by its route (before the upstream is
 * asked), and kept by the tunnel or given back when the handshake ends without one.
 */
import type { Tunnel } from "./Tunnel.js"

export interface TunnelCounts {
  /** Tunnels (and handshakes under way) at once in the process. */
  readonly maxTotal: number
  /** Tunnels (and handshakes under way) at once per client IP. */
  readonly maxPerClient: number
}

export interface TunnelEntry {
  readonly tunnel: Tunnel
  readonly listener: string
  /** Called by the sweep (metrics of bytes and frames so far). */
  readonly onTick?: () => void
}

const SWEEP_MS = 1000

export class TunnelRegistry {
  private total = 0
  private readonly perClient = new Map<string, number>()
  private readonly open = new Set<TunnelEntry>()
  private readonly draining = new Set<string>()
  private timer: NodeJS.Timeout | undefined = undefined
  private readonly waiters = new Set<() => void>()

  constructor(private counts: TunnelCounts) {}

  configure(counts: TunnelCounts): void {
    this.counts = counts
  }

  /** A slot for a handshake from `clientIp`, or the reason there is none. */
  reserve(clientIp: string): string | undefined {
    if (this.total >= this.counts.maxTotal) return "websocket_tunnels_full"
    const n = this.perClient.get(clientIp) ?? 0
    if (n >= this.counts.maxPerClient) return "websocket_tunnels_per_client"
    this.total++
    this.perClient.set(clientIp, n + 1)
    return undefined
  }

  release(clientIp: string): void {
    if (this.total > 0) this.total--
    const n = this.perClient.get(clientIp) ?? 0
    if (n <= 1) this.perClient.delete(clientIp)
    else this.perClient.set(clientIp, n - 1)
  }

  /** Slots held now (tunnels and handshakes under way). */
  get reserved(): number {
    return this.total
  }

  add(entry: TunnelEntry): void {
    this.open.add(entry)
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), SWEEP_MS)
      this.timer.unref()
    }
  }

  remove(entry: TunnelEntry): void {
    this.open.delete(entry)
    if (this.open.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer)
      this.timer = undefined
    }
    for (const w of [...this.waiters]) w()
  }

  /** Open tunnels (of one listener, or all). */
  count(listener?: string): number {
    if (listener === undefined) return this.open.size
    let n = 0
    for (const e of this.open) if (e.listener === listener) n++
    return n
  }

  isDraining(listener: string): boolean {
    return this.draining.has(listener)
  }

  private sweep(): void {
    const now = Date.now()
    for (const e of [...this.open]) {
      e.onTick?.()
      e.tunnel.tick(now)
    }
  }

  /**
   * A listener drains: its new handshakes are refused (503), its tunnels get until `graceMs`
   * to end on their own, then a 1001 close both ways; resolves when they are gone (or
   * shortly after, however they behave).
   */
  async drain(listener: string, graceMs: number): Promise<void> {
    this.draining.add(listener)
    try {
      await this.until(() => this.count(listener) === 0, graceMs)
      for (const e of [...this.open]) if (e.listener === listener) e.tunnel.goAway()
      // the close handshake, bounded by the tunnels' own grace (then they are destroyed)
      await this.until(() => this.count(listener) === 0, 2000)
    } finally {
      this.draining.delete(listener)
    }
  }

  private until(done: () => boolean, ms: number): Promise<void> {
    if (done() || ms <= 0) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(finish, ms)
      function finish(): void {
        clearTimeout(timer)
        waiters.delete(check)
        resolve()
      }
      const waiters = this.waiters
      const check = () => {
        if (done()) finish()
      }
      waiters.add(check)
    })
  }

  /** Closes every tunnel at once (the proxy is stopping without a drain). */
  closeAll(): void {
    for (const e of [...this.open]) e.tunnel.goAway()
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }
}
