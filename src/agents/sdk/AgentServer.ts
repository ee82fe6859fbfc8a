/**
 * Agent SDK server: write an agent as Effect handlers, serve it on a Unix
 * socket speaking Sentinel's agent protocol v2 (framing and schemas from
 * `../Protocol.ts`, shared with the proxy's client).
 *
 * Per connection: handshake first, then events run concurrently (one fiber
 * per event, forked on the runtime captured when the server started), each
 * answered with the handler's decision, its correlation id always copied
 * into `audit.custom.correlation_id`. Ping is answered with Pong, Cancel
 * interrupts the handlers of that correlation id (and no answer is sent).
 * A frame-level protocol error closes only that connection.
 *
 * Failure policy: a handler that fails or dies is answered with `onError`,
 * by default `block(500)` with reason code `AGENT_HANDLER_FAILED` — an
 * agent that cannot decide does not let the request through (fail closed);
 * pass `onError: () => allow()` for a fail-open agent.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import { Cause, Data, Effect, Either, Exit, Fiber, Runtime } from "effect"
import type { Scope } from "effect"
import {
  AgentProtocolError,
  decodeCancel,
  decodeEvent,
  decodeHandshakeRequest,
  encodeFrame,
  EventNumber,
  HealthState,
  MAX_FRAME_LENGTH,
  MessageType,
  PROTOCOL_VERSION,
  FrameDecoder
} from "../Protocol.js"
import type {
  AgentFeatures,
  AgentLimits,
  ConfigureEvent,
  Frame,
  GuardrailInspectEvent,
  ProxyEvent,
  RequestBodyChunkEvent,
  RequestCompleteEvent,
  RequestHeadersEvent,
  ResponseBodyChunkEvent,
  ResponseHeadersEvent,
  WebSocketFrameEvent
} from "../Protocol.js"
import { allow, block } from "./Decision.js"
import type { AgentDecision } from "./Decision.js"

/** Identity reported in the handshake's capabilities. */
export interface AgentInfo {
  readonly agentId: string
  readonly name: string
  readonly version: string
}

/** A handler: the event in, a decision out. Failures and defects become `onError`. */
export type Handler<E, R> = (event: E) => Effect.Effect<AgentDecision, unknown, R>
/** Handlers whose answer does not matter may return nothing (answered with allow). */
export type NotifyHandler<E, R> = (event: E) => Effect.Effect<AgentDecision | void, unknown, R>

/** Events without a handler are answered with `allow()`. */
export interface AgentHandlers<R = never> {
  readonly onRequestHeaders?: Handler<RequestHeadersEvent, R>
  readonly onRequestBody?: Handler<RequestBodyChunkEvent, R>
  readonly onResponseHeaders?: Handler<ResponseHeadersEvent, R>
  readonly onResponseBody?: Handler<ResponseBodyChunkEvent, R>
  readonly onRequestComplete?: NotifyHandler<RequestCompleteEvent, R>
  readonly onWebSocketFrame?: Handler<WebSocketFrameEvent, R>
  readonly onGuardrailInspect?: Handler<GuardrailInspectEvent, R>
  /**
   * Configuration pushed by the proxy: in the handshake's `config` (when
   * not null; `correlation_id` is then null) and in Configure (0x17)
   * events. Return `allow()` (or nothing) to accept, a block to reject: a
   * rejected handshake config fails that connection's handshake.
   */
  readonly onConfigure?: NotifyHandler<ConfigureEvent, R>
}

/** What an `onError` policy learns about the failure. */
export interface ErrorContext {
  readonly type: number
  readonly correlationId: string
  readonly cause: Cause.Cause<unknown>
}

