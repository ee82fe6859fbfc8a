/**
 * The streams of an agent's gRPC transport (GrpcTransport.ts adds the calls on them): the
 * HTTP/2 channel (GrpcHttp2.ts) and `streams` ProcessStream calls on it, each opened with the
 * handshake (and the package fallback on UNIMPLEMENTED), what the agent sends on it (the
 * handshake answer, answers matched by `correlation_id`, health, flow control), and each
 * dropped with its calls failed at once and reopened with its own backoff.
 */
import * as Either from "effect/Either"
import {
  AgentRejected,
  type ClientEvent,
  AgentUnavailable,
  failPending,
  PendingCalls,
  reconnectDelayMs,
  settleCall
} from "./Channels.js"
import { agentResponseOf, capabilitiesOf } from "./GrpcMapping.js"
import { type CallHandlers, frameOf, type GrpcTlsConfig, type H2Call, H2Channel, Status, statusName } from "./GrpcHttp2.js"
import { decodeAllowAnswer } from "./GrpcWireIn.js"
import {
  type AgentToProxy,
  decodeAgentToProxy,
  DEFAULT_GRPC_PACKAGE,
  encodeProxyToAgent,
  GRPC_MAX_MESSAGE_BYTES,
  GRPC_PACKAGES,
  type GrpcPackage,
  processStreamPath
} from "./GrpcProto.js"
import { type AgentCapabilities, AgentProtocolError, FlowAction, HealthState, PROTOCOL_VERSION } from "./Protocol.js"

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

export class Stream {
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

export interface Slot {
  stream: Stream | undefined
  retryTimer: ReturnType<typeof setTimeout> | undefined
  attempt: number
}

const otherPackage = (p: GrpcPackage): GrpcPackage => (p === GRPC_PACKAGES[0] ? GRPC_PACKAGES[1] : GRPC_PACKAGES[0])

/** How long a keepalive ping may stay unanswered: the connect timeout, within 1-20 s. */
const keepaliveTimeoutMs = (connectTimeoutMs: number): number => Math.min(20_000, Math.max(1000, connectTimeoutMs))

/** The streams of one agent and what they learnt of it; the calls are the subclass's (GrpcPool). */
export class GrpcStreams {
  readonly id: string
  protected readonly slots: Array<Slot>
  protected readonly channel: H2Channel | undefined
  private readonly setupError: string | undefined
  protected closed = false
  protected lastError: string | undefined
  protected lastRejection: AgentRejected | undefined
  protected caps: AgentCapabilities | null = null
  protected pkg: GrpcPackage
  private readonly connectTimeoutMs: number
  private readonly reconnectBaseMs: number
  private readonly reconnectMaxMs: number
  protected readonly maxMessageBytes: number
  private readonly handshake: Buffer

  constructor(protected readonly config: GrpcClientConfig) {
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
  protected drop(slot: Slot, s: Stream, reason: string, protocolError: AgentProtocolError | undefined): void {
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
}
