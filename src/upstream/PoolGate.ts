/**
 * Admission to one target's connections (`connection-pool { max-connections;
 * max-pending-requests; pending-timeout; max-client-share }`), in front of undici's pool,
 * whose own queue is unbounded and has no deadline:
 * - at most `capacity` exchanges run at once (connections x streams per connection);
 * - beyond that, at most `maxPending` wait, first come first served, each for at most
 *   `pendingTimeoutMs` (the waiter owns that timer); a full queue refuses at once. Envoy's
 *   `max_pending_requests`, HAProxy's `maxqueue` and `timeout queue`;
 * - one client address may hold at most `perClient` of the running exchanges; its further
 *   requests wait (bounded as above) while others' requests take the free connections, so
 *   a client that holds its connections (slow readers, a flood) cannot starve the rest.
 *
 * Plain counters and an array on the request path (DESIGN.md §2): the per-client counts are
 * kept only when the share is below the capacity, in a null-prototype table (a `Map` with an
 * add and a delete per request measured costly for the young-generation GC).
 */

/** Why a request could not get a connection: the 503's reason. */
export type GateRefusal = "queue_full" | "queue_timeout" | "client_share"

export interface GateWaiter {
  readonly client: string
  /** A slot was given to this waiter (it must `leave` when its exchange ends). */
  admitted(): void
}

export interface PoolGateConfig {
  readonly capacity: number
  readonly maxPending: number
  /** 0 = wait without a deadline (not recommended). */
  readonly pendingTimeoutMs: number
  /** Running exchanges one client may hold; >= capacity = no per-client bound. */
  readonly perClient: number
}

export class PoolGate {
  running = 0
  private readonly queue: Array<GateWaiter> = []
  private readonly byClient: Record<string, number> | undefined

  constructor(readonly config: PoolGateConfig) {
    this.byClient = config.perClient < config.capacity ? (Object.create(null) as Record<string, number>) : undefined
  }

  get pending(): number {
    return this.queue.length
  }

  /**
   * Takes a slot now if one is free and the client is under its share. Waiters never pass
   * over a free slot they may take (`leave` hands it on at once), so while one is free every
   * waiter is over its share and a newcomer under its own may take it.
   */
  tryEnter(client: string): boolean {
    return this.running < this.config.capacity && this.take(client)
  }

  /** Queues `w` for a slot, or refuses at once: "queue_full". */
  wait(w: GateWaiter): GateRefusal | undefined {
    if (this.queue.length >= this.config.maxPending) return "queue_full"
    this.queue.push(w)
    return undefined
  }

  /** A waiter gave up (its deadline, or the client left). Says why it was still waiting. */
  remove(w: GateWaiter): GateRefusal {
    const i = this.queue.indexOf(w)
    if (i !== -1) this.queue.splice(i, 1)
    return this.running < this.config.capacity ? "client_share" : "queue_timeout"
  }

  /** An admitted exchange ended: its slot goes to the first waiter that may take it. */
  leave(client: string): void {
    this.running--
    const counts = this.byClient
    if (counts !== undefined) {
      const n = counts[client] - 1
      if (n > 0) counts[client] = n
      else delete counts[client]
    }
    this.admitWaiting()
  }

  private take(client: string): boolean {
    const counts = this.byClient
    if (counts !== undefined) {
      const n = counts[client] ?? 0
      if (n >= this.config.perClient) return false
      counts[client] = n + 1
    }
    this.running++
    return true
  }

  private admitWaiting(): void {
    const q = this.queue
    for (let i = 0; i < q.length && this.running < this.config.capacity; ) {
      const w = q[i]
      if (!this.take(w.client)) {
        i++
        continue
      }
      q.splice(i, 1)
      w.admitted()
    }
  }
}
