/**
 * What both agent transports (the Unix-socket pool, Client.ts; gRPC, GrpcTransport.ts) share
 * about calls and channels: the call errors, picking a channel, the table of pending calls,
 * a call's deadline and cancel, the call as one `Effect.async`, and the interface both
 * implement (`AgentClient`, with its status and connection events).
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import {
  type AgentCapabilities,
  type AgentProtocolError,
  type AgentResponse,
  CancelReason,
  HealthState,
  type MessageType
} from "./Protocol.js"

// ---------------------------------------------------------------------------
// Errors

/** The agent did not answer within the call's deadline. */
export class AgentTimeout extends Data.TaggedError("AgentTimeout")<{
  readonly agent: string
  readonly timeoutMs: number
  readonly correlationId: string
}> {}

/** No usable connection to the agent (not connected yet, lost, paused, pool closed). */
export class AgentUnavailable extends Data.TaggedError("AgentUnavailable")<{
  readonly agent: string
  readonly reason: "not-connected" | "connection-lost" | "flow-paused" | "closed" | "duplicate-correlation-id"
  readonly message: string
}> {}

/** The agent refused the handshake (`success:false` or an unsupported version). */
export class AgentRejected extends Data.TaggedError("AgentRejected")<{
  readonly agent: string
  readonly message: string
}> {}

export type AgentCallError = AgentTimeout | AgentUnavailable | AgentRejected | AgentProtocolError

/** Delay before reconnecting a slot, ms: exponential from `baseMs` up to `maxMs`, with jitter in [delay/2, delay] so a restarted agent is not hit by every slot at once. */
export const reconnectDelayMs = (baseMs: number, maxMs: number, attempt: number): number => {
  const delay = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20))
  return Math.max(1, Math.round(delay / 2 + (Math.random() * delay) / 2))
}

/** What a transport's channel (a socket connection, a gRPC stream) shows for picking one. */
export interface PickableChannel {
  readonly state: string
  readonly paused: boolean
  readonly health: number
  readonly pending: { readonly size: number; has(id: string): boolean }
}

/** No channel could take the call; what the search saw, for the error. */
export class PickMiss {
  constructor(
    readonly sawReady: boolean,
    readonly sawPaused: boolean,
    readonly sawDuplicate: boolean
  ) {}
}

const isHealthy = (c: PickableChannel) => c.health === HealthState.Healthy || c.health === HealthState.Degraded

/**
 * The channel a call goes on, among `channelAt(0..n-1)` from `start` on (round robin): a ready,
 * unpaused one that does not already carry `correlationId`, a healthy (or degraded) one before an
 * unhealthy one, then the least busy.
 *
 * The order is a ranking (healthy first, then fewer pending; the first seen wins a tie), so the
 * best channel of all that does not carry the id is also the best of those that do not: the
 * pending tables (one hash lookup each) are asked only about the winner, and all are searched
 * again only when it carries the id (a duplicate, which is rare).
 */
export const pickChannel = <C extends PickableChannel>(
  n: number,
  channelAt: (i: number) => C | undefined,
  start: number,
  correlationId: string
): C | PickMiss => {
  const best = pickBest(n, channelAt, start, undefined)
  if (best instanceof PickMiss || !best.pending.has(correlationId)) return best
  return pickBest(n, channelAt, start, correlationId)
}

/** The best ready, unpaused channel; with `correlationId`, of those not carrying it. */
const pickBest = <C extends PickableChannel>(
  n: number,
  channelAt: (i: number) => C | undefined,
  start: number,
  correlationId: string | undefined
): C | PickMiss => {
  let best: C | undefined
  let sawReady = false
  let sawPaused = false
  let sawDuplicate = false
  for (let i = 0; i < n; i++) {
    const c = channelAt((start + i) % n)
    if (c === undefined || c.state !== "ready") continue
    sawReady = true
    if (c.paused) {
      sawPaused = true
      continue
    }
    if (correlationId !== undefined && c.pending.has(correlationId)) {
      sawDuplicate = true
      continue
    }
    const healthy = isHealthy(c)
    const bestHealthy = best !== undefined && isHealthy(best)
    if (best === undefined || (healthy && !bestHealthy) || (healthy === bestHealthy && c.pending.size < best.pending.size)) best = c
  }
  return best ?? new PickMiss(sawReady, sawPaused, sawDuplicate)
}

