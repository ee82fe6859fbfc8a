/**
 * Connection pool to one agent over a Unix domain socket (protocol v2).
 *
 * - `poolSize` connections, each opened with the handshake first; calls are
 *   multiplexed on them and answers are matched only through
 *   `audit.custom.correlation_id`.
 * - A connection that breaks the wire contract (bad frame, bad JSON, unknown
 *   type, oversize) is dropped; its pending calls fail with that
 *   `AgentProtocolError`. Closed connections are reopened with exponential
 *   backoff; while none is ready calls fail fast (`AgentUnavailable`).
 * - Each call owns its deadline timer (no `Effect.timeout`, DESIGN.md §2);
 *   on timeout or interruption a Cancel (0x40) goes to the agent.
 * - Pings check liveness: a connection whose agent has answered pings before
 *   and then stays silent for a whole ping interval is dropped and reopened.
 *
 * The hot path is `start` (plain callbacks); `call` wraps it in one `Effect.async`.
 * One connection (state, batched writes): UdsConnection.ts; the `AgentClient` interface it
 * implements, shared with the gRPC transport: Channels.ts.
 */
import * as net from "node:net"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import {
  type AgentCapabilities,
  AgentProtocolError,
  FlowAction,
  MAX_FRAME_LENGTH,
  MessageType,
  PROTOCOL_VERSION
} from "./Protocol.js"
import { answerCorrelationId, decodeAgentResponse, decodeHandshakeResponse } from "./ProtocolDecoders.js"
import { encodeFrame } from "./ProtocolFrames.js"
import {
  type AgentCallError,
  type AgentClient,
  type AgentClientStatus,
  AgentRejected,
  AgentUnavailable,
  callOf,
  type CancelCall,
  type ClientEvent,
  type Done,
  failPending,
  pickChannel,
  PickMiss,
  pickMissError,
  reconnectDelayMs,
  settleCall,
  trackCall
} from "./Channels.js"
import { Connection } from "./UdsConnection.js"


// ---------------------------------------------------------------------------
// Configuration

export interface AgentClientConfig {
  /** Agent id, used in errors, logs and metrics. */
  readonly id: string
  /** `unix-socket "<path>"` of the agent. */
  readonly socketPath: string
  /** Connections kept open to the agent. Default 4 (Sentinel's pool size). */
  readonly poolSize?: number
  /** Deadline for connect + handshake of one connection, ms. Default 5000. */
  readonly connectTimeoutMs?: number
  /** First reconnect delay, ms; doubles after each failed attempt. Default 100. */
  readonly reconnectBaseMs?: number
  /** Upper bound of the reconnect delay, ms. Default 5000. */
  readonly reconnectMaxMs?: number
  /** Ping period per connection, ms; 0 disables pings. Default 10000. */
  readonly pingIntervalMs?: number
  /** `proxy_id` sent in the handshake. Default "sentinel-ts". */
  readonly proxyId?: string
  /** `proxy_version` sent in the handshake. Default "0.1.0". */
  readonly proxyVersion?: string
  /** `config` sent in the handshake (the agent's `config {}` block as JSON). Default null. */
  readonly handshakeConfig?: unknown
  /** Largest frame accepted from the agent (type byte + payload). Default 16 MiB. */
  readonly maxFrameLength?: number
  /**
   * Bytes queued for a connection the agent does not read (stopped, stuck) before
   * that connection is dropped and its calls failed. Default 8 MiB.
   */
  readonly maxWriteBufferBytes?: number
  /** Connection lifecycle observer (logs/metrics). Must not throw. */
  readonly onEvent?: (event: ClientEvent) => void
}


// ---------------------------------------------------------------------------
// Implementation

interface Slot {
  conn: Connection | undefined
  retryTimer: ReturnType<typeof setTimeout> | undefined
  attempt: number
}


