/**
 * The gRPC transport of an agent: the same `AgentClient` interface as the
 * Unix-socket pool (Client.ts), so the Manager and AgentRuntime (concurrency
 * cap, circuit breaker, failure modes, metrics) treat both alike.
 *
 * - One HTTP/2 connection per agent (node:http2, GrpcHttp2.ts), with
 *   keepalive pings (`ping-interval-ms`), message limits of 10 MiB each way,
 *   TLS / mTLS when configured; each stream reconnects with its own backoff
 *   (`reconnect-base-ms` doubling up to `reconnect-max-ms`).
 * - On it, `pool-size` ProcessStream calls (Sentinel opens 4 connections of
 *   one stream each; an agent built on Sentinel's SDK handles one message at
 *   a time per stream, so the streams are its parallelism). Each stream
 *   starts with the handshake; then events go out as ProxyToAgent and
 *   answers come back as AgentResponse, matched by `correlation_id`.
 * - A stream that ends or fails (agent killed, restarting, unreachable)
 *   fails every call in flight on it at once (`AgentUnavailable`, resolved by
 *   the failure mode) and is reopened with exponential backoff and jitter.
 * - Each call owns its deadline (the agent's or the filter's `timeout-ms`);
 *   on timeout or when the client leaves, a CancelRequest goes to the agent.
 * - Package: `zentinel.agent.v2` first; an agent answering UNIMPLEMENTED is
 *   asked again under `sentinel.agent.v2` (and the other way round), and
 *   the package that answered is kept.
 * - The agent's `config { }` goes in the handshake's `config_json` and, once
 *   the handshake succeeded, as a ConfigureEvent (`is_initial`), not answered.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import {
  type AgentCallError,
  type AgentClient,
  type AgentClientStatus,
  AgentRejected,
  AgentUnavailable,
  callOf,
  type CancelCall,
  type ClientEvent,
  failPending,
  PendingCalls,
  pickChannel,
  PickMiss,
  pickMissError,
  reconnectDelayMs,
  settleCall,
  trackCall
} from "./Channels.js"
import { agentResponseOf, proxyToAgentOf } from "./GrpcMapping.js"
import { type CallHandlers, frameOf, type GrpcTlsConfig, type H2Call, H2Channel, Status, statusName } from "./GrpcHttp2.js"
import { encodeRequestHeadersFrame } from "./GrpcWire.js"
import { decodeAllowAnswer } from "./GrpcWireIn.js"
import {
  type AgentToProxy,
  decodeAgentToProxy,
  DEFAULT_GRPC_PACKAGE,
  encodeProxyToAgent,
  GRPC_MAX_MESSAGE_BYTES,
  GRPC_PACKAGES,
  type GrpcPackage,
  type PbAgentCapabilities,
  processStreamPath,
  type ProxyToAgent
} from "./GrpcProto.js"
import {
  type AgentCapabilities,
  AgentProtocolError,
  type AgentResponse,
  CancelReason,
  FlowAction,
  HealthState,
  MessageType,
  PROTOCOL_VERSION,
  type RequestHeadersEvent
} from "./Protocol.js"

export interface GrpcClientConfig {
  readonly id: string
  /** `http://host:port` or `https://host:port`. */
  readonly address: string
  /** TLS settings; TLS is also used, with the system roots, for an `https://` address without them. */
  readonly tls?: GrpcTlsConfig
  /** ProcessStream calls kept open on the channel. Default 4. */
  readonly streams?: number
  /** Deadline of one stream's handshake (including the connect), ms. Default 5000. */
  readonly connectTimeoutMs?: number
  readonly reconnectBaseMs?: number
  readonly reconnectMaxMs?: number
  /** HTTP/2 keepalive ping period, ms; 0 = none. Default 10000. */
  readonly keepaliveMs?: number
  readonly proxyId?: string
  readonly proxyVersion?: string
  /** The agent's `config { }` as JSON (null = none). */
  readonly handshakeConfig?: unknown
  /** Largest message each way. Default 10 MiB. */
  readonly maxMessageBytes?: number
  /** Package called first. Default `zentinel.agent.v2`. */
  readonly package?: GrpcPackage
  readonly onEvent?: (event: ClientEvent) => void
}