/** The call's error when no channel took it. */
export const pickMissError = (
  miss: PickMiss,
  correlationId: string,
  pool: {
    readonly agent: string
    readonly closed: boolean
    readonly lastRejection: AgentRejected | undefined
    /** "no connection to PATH", "no gRPC stream to ADDRESS", with the last error. */
    readonly notConnected: string
  }
): AgentCallError => {
  if (pool.closed) return new AgentUnavailable({ agent: pool.agent, reason: "closed", message: "agent pool closed" })
  if (miss.sawDuplicate) {
    return new AgentUnavailable({
      agent: pool.agent,
      reason: "duplicate-correlation-id",
      message: `a call with correlation id ${correlationId} is already pending`
    })
  }
  if (miss.sawPaused) return new AgentUnavailable({ agent: pool.agent, reason: "flow-paused", message: "agent paused the flow" })
  if (!miss.sawReady && pool.lastRejection) return pool.lastRejection
  return new AgentUnavailable({ agent: pool.agent, reason: "not-connected", message: pool.notConnected })
}


/** A call in progress; `cancel` sends Cancel (0x40) and drops the call (no `done`). */
export type CancelCall = (reason?: CancelReason) => void

export type Done = (result: Either.Either<AgentResponse, AgentCallError>) => void

/** A call waiting for its answer on a channel (a connection, a gRPC stream) of either transport. */
export interface PendingCall {
  readonly correlationId: string
  readonly channel: { readonly pending: PendingCalls }
  timer: ReturnType<typeof setTimeout> | undefined
  settled: boolean
  readonly done: Done
}

/** The call is over (answered, failed, timed out or cancelled): its timer stops, its channel forgets it. */
export const settleCall = (call: PendingCall): void => {
  call.settled = true
  if (call.timer) clearTimeout(call.timer)
  call.timer = undefined
  if (call.channel.pending.get(call.correlationId) === call) call.channel.pending.delete(call.correlationId)
}

/** Fails every call pending on a channel that closed. */
export const failPending = (pending: PendingCalls, error: AgentCallError): void => {
  const calls = pending.values()
  pending.clear()
  for (const call of calls) {
    settleCall(call)
    call.done(Either.left(error))
  }
}

/**
 * Registers a call on its channel with its deadline (on expiry: `sendCancel(Timeout)`, then
 * `AgentTimeout`), and returns its cancel (settles it, then `sendCancel(reason)`).
 */
export const trackCall = (
  agent: string,
  channel: PendingCall["channel"],
  correlationId: string,
  timeoutMs: number,
  done: Done,
  sendCancel: (reason: CancelReason) => void
): CancelCall => {
  const call: PendingCall = { correlationId, channel, timer: undefined, settled: false, done }
  channel.pending.set(correlationId, call)
  call.timer = setTimeout(() => {
    call.timer = undefined
    if (call.settled) return
    settleCall(call)
    sendCancel(CancelReason.Timeout)
    done(Either.left(new AgentTimeout({ agent, timeoutMs, correlationId })))
  }, timeoutMs)
  return (reason: CancelReason = CancelReason.ClientDisconnect) => {
    if (call.settled) return
    settleCall(call)
    sendCancel(reason)
  }
}

/** `start` as one `Effect.async`; interruption sends Cancel (ClientDisconnect). */
export const callOf =
  (
    start: (type: MessageType, event: { readonly correlation_id: string }, timeoutMs: number, done: Done) => CancelCall
  ): ((type: MessageType, event: { readonly correlation_id: string }, timeoutMs: number) => Effect.Effect<AgentResponse, AgentCallError>) =>
  (type, event, timeoutMs) =>
    Effect.async<AgentResponse, AgentCallError>((resume) => {
      const cancel = start(type, event, timeoutMs, (result) =>
        resume(Either.isRight(result) ? Effect.succeed(result.right) : Effect.fail(result.left))
      )
      return Effect.sync(() => cancel(CancelReason.ClientDisconnect))
    })