class Pool implements AgentClient {
  readonly id: string
  private readonly slots: Array<Slot>
  private closed = false
  private rr = 0
  private lastError: string | undefined
  private lastRejection: AgentRejected | undefined
  private caps: AgentCapabilities | null = null
  private readonly poolSize: number
  private readonly connectTimeoutMs: number
  private readonly reconnectBaseMs: number
  private readonly reconnectMaxMs: number
  private readonly pingIntervalMs: number
  private readonly maxFrameLength: number
  private readonly maxWriteBufferBytes: number
  private readonly handshake: Buffer

  constructor(private readonly config: AgentClientConfig) {
    this.id = config.id
    this.poolSize = Math.max(1, config.poolSize ?? 4)
    this.connectTimeoutMs = config.connectTimeoutMs ?? 5000
    this.reconnectBaseMs = Math.max(1, config.reconnectBaseMs ?? 100)
    this.reconnectMaxMs = Math.max(this.reconnectBaseMs, config.reconnectMaxMs ?? 5000)
    this.pingIntervalMs = config.pingIntervalMs ?? 10_000
    this.maxFrameLength = config.maxFrameLength ?? MAX_FRAME_LENGTH
    this.maxWriteBufferBytes = config.maxWriteBufferBytes ?? 8 * 1024 * 1024
    this.handshake = encodeFrame(MessageType.HandshakeRequest, {
      supported_versions: [PROTOCOL_VERSION],
      proxy_id: config.proxyId ?? "sentinel-ts",
      proxy_version: config.proxyVersion ?? "0.1.0",
      config: config.handshakeConfig ?? null,
      supported_encodings: ["json"]
    })
    this.slots = Array.from({ length: this.poolSize }, () => ({ conn: undefined, retryTimer: undefined, attempt: 0 }))
  }

  open(): this {
    for (const slot of this.slots) this.connect(slot)
    return this
  }

  private emit(event: ClientEvent): void {
    try {
      this.config.onEvent?.(event)
    } catch {
      // an observer must not break the pool
    }
  }

  // -- connections ----------------------------------------------------------

  private connect(slot: Slot): void {
    if (this.closed) return
    slot.retryTimer = undefined
    const socket = net.createConnection({ path: this.config.socketPath })
    const conn = new Connection(socket, this.maxFrameLength)
    slot.conn = conn
    conn.handshakeTimer = setTimeout(() => {
      conn.handshakeTimer = undefined
      this.drop(slot, conn, `connect/handshake timed out after ${this.connectTimeoutMs} ms`, undefined)
    }, this.connectTimeoutMs)
    socket.on("connect", () => socket.write(this.handshake))
    socket.on("data", (chunk: Buffer) => this.onData(slot, conn, chunk))
    socket.on("error", (err) => this.drop(slot, conn, err.message, undefined))
    socket.on("close", () => this.drop(slot, conn, "connection closed by the agent", undefined))
  }

  private onData(slot: Slot, conn: Connection, chunk: Buffer): void {
    if (conn.state === "closed") return
    conn.inboundSincePing = true
    for (const item of conn.decoder.push(chunk)) {
      if (item._tag === "AgentProtocolError") {
        const error = new AgentProtocolError({ reason: item.reason, message: item.message, agent: this.id })
        this.emit({ _tag: "ProtocolError", agent: this.id, error })
        this.drop(slot, conn, error.message, error)
        return
      }
      if (conn.state === "connecting") {
        if (item.type !== MessageType.HandshakeResponse) {
          const error = new AgentProtocolError({
            reason: "unexpected",
            message: `agent sent message type ${item.type} before the handshake response`,
            agent: this.id
          })
          this.emit({ _tag: "ProtocolError", agent: this.id, error })
          this.drop(slot, conn, error.message, error)
          return
        }
        this.onHandshake(slot, conn, item.payload)
        if ((conn.state as Connection["state"]) !== "ready") return
        continue
      }
      switch (item.type) {
        case MessageType.AgentResponse:
          this.onAnswer(conn, item.payload)
          break
        case MessageType.Ping:
          try {
            conn.send(MessageType.Pong, item.payload)
          } catch (e) {
            // a ping too large to echo within the frame limit: the agent broke the contract
            this.drop(slot, conn, `agent ping cannot be answered: ${String(e)}`, undefined)
            return
          }
          break
        case MessageType.Pong:
          conn.awaitingPong = false
          conn.answersPings = true
          break
        case MessageType.HealthStatus:
          if (typeof item.payload.state === "number") conn.health = item.payload.state
          break
        case MessageType.FlowControl:
          if (item.payload.action === FlowAction.Pause) conn.paused = true
          else if (item.payload.action === FlowAction.Resume) conn.paused = false
          break
        default:
          // MetricsReport, ConfigUpdateRequest, or a proxy->agent type: nothing to do here
          break
      }
    }
  }

