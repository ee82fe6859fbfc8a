/**
 * One proxy connection of an agent server: handshake, then dispatch.
 * Plain callbacks on the socket; each event's handler run by HandlerRun.ts
 * (a fiber on the server's runtime, unless it answered at once). Frame-level
 * protocol errors close this connection only.
 */
import type * as Net from "node:net"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Fiber from "effect/Fiber"
import {
  AgentProtocolError,
  HealthState,
  MAX_FRAME_LENGTH,
  MessageType,
  PROTOCOL_VERSION
} from "../Protocol.js"
import { decodeCancel, decodeEvent, decodeHandshakeRequest } from "../ProtocolDecoders.js"
import { encodeFrame, FrameDecoder } from "../ProtocolFrames.js"
import type { Frame } from "../ProtocolFrames.js"
import type { ServeAgentOptions } from "./AgentServer.js"
import {
  applyHandshakeConfig,
  defaultOnError,
  failureAnswer,
  type HandlerHost,
  handlerFor,
  runHandler,
  type RunFork,
  supportedEvents
} from "./HandlerRun.js"
import { allow } from "./Decision.js"

export type { RunFork }

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly options: ServeAgentOptions<any>
  readonly run: RunFork
  /** Handlers running over all connections (the server drains on it). */
  inFlight: number
  handlerDone(): void
}

export { defaultOnError }

/** One proxy connection. */
export class Connection {
  private readonly decoder: FrameDecoder
  private handshake: "waiting" | "pending" | "done" | "refused" = "waiting"
  /** Frames that arrived while an asynchronous handshake config was being applied. */
  private queued: Array<Frame> = []
  /** Events decoded while the concurrency bound was reached; they start as handlers finish. */
  private backlog: Array<Frame> = []
  private readonly running = new Map<string, Set<Fiber.RuntimeFiber<unknown, unknown>>>()
  private count = 0
  private writeBlocked = false
  private readonly max: number
  private readonly handlers: HandlerHost<unknown>

  constructor(private readonly hub: ConnectionHost, readonly socket: Net.Socket) {
    this.decoder = new FrameDecoder(hub.options.maxFrameLength ?? MAX_FRAME_LENGTH)
    this.max = hub.options.maxConcurrentPerConnection ?? 100
    this.handlers = {
      run: hub.run,
      onError: hub.options.onError,
      running: this.running,
      wire: (d, cid) => d.toWire(cid),
      warn: (message, cause) => this.log("warning", message, cause),
      started: () => {
        this.count++
        this.hub.inFlight++
        this.flow()
      },
      ended: (wire, type, cid) => {
        this.count--
        // undefined: interrupted (Cancel, or the connection went away): nobody waits for an answer
        if (wire !== undefined) this.answer(wire, type, cid)
        while (this.backlog.length > 0 && this.count < this.max && !this.socket.destroyed) this.onEvent(this.backlog.shift()!)
        this.flow()
        this.hub.handlerDone()
      }
    }
    socket.on("data", (chunk: Buffer) => this.onData(chunk))
    socket.on("drain", () => {
      this.writeBlocked = false
      this.flow()
    })
    socket.on("error", (e) => this.log("debug", `agent connection error: ${e.message}`))
  }

  private log(level: "debug" | "warning", message: string, cause?: Cause.Cause<unknown>): void {
    const eff = level === "debug" ? Effect.logDebug(message) : Effect.logWarning(message, ...(cause ? [cause] : []))
    this.hub.run(Effect.annotateLogs(eff, "agent", this.hub.options.info.agentId))
  }

  /** Reading pauses while the handshake config is applied, at the concurrency bound, or while writes back up. */
  private flow(): void {
    const pause = this.handshake === "pending" || this.count >= this.max || this.backlog.length > 0 || this.writeBlocked
    if (pause) this.socket.pause()
    else if (this.socket.isPaused()) this.socket.resume()
  }

  private send(type: MessageType, payload: unknown): void {
    if (this.socket.destroyed || !this.socket.writable) return
    if (!this.socket.write(encodeFrame(type, payload))) {
      this.writeBlocked = true
      this.flow()
    }
  }

  private fatal(error: AgentProtocolError): void {
    this.log("warning", `closing agent connection: ${error.reason}: ${error.message}`)
    this.socket.destroy()
  }

  private onData(chunk: Buffer): void {
    for (const item of this.decoder.push(chunk)) {
      if (item instanceof AgentProtocolError) return this.fatal(item)
      // After a refused handshake only the refusal is owed; the socket is ending.
      if (this.handshake === "refused") return
      if (this.handshake === "pending") this.queued.push(item)
      else this.onFrame(item)
      if (this.socket.destroyed) return
    }
  }