/**
 * The calls waiting for an answer on one connection, by correlation id: one entry added and
 * removed per call.
 *
 * Up to `LIST_LIMIT` calls (the common case: a connection carries a share of the agent's
 * concurrency) they are a list in the order they were sent, searched from the oldest: an agent
 * answers mostly in order, so the answer's call is found first or nearly, by comparing ids,
 * with no hashing. Measured on node 20 (V8 11.3), the keyed table this replaced cost ~1.4 µs
 * per call under load (every key is a fresh string, internalised by V8 on insert, looked up
 * with a fresh string from the answer), and a `Map` with that churn kept the removed calls
 * reachable for the young-generation GC (every request's objects copied and promoted,
 * scavenges of 15-45 ms). Past the limit a null-prototype object indexes them (a slow agent
 * with many calls in flight), until the connection is idle again.
 * Used by both transports (GrpcTransport.ts keeps its streams' calls in it too).
 */
export class PendingCalls<P = PendingCall> {
  private ids: Array<string> = []
  private calls: Array<P> = []
  private table: Record<string, P> | undefined
  private count = 0

  get size(): number {
    return this.count
  }
  get(id: string): P | undefined {
    if (this.table !== undefined) return this.table[id]
    const ids = this.ids
    for (let i = 0; i < ids.length; i++) if (ids[i] === id) return this.calls[i]
    return undefined
  }
  has(id: string): boolean {
    return this.get(id) !== undefined
  }
  set(id: string, call: P): void {
    if (this.table !== undefined) {
      if (this.table[id] === undefined) this.count++
      this.table[id] = call
      return
    }
    const ids = this.ids
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] === id) {
        this.calls[i] = call
        return
      }
    }
    if (ids.length < LIST_LIMIT) {
      ids.push(id)
      this.calls.push(call)
      this.count++
      return
    }
    const table = Object.create(null) as Record<string, P>
    for (let i = 0; i < ids.length; i++) table[ids[i]] = this.calls[i]
    table[id] = call
    this.table = table
    this.ids = []
    this.calls = []
    this.count++
  }
  delete(id: string): void {
    if (this.table !== undefined) {
      if (this.table[id] === undefined) return
      this.count--
      delete this.table[id]
      // idle again: back to the list
      if (this.count === 0) this.table = undefined
      return
    }
    const ids = this.ids
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] === id) {
        if (i === 0) {
          ids.shift()
          this.calls.shift()
        } else {
          ids.splice(i, 1)
          this.calls.splice(i, 1)
        }
        this.count--
        return
      }
    }
  }
  values(): Array<P> {
    return this.table !== undefined ? Object.values(this.table) : this.calls.slice()
  }
  clear(): void {
    this.ids = []
    this.calls = []
    this.table = undefined
    this.count = 0
  }
}

/** Calls kept as a list before they are indexed by id (see PendingCalls). */
const LIST_LIMIT = 32

// ---------------------------------------------------------------------------
// The interface of both transports (the Manager and AgentRuntime see only this)

export type ClientEvent =
  | { readonly _tag: "Connected"; readonly agent: string; readonly capabilities: AgentCapabilities | null }
  | { readonly _tag: "Disconnected"; readonly agent: string; readonly reason: string }
  | { readonly _tag: "ConnectFailed"; readonly agent: string; readonly reason: string; readonly retryInMs: number }
  | { readonly _tag: "ProtocolError"; readonly agent: string; readonly error: AgentProtocolError }
  | { readonly _tag: "Unmatched"; readonly agent: string; readonly correlationId: string | undefined }

export interface AgentClientStatus {
  readonly ready: number
  readonly connecting: number
  readonly pending: number
  /** Open sockets (any state). */
  readonly sockets: number
  /** Live timers owned by the client (calls, handshakes, pings, reconnects). */
  readonly timers: number
  readonly lastError: string | undefined
}

export interface AgentClient {
  readonly id: string
  /**
   * Sends one event and waits for its answer (plain callback, hot path).
   * `done` is called exactly once unless the returned cancel runs first.
   */
  readonly start: (
    type: MessageType,
    event: { readonly correlation_id: string },
    timeoutMs: number,
    done: (result: Either.Either<AgentResponse, AgentCallError>) => void
  ) => CancelCall
  /** `start` as one `Effect.async`; interruption sends Cancel (ClientDisconnect). */
  readonly call: (
    type: MessageType,
    event: { readonly correlation_id: string },
    timeoutMs: number
  ) => Effect.Effect<AgentResponse, AgentCallError>
  readonly status: () => AgentClientStatus
  /** Capabilities declared by the agent at the last successful handshake. */
  readonly capabilities: () => AgentCapabilities | null
}