  private onHandshake(slot: Slot, conn: Connection, payload: Record<string, unknown>): void {
    const decoded = decodeHandshakeResponse(payload)
    if (Either.isLeft(decoded)) {
      const error = new AgentProtocolError({ reason: "malformed", message: decoded.left.message, agent: this.id })
      this.emit({ _tag: "ProtocolError", agent: this.id, error })
      this.drop(slot, conn, error.message, error)
      return
    }
    const hs = decoded.right
    if (!hs.success || hs.protocol_version !== PROTOCOL_VERSION || hs.encoding !== "json") {
      const message = !hs.success
        ? `agent refused the handshake: ${hs.error ?? "no reason given"}`
        : `agent chose protocol ${hs.protocol_version} / encoding ${hs.encoding}; only 2 / json are offered`
      this.lastRejection = new AgentRejected({ agent: this.id, message })
      this.drop(slot, conn, message, undefined)
      return
    }
    if (conn.handshakeTimer) clearTimeout(conn.handshakeTimer)
    conn.handshakeTimer = undefined
    conn.state = "ready"
    slot.attempt = 0
    this.lastRejection = undefined
    this.caps = hs.capabilities
    if (this.pingIntervalMs > 0) conn.pingTimer = setInterval(() => this.ping(slot, conn), this.pingIntervalMs)
    this.emit({ _tag: "Connected", agent: this.id, capabilities: hs.capabilities })
  }

  private ping(slot: Slot, conn: Connection): void {
    if (conn.awaitingPong && conn.answersPings && !conn.inboundSincePing) {
      this.drop(slot, conn, `no pong within ${this.pingIntervalMs} ms`, undefined)
      return
    }
    conn.awaitingPong = true
    conn.inboundSincePing = false
    conn.send(MessageType.Ping, { sequence: ++conn.pingSequence, timestamp_ms: Date.now() })
  }

  private onAnswer(conn: Connection, payload: Record<string, unknown>): void {
    const correlationId = answerCorrelationId(payload)
    const call = correlationId === undefined ? undefined : conn.pending.get(correlationId)
    if (call === undefined) {
      // late answer of a timed-out/cancelled call, or an answer without id: ignored
      this.emit({ _tag: "Unmatched", agent: this.id, correlationId })
      return
    }
    settleCall(call)
    const decoded = decodeAgentResponse(payload)
    call.done(
      Either.isRight(decoded)
        ? decoded
        : Either.left(new AgentProtocolError({ reason: "malformed", message: decoded.left.message, agent: this.id }))
    )
  }

  /** Closes `conn`, fails its pending calls, and schedules the slot's reconnect. */
  private drop(slot: Slot, conn: Connection, reason: string, protocolError: AgentProtocolError | undefined): void {
    if (conn.state === "closed") return
    const wasReady = conn.state === "ready"
    conn.state = "closed"
    if (conn.handshakeTimer) clearTimeout(conn.handshakeTimer)
    if (conn.pingTimer) clearInterval(conn.pingTimer)
    conn.handshakeTimer = undefined
    conn.pingTimer = undefined
    conn.discard()
    conn.socket.destroy()
    this.lastError = reason
    failPending(conn.pending, protocolError ?? new AgentUnavailable({ agent: this.id, reason: this.closed ? "closed" : "connection-lost", message: reason }))
    if (slot.conn === conn) slot.conn = undefined
    if (this.closed) return
    if (wasReady) this.emit({ _tag: "Disconnected", agent: this.id, reason })
    const retryInMs = reconnectDelayMs(this.reconnectBaseMs, this.reconnectMaxMs, slot.attempt)
    slot.attempt++
    if (!wasReady) this.emit({ _tag: "ConnectFailed", agent: this.id, reason, retryInMs })
    slot.retryTimer = setTimeout(() => this.connect(slot), retryInMs)
  }