type Done = (result: Either.Either<AgentResponse, AgentCallError>) => void

class Stream {
  state: "connecting" | "ready" | "closed" = "connecting"
  /** Calls waiting for an answer on this stream, by correlation id (Client.ts's table). */
  readonly pending = new PendingCalls()
  paused = false
  health: number = HealthState.Healthy
  handshakeTimer: ReturnType<typeof setTimeout> | undefined
  call: H2Call | undefined
  constructor(readonly pkg: GrpcPackage) {}

  /** Sends one framed message. */
  send(frame: Buffer): void {
    if (this.state === "closed") return
    try {
      this.call?.write(frame)
    } catch {
      // the call ended under us: its close drops the stream
    }
  }
}

interface Slot {
  stream: Stream | undefined
  retryTimer: ReturnType<typeof setTimeout> | undefined
  attempt: number
}

const otherPackage = (p: GrpcPackage): GrpcPackage => (p === GRPC_PACKAGES[0] ? GRPC_PACKAGES[1] : GRPC_PACKAGES[0])

/** How long a keepalive ping may stay unanswered: the connect timeout, within 1-20 s. */
const keepaliveTimeoutMs = (connectTimeoutMs: number): number => Math.min(20_000, Math.max(1000, connectTimeoutMs))

/** The capabilities of a gRPC handshake in the UDS shape the rest of the proxy reads. */
export const capabilitiesOf = (c: PbAgentCapabilities | undefined): AgentCapabilities | null => {
  if (c === undefined || c === null) return null
  const f = c.features ?? {}
  const l = c.limits ?? {}
  return {
    agent_id: c.agent_id ?? "",
    name: c.name ?? "",
    version: c.version ?? "",
    supported_events: [...(c.supported_events ?? [])],
    features: {
      streaming_body: f.streaming_body === true,
      websocket: f.websocket === true,
      guardrails: f.guardrails === true,
      config_push: f.config_push === true,
      metrics_export: f.metrics_export === true,
      concurrent_requests: f.concurrent_requests ?? 0,
      cancellation: f.cancellation === true,
      flow_control: f.flow_control === true,
      health_reporting: f.health_reporting === true
    },
    limits: {
      max_body_size: l.max_body_size ?? 0,
      max_concurrency: l.max_concurrency ?? 0,
      preferred_chunk_size: l.preferred_chunk_size ?? 0
    }
  }
}

class GrpcPool implements AgentClient {
  readonly id: string
  private readonly slots: Array<Slot>
  private readonly channel: H2Channel | undefined
  private readonly setupError: string | undefined
  private closed = false
  private rr = 0
  private lastError: string | undefined
  private lastRejection: AgentRejected | undefined
  private caps: AgentCapabilities | null = null
  private pkg: GrpcPackage
  private readonly connectTimeoutMs: number
  private readonly reconnectBaseMs: number
  private readonly reconnectMaxMs: number
  private readonly maxMessageBytes: number
  private readonly handshake: Buffer

