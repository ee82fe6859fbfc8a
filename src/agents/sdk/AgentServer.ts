/**
 * Agent SDK server: write an agent as Effect handlers, serve it on a Unix
 * socket speaking Sentinel's agent protocol v2 (schemas, framing and decoders
 * from `../Protocol.ts`, `../ProtocolFrames.ts`, `../ProtocolDecoders.ts`,
 * shared with the proxy's client).
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
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Cause from "effect/Cause"
import type * as Scope from "effect/Scope"
import type {
  AgentFeatures,
  AgentLimits,
  ConfigureEvent,
  GuardrailInspectEvent,
  RequestBodyChunkEvent,
  RequestCompleteEvent,
  RequestHeadersEvent,
  ResponseBodyChunkEvent,
  ResponseHeadersEvent,
  WebSocketFrameEvent
} from "../Protocol.js"
import { Connection } from "./AgentConnection.js"
import type { ConnectionHost, RunFork } from "./AgentConnection.js"
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

/** Server-wide state: live connections, in-flight count, drain. */
class Hub implements ConnectionHost {
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