  private onFrame(frame: Frame): void {
    if (this.handshake === "waiting") return this.onHandshake(frame)
    switch (frame.type) {
      case MessageType.Ping:
        return this.send(MessageType.Pong, frame.payload)
      case MessageType.Pong:
        return
      case MessageType.Cancel: {
        const cancel = decodeCancel(frame.payload)
        if (Either.isLeft(cancel)) return this.fatal(cancel.left)
        const cid = cancel.right.correlation_id
        const fibers = this.running.get(cid)
        if (fibers !== undefined) for (const f of fibers) f.unsafeInterruptAsFork(f.id())
        if (this.backlog.length > 0) this.backlog = this.backlog.filter((f) => f.payload.correlation_id !== cid)
        return
      }
      case MessageType.HandshakeRequest:
        return this.fatal(new AgentProtocolError({ reason: "unexpected", message: "second HandshakeRequest on a connection" }))
      default:
        if (frame.type >= MessageType.RequestHeaders && frame.type <= MessageType.Configure) {
          // Control frames (Ping, Cancel) are never held back; events wait at the bound, in order.
          if (this.count >= this.max || this.backlog.length > 0) {
            this.backlog.push(frame)
            this.flow()
            return
          }
          return this.onEvent(frame)
        }
        // Agent-to-proxy types (health, metrics, flow control) have no meaning here.
        this.log("debug", `ignoring message type ${frame.type} from the proxy`)
    }
  }

  private onHandshake(frame: Frame): void {
    if (frame.type !== MessageType.HandshakeRequest) {
      return this.fatal(new AgentProtocolError({ reason: "unexpected", message: `expected HandshakeRequest, got type ${frame.type}` }))
    }
    const decoded = decodeHandshakeRequest(frame.payload)
    if (Either.isLeft(decoded)) {
      this.refuse(decoded.left.message)
      return
    }
    const req = decoded.right
    if (!req.supported_versions.includes(PROTOCOL_VERSION)) {
      this.refuse(`unsupported protocol versions ${JSON.stringify(req.supported_versions)}; this agent speaks ${PROTOCOL_VERSION}`)
      return
    }
    const onConfigure = this.hub.options.handlers.onConfigure
    if (req.config === null || req.config === undefined || onConfigure === undefined) {
      this.accept()
      return
    }
    this.handshake = "pending"
    this.flow()
    applyHandshakeConfig(this.hub.run, onConfigure, req.config, (refusal) => {
      if (this.socket.destroyed) return
      if (refusal !== undefined) return this.refuse(refusal)
      this.accept()
      const queued = this.queued
      this.queued = []
      for (const f of queued) {
        if (this.socket.destroyed) return
        this.onFrame(f)
      }
    })
  }

  private refuse(error: string): void {
    this.handshake = "refused"
    this.send(MessageType.HandshakeResponse, {
      protocol_version: PROTOCOL_VERSION,
      success: false,
      error,
      encoding: "json",
      capabilities: null
    })
    this.socket.end()
  }

  private accept(): void {
    const o = this.hub.options
    const h = o.handlers
    this.handshake = "done"
    this.send(MessageType.HandshakeResponse, {
      protocol_version: PROTOCOL_VERSION,
      success: true,
      error: null,
      encoding: "json",
      capabilities: {
        agent_id: o.info.agentId,
        name: o.info.name,
        version: o.info.version,
        supported_events: supportedEvents(h, true),
        features: {
          streaming_body: false,
          websocket: h.onWebSocketFrame !== undefined,
          guardrails: h.onGuardrailInspect !== undefined,
          config_push: h.onConfigure !== undefined,
          metrics_export: false,
          concurrent_requests: this.max,
          cancellation: true,
          flow_control: false,
          health_reporting: true,
          ...o.features
        },
        limits: {
          max_body_size: 1048576,
          max_concurrency: this.max,
          preferred_chunk_size: 65536,
          ...o.limits
        }
      }
    })
    this.flow()
  }

  private onEvent(frame: Frame): void {
    const decoded = decodeEvent(frame)
    if (Either.isLeft(decoded)) {
      // Answer what can be matched (the proxy would otherwise wait for its timeout); otherwise the stream is unusable.
      const cid = frame.payload.correlation_id
      if (typeof cid !== "string") return this.fatal(decoded.left)
      this.log("warning", decoded.left.message)
      return this.send(MessageType.AgentResponse, failureAnswer(this.handlers, frame.type, cid, Cause.fail(decoded.left)))
    }
    const ev = decoded.right
    const cid = ev.event.correlation_id ?? ""
    const handler = handlerFor(this.hub.options.handlers, ev)
    if (handler === undefined) return this.send(MessageType.AgentResponse, allow().toWire(cid))
    runHandler(this.handlers, frame.type, cid, handler, (wire) => this.answer(wire, frame.type, cid))
  }

  /** Sends an answer; one too large to encode is answered by the failure policy instead. */
  private answer(wire: unknown, type: number, cid: string): void {
    try {
      this.send(MessageType.AgentResponse, wire)
    } catch (e) {
      // Oversize answer (RangeError from the codec): still answer, safely.
      this.send(MessageType.AgentResponse, failureAnswer(this.handlers, type, cid, Cause.die(e)))
    }
  }

  startDrain(): void {
    if (this.handshake === "done") this.send(MessageType.HealthStatus, { state: HealthState.Draining })
  }

  /** The socket closed: nobody will read answers, stop the handlers. */
  closed(): void {
    this.backlog = []
    for (const set of this.running.values()) for (const f of set) f.unsafeInterruptAsFork(f.id())
  }
}
