/**
 * Admission at the edge (DESIGN.md §3 "admit (bounded)"): how many requests the process works
 * on at once, how many may wait for a slot, and how many connections one client (and everyone)
 * may hold. Everything is bounded: the queue has a size and every wait a deadline, so an
 * overloaded proxy answers 503 quickly instead of piling up work it will never finish.
 *
 * Plain classes with counters (hot path, DESIGN.md §2): admitting a request is an increment
 * and a compare; only a queued request allocates (one entry and one timer).
 */

export interface AdmissionConfig {
  /** KDL `limits { max-in-flight-requests }`: requests processed at once. Default 10000. */
  readonly maxInFlight: number
  /** KDL `limits { in-flight-queue-size }`: requests waiting for a slot; beyond it 503. 0 = no queue. Default 1000. */
  readonly queueSize: number
  /** KDL `limits { in-flight-queue-timeout-secs }` (ms here): longest wait in the queue, then 503. Default 5000. */
  readonly queueTimeoutMs: number
}

export const defaultAdmissionConfig: AdmissionConfig = { maxInFlight: 10_000, queueSize: 1000, queueTimeoutMs: 5000 }

/** Why a request was not admitted (metrics `rejected{reason}`, access log `error`). */
export type AdmissionRefusal = "in_flight_queue_full" | "in_flight_queue_timeout"

interface Waiter {
  readonly run: () => void
  readonly refuse: (why: AdmissionRefusal) => void
  timer: NodeJS.Timeout | undefined
  done: boolean
}

/** A ticket: call `release` exactly once when the request is finished (extra calls are ignored). */
export interface Ticket {
  readonly release: () => void
  /** Withdraw a queued request (client went away); a no-op once admitted. */
  readonly cancel: () => void
}

/** In-flight requests with a bounded FIFO queue in front. */
export class Admission {
  private active = 0
  private readonly queue: Array<Waiter> = []
  private head = 0
  /** Live waiters (withdrawn or timed-out entries may still sit in `queue` until pumped). */
  private waiting = 0
  private config: AdmissionConfig

  constructor(config: AdmissionConfig = defaultAdmissionConfig) {
    this.config = config
  }

  /** Requests running now. */
  get inFlight(): number {
    return this.active
  }

  /** Requests waiting now. */
  get queued(): number {
    return this.waiting
  }

  /** Applies new limits (reload); queued requests are admitted if the new limit allows. */
  configure(config: AdmissionConfig): void {
    this.config = config
    this.pump()
  }

  /**
   * The fast path of `admit`: takes a slot when one is free and nobody waits (true), with
   * nothing allocated; the caller must `leave()` exactly once when the request is finished.
   * False: go through `admit` (queue or refusal).
   */
  tryEnter(): boolean {
    if (this.active < this.config.maxInFlight && this.waiting === 0) {
      this.active++
      return true
    }
    return false
  }

  /** Gives back a slot taken by `tryEnter`. */
  leave(): void {
    this.active--
    this.pump()
  }

  /**
   * Admits `run` now, queues it, or refuses it. `run` and `refuse` are called at most once
   * each, and never both; `refuse` may be called synchronously (queue full).
   */
  admit(run: () => void, refuse: (why: AdmissionRefusal) => void): Ticket {
    if (this.tryEnter()) {
      run()
      return this.ticketFor(undefined)
    }
    if (this.waiting >= this.config.queueSize) {
      refuse("in_flight_queue_full")
      return NOOP_TICKET
    }
    const waiter: Waiter = { run, refuse, timer: undefined, done: false }
    if (this.config.queueTimeoutMs > 0) {
      waiter.timer = setTimeout(() => {
        if (waiter.done) return
        waiter.done = true
        this.waiting--
        refuse("in_flight_queue_timeout")
      }, this.config.queueTimeoutMs)
    }
    this.queue.push(waiter)
    this.waiting++
    return this.ticketFor(waiter)
  }

  private ticketFor(waiter: Waiter | undefined): Ticket {
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        // a waiter that never got a slot holds nothing
        if (waiter !== undefined && !waiterAdmitted.has(waiter)) {
          this.withdraw(waiter)
          return
        }
        this.leave()
      },
      cancel: () => {
        if (waiter !== undefined && !waiterAdmitted.has(waiter)) this.withdraw(waiter)
      }
    }
  }

  private withdraw(waiter: Waiter): void {
    if (waiter.done) return
    waiter.done = true
    this.waiting--
    if (waiter.timer !== undefined) clearTimeout(waiter.timer)
  }

  private pump(): void {
    while (this.active < this.config.maxInFlight && this.head < this.queue.length) {
      const w = this.queue[this.head]
      this.queue[this.head++] = undefined as unknown as Waiter
      if (w.done) continue
      w.done = true
      this.waiting--
      if (w.timer !== undefined) clearTimeout(w.timer)
      waiterAdmitted.add(w)
      this.active++
      w.run()
    }
    // compact once the consumed prefix dominates (amortised O(1) per request)
    if (this.head > 64 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head)
      this.head = 0
    } else if (this.head === this.queue.length && this.head > 0) {
      this.queue.length = 0
      this.head = 0
    }
  }
}

const waiterAdmitted = new WeakSet<Waiter>()
const NOOP_TICKET: Ticket = { release: () => undefined, cancel: () => undefined }

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

export interface ConnectionLimits {
  /** KDL `limits { max-total-connections }`: downstream connections open at once, all listeners. Default 10000. */
  readonly maxTotal: number
  /** KDL `limits { max-connections-per-client }`: connections one client IP may hold. Default 100. */
  readonly maxPerClient: number
}

export type ConnectionRefusal = "too_many_connections" | "too_many_connections_per_client"

/**
 * Counts open connections in total and per client IP. The map only holds IPs with at least one
 * open connection, so it is bounded by the total limit.
 */
export class ConnectionTracker {
  private total = 0
  private readonly perClient = new Map<string, number>()
  private limits: ConnectionLimits

  constructor(limits: ConnectionLimits) {
    this.limits = limits
  }

  configure(limits: ConnectionLimits): void {
    this.limits = limits
  }

  /** Connections open now. */
  get count(): number {
    return this.total
  }

  /** Open connections of `ip` now. */
  of(ip: string): number {
    return this.perClient.get(ip) ?? 0
  }

  /** Counts a new connection, or says why it must be refused (then nothing is counted). */
  tryOpen(ip: string): ConnectionRefusal | undefined {
    if (this.total >= this.limits.maxTotal) return "too_many_connections"
    const n = this.perClient.get(ip) ?? 0
    if (n >= this.limits.maxPerClient) return "too_many_connections_per_client"
    this.perClient.set(ip, n + 1)
    this.total++
    return undefined
  }

  /** The connection counted by `tryOpen(ip)` closed. */
  close(ip: string): void {
    const n = this.perClient.get(ip)
    if (n === undefined) return
    if (n <= 1) this.perClient.delete(ip)
    else this.perClient.set(ip, n - 1)
    this.total--
  }
}