  constructor(private readonly config: GrpcClientConfig) {
    this.id = config.id
    this.pkg = config.package ?? DEFAULT_GRPC_PACKAGE
    this.connectTimeoutMs = config.connectTimeoutMs ?? 5000
    this.reconnectBaseMs = Math.max(1, config.reconnectBaseMs ?? 100)
    this.reconnectMaxMs = Math.max(this.reconnectBaseMs, config.reconnectMaxMs ?? 5000)
    this.maxMessageBytes = config.maxMessageBytes ?? GRPC_MAX_MESSAGE_BYTES
    this.handshake = frameOf(encodeProxyToAgent({
      handshake: {
        supported_versions: [PROTOCOL_VERSION],
        proxy_id: config.proxyId ?? "sentinel-ts",
        proxy_version: config.proxyVersion ?? "0.1.0",
        config_json: JSON.stringify(config.handshakeConfig ?? {})
      }
    }))
    this.slots = Array.from({ length: Math.max(1, config.streams ?? 4) }, () => ({
      stream: undefined,
      retryTimer: undefined,
      attempt: 0
    }))
    let channel: H2Channel | undefined
    let setupError: string | undefined
    try {
      channel = new H2Channel({
        address: config.address,
        ...(config.tls !== undefined ? { tls: config.tls } : {}),
        keepaliveMs: config.keepaliveMs ?? 10_000,
        keepaliveTimeoutMs: keepaliveTimeoutMs(this.connectTimeoutMs),
        maxMessageBytes: this.maxMessageBytes
      })
    } catch (e) {
      setupError = `cannot set up the gRPC channel to ${config.address}: ${e instanceof Error ? e.message : String(e)}`
    }
    this.channel = channel
    this.setupError = setupError
    this.lastError = setupError
  }