export interface ServeAgentOptions<R = never> {
  /** Unix socket path. A stale socket file there is removed; a live one (another agent answering) is an error. */
  readonly socketPath: string
  readonly info: AgentInfo
  readonly handlers: AgentHandlers<R>
  /** Answer for a failed or dead handler. Default: `block(500)` with reason code `AGENT_HANDLER_FAILED`. */
  readonly onError?: (context: ErrorContext) => AgentDecision
  /** Events handled at once per connection; reading pauses at the bound. Default 100 (also declared in the handshake). */
  readonly maxConcurrentPerConnection?: number
  /** Largest accepted frame (type byte + payload). Default 16 MiB (protocol maximum). */
  readonly maxFrameLength?: number
  /** On shutdown, how long in-flight handlers may still answer before connections are closed. Default 2000 ms. */
  readonly drainTimeoutMs?: number
  /** File mode applied to the socket after listening (e.g. 0o660). Default: left to the umask. */
  readonly socketMode?: number
  /** Overrides of the declared features (defaults derived from the handlers). */
  readonly features?: Partial<AgentFeatures>
  /** Overrides of the declared limits. */
  readonly limits?: Partial<AgentLimits>
}

/** The socket cannot be served: `in-use` (a live agent answers there), `not-a-socket`, or `listen` failed. */
export class AgentSocketUnavailable extends Data.TaggedError("AgentSocketUnavailable")<{
  readonly reason: "in-use" | "not-a-socket" | "listen"
  readonly socketPath: string
  readonly message: string
}> {}

/** A running agent server. */
export interface AgentServer {
  readonly socketPath: string
  /** Open proxy connections. */
  readonly connections: () => number
  /** Handlers running now, over all connections. */
  readonly inFlight: () => number
}

const defaultOnError = (): AgentDecision =>
  block(500, { body: "agent error" }).withAudit({ reasonCodes: ["AGENT_HANDLER_FAILED"] })

/**
 * Serves `handlers` on `socketPath` until the scope closes. Closing the
 * scope stops accepting, tells connected proxies the agent is draining
 * (HealthStatus 3), lets in-flight handlers answer for up to
 * `drainTimeoutMs`, then closes connections and removes the socket file.
 */
export const serveAgent = <R = never>(
  options: ServeAgentOptions<R>
): Effect.Effect<AgentServer, AgentSocketUnavailable, Scope.Scope | R> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<R>()
    yield* removeStaleSocket(options.socketPath)
    const hub = new Hub(options, Runtime.runFork(runtime))
    const server = Net.createServer((socket) => hub.accept(socket))
    yield* Effect.acquireRelease(listen(server, options), () => hub.shutdown(server))
    yield* Effect.logDebug(`agent ${options.info.agentId} listening on ${options.socketPath}`)
    return {
      socketPath: options.socketPath,
      connections: () => hub.connections.size,
      inFlight: () => hub.inFlight
    }
  })

const listen = (server: Net.Server, options: ServeAgentOptions<any>) =>
  Effect.async<void, AgentSocketUnavailable>((resume) => {
    const onError = (e: Error) =>
      resume(Effect.fail(new AgentSocketUnavailable({ reason: "listen", socketPath: options.socketPath, message: e.message })))
    server.once("error", onError)
    server.listen(options.socketPath, () => {
      server.off("error", onError)
      if (options.socketMode !== undefined) {
        try {
          Fs.chmodSync(options.socketPath, options.socketMode)
        } catch (e) {
          server.close()
          return onError(e as Error)
        }
      }
      resume(Effect.void)
    })
  })

/** Removes a socket file nobody answers on; refuses to touch a live socket or a non-socket file. */
const removeStaleSocket = (path: string) =>
  Effect.async<void, AgentSocketUnavailable>((resume) => {
    let stat: Fs.Stats
    try {
      stat = Fs.lstatSync(path)
    } catch {
      return resume(Effect.void)
    }
    if (!stat.isSocket()) {
      return resume(Effect.fail(new AgentSocketUnavailable({ reason: "not-a-socket", socketPath: path, message: `${path} exists and is not a socket` })))
    }
    const probe = Net.connect(path)
    probe.once("connect", () => {
      probe.destroy()
      resume(Effect.fail(new AgentSocketUnavailable({ reason: "in-use", socketPath: path, message: `an agent is already listening on ${path}` })))
    })
    probe.once("error", () => {
      try {
        Fs.unlinkSync(path)
      } catch {
        // already gone: fine
      }
      resume(Effect.void)
    })
  })