  // -- calls ----------------------------------------------------------------

  private readonly connAt = (i: number): Connection | undefined => this.slots[i].conn

  private pick(correlationId: string): Connection | AgentCallError {
    const got = pickChannel(this.slots.length, this.connAt, this.rr++ % this.slots.length, correlationId)
    if (!(got instanceof PickMiss)) return got
    return pickMissError(got, correlationId, {
      agent: this.id,
      closed: this.closed,
      lastRejection: this.lastRejection,
      notConnected: `no connection to ${this.config.socketPath}${this.lastError ? `: ${this.lastError}` : ""}`
    })
  }

  readonly start = (
    type: MessageType,
    event: { readonly correlation_id: string },
    timeoutMs: number,
    done: Done
  ): CancelCall => {
    const correlationId = event.correlation_id
    const picked = this.pick(correlationId)
    if (!(picked instanceof Connection)) {
      done(Either.left(picked))
      return noop
    }
    const conn = picked
    let fits: boolean
    try {
      fits = conn.send(type, event, this.maxWriteBufferBytes)
    } catch (e) {
      done(Either.left(new AgentProtocolError({ reason: "oversize", message: String(e), agent: this.id })))
      return noop
    }
    const cancel = trackCall(this.id, conn, correlationId, timeoutMs, done, (reason) => conn.sendCancel(correlationId, reason))
    if (!fits) {
      const slot = this.slots.find((sl) => sl.conn === conn)
      // fails this call and every other one on the connection
      if (slot) this.drop(slot, conn, `agent left more than ${this.maxWriteBufferBytes} bytes unread`, undefined)
    }
    return cancel
  }

  readonly call = callOf(this.start)

  readonly status = (): AgentClientStatus => {
    let ready = 0
    let connecting = 0
    let pending = 0
    let sockets = 0
    let timers = 0
    for (const slot of this.slots) {
      if (slot.retryTimer) timers++
      const conn = slot.conn
      if (conn === undefined) continue
      if (!conn.socket.destroyed) sockets++
      if (conn.state === "ready") ready++
      else if (conn.state === "connecting") connecting++
      if (conn.handshakeTimer) timers++
      if (conn.pingTimer) timers++
      pending += conn.pending.size
      for (const call of conn.pending.values()) if (call.timer) timers++
    }
    return { ready, connecting, pending, sockets, timers, lastError: this.lastError }
  }

  readonly capabilities = (): AgentCapabilities | null => this.caps

  readonly close = (): void => {
    if (this.closed) return
    this.closed = true
    for (const slot of this.slots) {
      if (slot.retryTimer) clearTimeout(slot.retryTimer)
      slot.retryTimer = undefined
      if (slot.conn) this.drop(slot, slot.conn, "agent pool closed", undefined)
      slot.conn = undefined
    }
  }
}

const noop: CancelCall = () => {}

/**
 * Opens the pool (connections are attempted at once; a missing socket is
 * retried with backoff). Closing the scope closes every socket and timer and
 * fails pending calls with `AgentUnavailable { reason: "closed" }`.
 */
export const make = (config: AgentClientConfig): Effect.Effect<AgentClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => new Pool(config).open()),
    (pool) => Effect.sync(() => pool.close())
  )

/** Unscoped variant for callers that manage the lifetime themselves (`close` must be called). */
export const unsafeMake = (config: AgentClientConfig): AgentClient & { readonly close: () => void } =>
  new Pool(config).open()