  open(): this {
    if (this.channel === undefined) {
      this.emit({ _tag: "ConnectFailed", agent: this.id, reason: this.setupError ?? "no channel", retryInMs: 0 })
      return this
    }
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

  // -- streams ----------------------------------------------------------------

  private connect(slot: Slot, pkg: GrpcPackage = this.pkg, fallback = this.config.package === undefined): void {
    if (this.closed || this.channel === undefined) return
    slot.retryTimer = undefined
    const s = new Stream(pkg)
    slot.stream = s
    s.handshakeTimer = setTimeout(() => {
      s.handshakeTimer = undefined
      this.channel?.abandonIfConnecting()
      this.drop(slot, s, `no handshake within ${this.connectTimeoutMs} ms`, undefined)
    }, this.connectTimeoutMs)
    const handlers: CallHandlers = {
      onMessage: (bytes) => {
        let m: AgentToProxy
        try {
          // an allow answer (the one of nearly every request) by hand: GrpcWireIn.ts
          m = decodeAllowAnswer(bytes) ?? decodeAgentToProxy(bytes)
        } catch (e) {
          this.drop(slot, s, `INTERNAL: Response message parsing error: ${e instanceof Error ? e.message : String(e)}`, undefined)
          return
        }
        this.onMessage(slot, s, m)
      },
      onClose: (code, details) => {
        if (code === Status.OK) return this.drop(slot, s, "stream closed by the agent", undefined)
        if (s.state === "connecting" && code === Status.UNIMPLEMENTED && fallback && !this.closed) {
          // the agent serves the other package: ask there (once), keep it if it answers
          this.close1(s)
          if (slot.stream === s) slot.stream = undefined
          return this.connect(slot, otherPackage(pkg), false)
        }
        this.drop(slot, s, `${statusName(code)}: ${details}`, undefined)
      }
    }
    try {
      s.call = this.channel.call(processStreamPath(pkg), handlers)
    } catch (e) {
      return this.drop(slot, s, `UNAVAILABLE: ${e instanceof Error ? e.message : String(e)}`, undefined)
    }
    s.send(this.handshake)
  }

  private onMessage(slot: Slot, s: Stream, m: AgentToProxy): void {
    if (s.state === "closed") return
    if (s.state === "connecting") {
      const hs = m.handshake
      if (hs === undefined || hs === null) {
        const error = new AgentProtocolError({
          reason: "unexpected",
          message: `agent sent ${m.message ?? "a message"} before the handshake response`,
          agent: this.id
        })
        this.emit({ _tag: "ProtocolError", agent: this.id, error })
        return this.drop(slot, s, error.message, error)
      }
      const version = hs.protocol_version ?? 0
      if (hs.success !== true || (version !== 0 && version !== PROTOCOL_VERSION)) {
        const message = hs.success !== true
          ? `agent refused the handshake: ${hs.error || "no reason given"}`
          : `agent chose protocol ${version}; only ${PROTOCOL_VERSION} is offered`
        this.lastRejection = new AgentRejected({ agent: this.id, message })
        return this.drop(slot, s, message, undefined)
      }
      if (s.handshakeTimer) clearTimeout(s.handshakeTimer)
      s.handshakeTimer = undefined
      s.state = "ready"
      slot.attempt = 0
      this.pkg = s.pkg
      this.lastRejection = undefined
      this.caps = capabilitiesOf(hs.capabilities)
      const config = this.config.handshakeConfig
      if (config !== null && config !== undefined) {
        s.send(frameOf(encodeProxyToAgent({ configure: { config_json: JSON.stringify(config), is_initial: true, timestamp_ms: Date.now() } })))
      }
      this.emit({ _tag: "Connected", agent: this.id, capabilities: this.caps })
      return
    }
    if (m.response !== undefined && m.response !== null) {
      const correlationId = m.response.correlation_id ?? ""
      const call = s.pending.get(correlationId)
      if (call === undefined) {
        this.emit({ _tag: "Unmatched", agent: this.id, correlationId })
        return
      }
      settleCall(call)
      const decoded = agentResponseOf(m.response)
      call.done(
        Either.isRight(decoded)
          ? decoded
          : Either.left(new AgentProtocolError({ reason: "malformed", message: decoded.left.message, agent: this.id }))
      )
      return
    }
    if (m.health !== undefined && m.health !== null) {
      if (typeof m.health.state === "number" && m.health.state > 0) s.health = m.health.state
      return
    }
    if (m.flow_control !== undefined && m.flow_control !== null) {
      // for the whole stream only (per-request flow control has nothing to pause here)
      if (m.flow_control.correlation_id === undefined || m.flow_control.correlation_id === "") {
        if (m.flow_control.action === FlowAction.Pause) s.paused = true
        else if (m.flow_control.action === FlowAction.Resume) s.paused = false
      }
      return
    }
    // pong, metrics, config_update, log, a second handshake: nothing to do
  }

  /** Ends a call without reporting. */
  private close1(s: Stream): void {
    s.state = "closed"
    if (s.handshakeTimer) clearTimeout(s.handshakeTimer)
    s.handshakeTimer = undefined
    try {
      s.call?.cancel()
    } catch {
      // already ended
    }
  }

  /** Closes a stream, fails its calls at once, schedules the slot's reconnect. */
  private drop(slot: Slot, s: Stream, reason: string, protocolError: AgentProtocolError | undefined): void {
    if (s.state === "closed") return
    const wasReady = s.state === "ready"
    this.close1(s)
    this.lastError = reason
    failPending(s.pending, protocolError ?? new AgentUnavailable({ agent: this.id, reason: this.closed ? "closed" : "connection-lost", message: reason }))
    if (slot.stream === s) slot.stream = undefined
    if (this.closed) return
    if (wasReady) this.emit({ _tag: "Disconnected", agent: this.id, reason })
    const retryInMs = reconnectDelayMs(this.reconnectBaseMs, this.reconnectMaxMs, slot.attempt)
    slot.attempt++
    if (!wasReady) this.emit({ _tag: "ConnectFailed", agent: this.id, reason, retryInMs })
    slot.retryTimer = setTimeout(() => this.connect(slot), retryInMs)
  }

  // -- calls ------------------------------------------------------------------

  private readonly streamAt = (i: number): Stream | undefined => this.slots[i].stream

  private pick(correlationId: string): Stream | AgentCallError {
    const got = pickChannel(this.slots.length, this.streamAt, this.rr++ % this.slots.length, correlationId)
    if (!(got instanceof PickMiss)) return got
    return pickMissError(got, correlationId, {
      agent: this.id,
      closed: this.closed,
      lastRejection: this.lastRejection,
      notConnected: `no gRPC stream to ${this.config.address}${this.lastError ? `: ${this.lastError}` : ""}`
    })
  }

  private sendCancel(s: Stream, correlationId: string, reason: CancelReason): void {
    s.send(frameOf(encodeProxyToAgent({ cancel: { correlation_id: correlationId, reason, timestamp_ms: Date.now() } })))
  }

  /** An event's ProxyToAgent message, framed (RequestHeaders, the one of every request, encoded by hand: GrpcWire.ts). */
  private encode(type: MessageType, event: { readonly correlation_id: string }): Buffer | AgentProtocolError {
    if (type === MessageType.RequestHeaders) {
      const frame = encodeRequestHeadersFrame(event as RequestHeadersEvent)
      if (frame !== undefined) return frame
    }
    const message = proxyToAgentOf(type, event)
    if (message instanceof AgentProtocolError) return new AgentProtocolError({ reason: message.reason, message: message.message, agent: this.id })
    try {
      return frameOf(encodeProxyToAgent(message as ProxyToAgent))
    } catch (e) {
      return new AgentProtocolError({ reason: "malformed", message: `cannot encode the event: ${String(e)}`, agent: this.id })
    }
  }

  readonly start = (
    type: MessageType,
    event: { readonly correlation_id: string },
    timeoutMs: number,
    done: Done
  ): CancelCall => {
    const correlationId = event.correlation_id
    const picked = this.pick(correlationId)
    if (!(picked instanceof Stream)) {
      done(Either.left(picked))
      return noop
    }
    const frame = this.encode(type, event)
    if (frame instanceof AgentProtocolError) {
      done(Either.left(frame))
      return noop
    }
    const bytes = frame.length - 5
    if (bytes > this.maxMessageBytes) {
      // over the limit the agent would fail the whole stream: fail this call only
      done(
        Either.left(
          new AgentProtocolError({
            reason: "oversize",
            message: `event of ${bytes} bytes exceeds the gRPC message limit of ${this.maxMessageBytes}`,
            agent: this.id
          })
        )
      )
      return noop
    }
    const s = picked
    const cancel = trackCall(this.id, s, correlationId, timeoutMs, done, (reason) => this.sendCancel(s, correlationId, reason))
    s.send(frame)
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
      const s = slot.stream
      if (s === undefined) continue
      if (s.state !== "closed") sockets++
      if (s.state === "ready") ready++
      else if (s.state === "connecting") connecting++
      if (s.handshakeTimer) timers++
      pending += s.pending.size
      for (const call of s.pending.values()) if (call.timer) timers++
    }
    return { ready, connecting, pending, sockets, timers, lastError: this.lastError }
  }

  readonly capabilities = (): AgentCapabilities | null => this.caps

  /** The package the agent answered under (or the one tried next). */
  readonly servedPackage = (): GrpcPackage => this.pkg

  readonly close = (): void => {
    if (this.closed) return
    this.closed = true
    for (const slot of this.slots) {
      if (slot.retryTimer) clearTimeout(slot.retryTimer)
      slot.retryTimer = undefined
      if (slot.stream) this.drop(slot, slot.stream, "agent pool closed", undefined)
      slot.stream = undefined
    }
    this.channel?.close()
  }
}

const noop: CancelCall = () => {}

export type GrpcAgentClient = AgentClient & {
  readonly close: () => void
  readonly servedPackage: () => GrpcPackage
}

/** Opens the channel and its streams; closing the scope fails pending calls and closes the channel. */
export const make = (config: GrpcClientConfig): Effect.Effect<GrpcAgentClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => new GrpcPool(config).open()),
    (pool) => Effect.sync(() => pool.close())
  )

/** Unscoped variant (`close` must be called). */
export const unsafeMake = (config: GrpcClientConfig): GrpcAgentClient => new GrpcPool(config).open()