type RunFork = <A, E>(effect: Effect.Effect<A, E, any>) => Fiber.RuntimeFiber<A, E>

/** Server-wide state: live connections, in-flight count, drain. */
class Hub {
  readonly connections = new Set<Connection>()
  inFlight = 0
  draining = false
  private onIdle: (() => void) | undefined

  constructor(readonly options: ServeAgentOptions<any>, readonly run: RunFork) {}

  accept(socket: Net.Socket): void {
    if (this.draining) {
      socket.destroy()
      return
    }
    const c = new Connection(this, socket)
    this.connections.add(c)
    socket.once("close", () => {
      this.connections.delete(c)
      c.closed()
    })
  }

  handlerDone(): void {
    this.inFlight--
    if (this.inFlight === 0) this.onIdle?.()
  }

  shutdown(server: Net.Server): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      this.draining = true
      server.close()
      for (const c of this.connections) c.startDrain()
      let done = false
      const finish = () => {
        if (done) return
        done = true
        clearTimeout(timer)
        for (const c of this.connections) c.socket.destroy()
        try {
          if (Fs.lstatSync(this.options.socketPath).isSocket()) Fs.unlinkSync(this.options.socketPath)
        } catch {
          // gone already (node removes it on close on some platforms)
        }
        resume(Effect.void)
      }
      const timer = setTimeout(finish, this.options.drainTimeoutMs ?? 2000)
      this.onIdle = finish
      if (this.inFlight === 0) finish()
    })
  }
}

/** One proxy connection: handshake, then dispatch. Plain callbacks; one fiber per event. */
class Connection {
  private readonly decoder: FrameDecoder
  private handshake: "waiting" | "pending" | "done" = "waiting"
  /** Frames that arrived while an asynchronous handshake config was being applied. */
  private queued: Array<Frame> = []
  private readonly running = new Map<string, Set<Fiber.RuntimeFiber<unknown, unknown>>>()
  private count = 0
  private writeBlocked = false
  private readonly max: number

  constructor(private readonly hub: Hub, readonly socket: Net.Socket) {
    this.decoder = new FrameDecoder(hub.options.maxFrameLength ?? MAX_FRAME_LENGTH)
    this.max = hub.options.maxConcurrentPerConnection ?? 100
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
    const pause = this.handshake === "pending" || this.count >= this.max || this.writeBlocked
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
        const fibers = this.running.get(cancel.right.correlation_id)
        if (fibers !== undefined) for (const f of fibers) f.unsafeInterruptAsFork(f.id())
        return
      }
      case MessageType.HandshakeRequest:
        return this.fatal(new AgentProtocolError({ reason: "unexpected", message: "second HandshakeRequest on a connection" }))
      default:
        if (frame.type >= MessageType.RequestHeaders && frame.type <= MessageType.Configure) return this.onEvent(frame)
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
    const event: ConfigureEvent = { correlation_id: null, config: req.config, config_version: null }
    const fiber = this.hub.run(
      Effect.suspend(() => onConfigure(event)).pipe(
        Effect.map((d) => (d as AgentDecision | undefined) ?? allow()),
        Effect.catchAllCause((cause) => Effect.as(Effect.logWarning("agent configuration failed", cause), block(500, { body: Cause.pretty(cause) })))
      )
    )
    fiber.addObserver((exit) => {
      if (this.socket.destroyed) return
      if (Exit.isSuccess(exit) && exit.value.isAllow) this.accept()
      else {
        const d = Exit.isSuccess(exit) ? exit.value.decision : undefined
        const why = typeof d === "object" && "block" in d ? d.block.body : null
        return this.refuse(`configuration rejected${why ? `: ${why}` : ""}`)
      }
      const queued = this.queued
      this.queued = []
      for (const f of queued) {
        if (this.socket.destroyed) return
        this.onFrame(f)
      }
    })
  }

  private refuse(error: string): void {
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
    const events: Array<number> = []
    if (h.onRequestHeaders) events.push(EventNumber.RequestHeaders)
    if (h.onRequestBody) events.push(EventNumber.RequestBodyChunk)
    if (h.onResponseHeaders) events.push(EventNumber.ResponseHeaders)
    if (h.onResponseBody) events.push(EventNumber.ResponseBodyChunk)
    if (h.onRequestComplete) events.push(EventNumber.RequestComplete)
    if (h.onWebSocketFrame) events.push(EventNumber.WebSocketFrame)
    if (h.onGuardrailInspect) events.push(EventNumber.GuardrailInspect)
    if (events.length === 0) events.push(EventNumber.RequestHeaders)
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
        supported_events: events,
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
      const cause = Cause.fail(decoded.left)
      return this.send(MessageType.AgentResponse, this.errorAnswer(frame.type, cid, cause))
    }
    const ev = decoded.right
    const cid = ev.event.correlation_id ?? ""
    const handler = this.handlerFor(ev)
    if (handler === undefined) return this.send(MessageType.AgentResponse, allow().toWire(cid))
    const fiber = this.hub.run(
      Effect.suspend(handler).pipe(
        Effect.map((d) => ((d as AgentDecision | undefined) ?? allow()).toWire(cid)),
        Effect.catchAllCause((cause) =>
          Effect.as(
            Effect.logWarning(`agent handler for ${cid} failed`, cause),
            this.errorAnswer(frame.type, cid, cause)
          )
        )
      )
    ) as Fiber.RuntimeFiber<unknown, unknown>
    let set = this.running.get(cid)
    if (set === undefined) this.running.set(cid, (set = new Set()))
    set.add(fiber)
    this.count++
    this.hub.inFlight++
    this.flow()
    fiber.addObserver((exit) => {
      const s = this.running.get(cid)
      if (s !== undefined) {
        s.delete(fiber)
        if (s.size === 0) this.running.delete(cid)
      }
      this.count--
      // Interrupted (Cancel, or the connection went away): nobody waits for an answer.
      if (Exit.isSuccess(exit)) this.answer(frame.type, cid, exit.value)
      this.flow()
      this.hub.handlerDone()
    })
  }

  private answer(type: number, cid: string, wire: unknown): void {
    try {
      this.send(MessageType.AgentResponse, wire)
    } catch (e) {
      // Oversize answer (RangeError from the codec): still answer, safely.
      this.send(MessageType.AgentResponse, this.errorAnswer(type, cid, Cause.die(e)))
    }
  }

  private errorAnswer(type: number, correlationId: string, cause: Cause.Cause<unknown>): unknown {
    const onError = this.hub.options.onError ?? defaultOnError
    let d: AgentDecision
    try {
      d = onError({ type, correlationId, cause })
    } catch {
      d = defaultOnError()
    }
    return d.toWire(correlationId)
  }

  private handlerFor(ev: ProxyEvent): (() => Effect.Effect<AgentDecision | void, unknown, any>) | undefined {
    const h = this.hub.options.handlers
    switch (ev.type) {
      case MessageType.RequestHeaders:
        return h.onRequestHeaders && (() => h.onRequestHeaders!(ev.event))
      case MessageType.RequestBodyChunk:
        return h.onRequestBody && (() => h.onRequestBody!(ev.event))
      case MessageType.ResponseHeaders:
        return h.onResponseHeaders && (() => h.onResponseHeaders!(ev.event))
      case MessageType.ResponseBodyChunk:
        return h.onResponseBody && (() => h.onResponseBody!(ev.event))
      case MessageType.RequestComplete:
        return h.onRequestComplete && (() => h.onRequestComplete!(ev.event))
      case MessageType.WebSocketFrame:
        return h.onWebSocketFrame && (() => h.onWebSocketFrame!(ev.event))
      case MessageType.GuardrailInspect:
        return h.onGuardrailInspect && (() => h.onGuardrailInspect!(ev.event))
      case MessageType.Configure:
        return h.onConfigure && (() => h.onConfigure!(ev.event))
    }
  }

  startDrain(): void {
    if (this.handshake === "done") this.send(MessageType.HealthStatus, { state: HealthState.Draining })
  }

  /** The socket closed: nobody will read answers, stop the handlers. */
  closed(): void {
    for (const set of this.running.values()) for (const f of set) f.unsafeInterruptAsFork(f.id())
  }
}
