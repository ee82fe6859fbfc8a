/**
 * Agent SDK server over gRPC: the same handlers as `serveAgent` (Unix
 * socket), served as Sentinel's `AgentServiceV2` under both packages
 * (`zentinel.agent.v2` and `sentinel.agent.v2`), so the same agent works
 * with this proxy and with Sentinel/Zentinel over either transport.
 *
 * Per ProcessStream: the handshake first (its `config_json`, when not
 * empty, goes to `onConfigure`; a rejection refuses the handshake), then
 * events run concurrently (one fiber each, at most
 * `maxConcurrentPerConnection` per stream; reading pauses at the bound),
 * each answered with an AgentResponse carrying the event's correlation id.
 * Handlers get the events in the Unix-socket JSON shapes (Protocol.ts), so an
 * agent is written once. What gRPC cannot carry is dropped from answers:
 * body mutations, routing metadata, WebSocket decisions; `audit.custom`
 * values other than strings are sent as JSON text.
 *
 * Cancel interrupts that request's handlers (no answer), Ping gets a Pong,
 * ConfigureEvent goes to `onConfigure` (not answered: Sentinel's proxies do
 * not wait for one). Events before the handshake are ignored, as by
 * Sentinel's Rust SDK. Shutdown (scope close): HealthStatus DRAINING on
 * every stream, in-flight handlers get `drainTimeoutMs`, then the server
 * stops.
 */
import * as fs from "node:fs"
import * as grpc from "@grpc/grpc-js"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import { pbAgentResponseOf, proxyEventOf } from "../GrpcMapping.js"
import { encodeAllowAnswer } from "../GrpcWire.js"
import {
  type AgentToProxy,
  GRPC_MAX_MESSAGE_BYTES,
  GRPC_PACKAGES,
  type GrpcPackage,
  type PbAgentResponse,
  type ProxyToAgent,
  serviceDefinition
} from "../GrpcProto.js"
import { HealthState, PROTOCOL_VERSION, type ConfigureEvent, type ProxyEvent } from "../Protocol.js"
import { applyHandshakeConfig, type HandlerHost, handlerFor, runHandler, type RunFork, supportedEvents } from "./HandlerRun.js"
import type { ServeAgentOptions } from "./AgentServer.js"
import { allow } from "./Decision.js"

/** TLS of the agent's gRPC port: its certificate, and a CA to require client certificates (mTLS). */
export interface GrpcServeTls {
  /** PEM file of the agent's certificate (chain). */
  readonly cert: string
  /** PEM file of its key. */
  readonly key: string
  /** PEM file of the CA client certificates must chain to; set = client certificates required. */
  readonly clientCa?: string
}

export interface ServeGrpcAgentOptions<R = never>
  extends Omit<ServeAgentOptions<R>, "socketPath" | "socketMode" | "maxFrameLength"> {
  /** `host:port` to listen on (port 0 picks a free one). */
  readonly address: string
  readonly tls?: GrpcServeTls
  /** Packages the service is registered under. Default both. */
  readonly packages?: ReadonlyArray<GrpcPackage>
  /** Largest message each way. Default 10 MiB. */
  readonly maxMessageBytes?: number
}

/** The gRPC port cannot be served (bind failed, TLS files unreadable). */
export class AgentGrpcUnavailable extends Data.TaggedError("AgentGrpcUnavailable")<{
  readonly address: string
  readonly message: string
}> {}

export interface GrpcAgentServer {
  /** `host:port` actually bound. */
  readonly address: string
  readonly port: number
  /** ProcessStream calls open now. */
  readonly connections: () => number
  /** Handlers running now, over all streams. */
  readonly inFlight: () => number
}

type Call = grpc.ServerDuplexStream<ProxyToAgent, AgentToProxy>

class Hub {
  readonly streams = new Set<StreamHandler>()
  inFlight = 0
  draining = false
  onIdle: (() => void) | undefined
  constructor(readonly options: ServeGrpcAgentOptions<any>, readonly run: RunFork) {}
  handlerDone(): void {
    this.inFlight--
    if (this.inFlight === 0) this.onIdle?.()
  }
}

const parseConfig = (json: string | undefined): unknown => {
  if (json === undefined || json.trim() === "" || json.trim() === "{}" || json.trim() === "null") return null
  return JSON.parse(json)
}

/** One ProcessStream call. */
class StreamHandler {
  private state: "waiting" | "pending" | "done" | "refused" = "waiting"
  private queued: Array<ProxyToAgent> = []
  private readonly running = new Map<string, Set<Fiber.RuntimeFiber<unknown, unknown>>>()
  private count = 0
  private ended = false
  private handshakeConfig: string | undefined
  private readonly max: number

  private readonly handlers: HandlerHost<PbAgentResponse>

  constructor(private readonly hub: Hub, private readonly call: Call) {
    this.max = hub.options.maxConcurrentPerConnection ?? 100
    this.handlers = {
      run: hub.run,
      onError: hub.options.onError,
      running: this.running,
      wire: (d, cid) => pbAgentResponseOf(d.toWire(cid), cid),
      warn: (message, cause) => this.log(message, cause),
      started: () => {
        this.count++
        hub.inFlight++
        this.flow()
      },
      ended: (answer) => {
        this.count--
        // undefined: interrupted (Cancel, or the stream went away): nobody waits for an answer
        if (answer !== undefined) this.answer(answer)
        if (!this.ended) this.flow()
        hub.handlerDone()
      }
    }
    call.on("data", (m: ProxyToAgent) => this.onMessage(m))
    call.on("end", () => this.finish())
    call.on("cancelled", () => this.finish())
    call.on("error", () => this.finish())
  }

  private log(message: string, cause?: Cause.Cause<unknown>): void {
    this.hub.run(Effect.annotateLogs(Effect.logWarning(message, ...(cause ? [cause] : [])), "agent", this.hub.options.info.agentId))
  }

  private send(m: AgentToProxy): void {
    if (this.ended) return
    try {
      this.call.write(m)
    } catch (e) {
      this.log(`cannot write to the proxy: ${String(e)}`)
    }
  }

  /** An answer: an allow encoded by hand (GrpcWire.ts; the service passes bytes through), anything else by protobufjs. */
  private answer(r: PbAgentResponse): void {
    if (this.ended) return
    const bytes = encodeAllowAnswer(r)
    try {
      this.call.write((bytes ?? { response: r }) as AgentToProxy)
    } catch (e) {
      this.log(`cannot write to the proxy: ${String(e)}`)
    }
  }

  private flow(): void {
    const pause = this.state === "pending" || this.count >= this.max
    if (pause) this.call.pause()
    else if (this.call.isPaused()) this.call.resume()
  }

  private onMessage(m: ProxyToAgent): void {
    if (this.ended || this.state === "refused") return
    if (this.state === "pending") {
      this.queued.push(m)
      return
    }
    if (m.handshake) {
      if (this.state === "done") return this.log("ignoring a second handshake on a stream")
      return this.onHandshake(m)
    }
    if (this.state === "waiting") return // events before the handshake are ignored (as Sentinel's SDK)
    if (m.ping) {
      return this.send({ pong: { sequence: m.ping.sequence ?? 0, ping_timestamp_ms: m.ping.timestamp_ms ?? 0, timestamp_ms: Date.now() } })
    }
    if (m.cancel) {
      const fibers = this.running.get(m.cancel.correlation_id ?? "")
      if (fibers !== undefined) for (const f of fibers) f.unsafeInterruptAsFork(f.id())
      return
    }
    if (m.configure) {
      const c = m.configure
      // the initial push repeats the handshake's config: applied once
      if (c.is_initial === true && c.config_json === this.handshakeConfig) return
      return this.configure(c.config_json, c.config_version ?? null)
    }
    const ev = proxyEventOf(m)
    if (ev === undefined) return this.log(`ignoring ${m.message ?? "an unknown message"} from the proxy`)
    this.onEvent(ev)
  }

  private configure(json: string | undefined, version: string | null): void {
    const onConfigure = this.hub.options.handlers.onConfigure
    if (onConfigure === undefined) return
    let config: unknown
    try {
      config = parseConfig(json) ?? {}
    } catch (e) {
      return this.log(`configuration is not JSON: ${String(e)}`)
    }
    const event: ConfigureEvent = { correlation_id: null, config, config_version: version }
    this.hub.run(
      Effect.suspend(() => onConfigure(event)).pipe(
        Effect.catchAllCause((cause) => Effect.logWarning("agent configuration failed", cause))
      )
    )
  }

  private onHandshake(m: ProxyToAgent): void {
    const req = m.handshake!
    const versions = req.supported_versions ?? []
    if (!versions.includes(PROTOCOL_VERSION)) {
      return this.refuse(`unsupported protocol versions ${JSON.stringify(versions)}; this agent speaks ${PROTOCOL_VERSION}`)
    }
    this.handshakeConfig = req.config_json
    let config: unknown
    try {
      config = parseConfig(req.config_json)
    } catch (e) {
      return this.refuse(`config_json is not JSON: ${String(e)}`)
    }
    const onConfigure = this.hub.options.handlers.onConfigure
    if (config === null || onConfigure === undefined) return this.accept()
    this.state = "pending"
    this.flow()
    applyHandshakeConfig(this.hub.run, onConfigure, config, (refusal) => {
      if (this.ended) return
      if (refusal !== undefined) return this.refuse(refusal)
      this.accept()
      const queued = this.queued
      this.queued = []
      for (const q of queued) this.onMessage(q)
    })
  }

  private refuse(error: string): void {
    this.state = "refused"
    this.send({ handshake: { protocol_version: PROTOCOL_VERSION, success: false, error } })
    this.endCall()
  }

  private accept(): void {
    const o = this.hub.options
    const h = o.handlers
    this.state = "done"
    this.send({
      handshake: {
        protocol_version: PROTOCOL_VERSION,
        success: true,
        capabilities: {
          protocol_version: PROTOCOL_VERSION,
          agent_id: o.info.agentId,
          name: o.info.name,
          version: o.info.version,
          supported_events: supportedEvents(h, false),
          features: {
            streaming_body: false,
            websocket: false,
            guardrails: false,
            config_push: h.onConfigure !== undefined,
            metrics_export: false,
            concurrent_requests: this.max,
            cancellation: true,
            flow_control: false,
            health_reporting: true,
            ...o.features
          },
          limits: {
            max_body_size: GRPC_MAX_MESSAGE_BYTES,
            max_concurrency: this.max,
            preferred_chunk_size: 65536,
            ...o.limits
          },
          health_config: { report_interval_ms: 10_000, include_load_metrics: false, include_resource_metrics: false }
        }
      }
    })
    this.flow()
  }

  private onEvent(ev: ProxyEvent): void {
    const cid = ev.event.correlation_id ?? ""
    const handler = handlerFor(this.hub.options.handlers, ev)
    if (handler === undefined) return this.answer(pbAgentResponseOf(allow().toWire(cid), cid))
    runHandler(this.handlers, ev.type, cid, handler, (answer) => this.answer(answer))
  }

  startDrain(): void {
    if (this.state === "done") this.send({ health: { agent_id: this.hub.options.info.agentId, state: HealthState.Draining } })
  }

  private endCall(): void {
    if (this.ended) return
    try {
      this.call.end()
    } catch {
      // gone already
    }
    this.finish()
  }

  /** The stream is over: stop its handlers (nobody reads their answers). */
  finish(): void {
    if (this.ended) return
    this.ended = true
    this.hub.streams.delete(this)
    for (const set of this.running.values()) for (const f of set) f.unsafeInterruptAsFork(f.id())
  }

  close(): void {
    if (this.ended) return
    try {
      this.call.end()
    } catch {
      // gone already
    }
    this.finish()
  }
}

/** The service with answers that are already bytes (`encodeAllowAnswer`) written as they are. */
const passingBytes = (def: ReturnType<typeof serviceDefinition>): grpc.ServiceDefinition => {
  const out: Record<string, unknown> = {}
  for (const [name, m] of Object.entries(def)) {
    out[name] = { ...m, responseSerialize: (x: object) => (Buffer.isBuffer(x) ? x : m.responseSerialize(x)) }
  }
  return out as grpc.ServiceDefinition
}

const serverCredentials = (tls: GrpcServeTls | undefined): grpc.ServerCredentials => {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure()
  const ca = tls.clientCa === undefined ? null : fs.readFileSync(tls.clientCa)
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ private_key: fs.readFileSync(tls.key), cert_chain: fs.readFileSync(tls.cert) }],
    ca !== null
  )
}

/**
 * Serves `handlers` as a gRPC agent on `address` until the scope closes (then: DRAINING to
 * every stream, in-flight handlers get `drainTimeoutMs`, the server stops).
 */
export const serveGrpcAgent = <R = never>(
  options: ServeGrpcAgentOptions<R>
): Effect.Effect<GrpcAgentServer, AgentGrpcUnavailable, Scope.Scope | R> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<R>()
    const hub = new Hub(options, Runtime.runFork(runtime))
    const max = options.maxMessageBytes ?? GRPC_MAX_MESSAGE_BYTES
    const server = new grpc.Server({
      "grpc.max_receive_message_length": max,
      "grpc.max_send_message_length": max,
      // the proxy's keepalive pings are welcome, with or without calls
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.http2.min_ping_interval_without_data_ms": 1000
    } as grpc.ServerOptions)
    const impl = {
      ProcessStream: (call: Call) => {
        if (hub.draining) {
          call.end()
          return
        }
        hub.streams.add(new StreamHandler(hub, call))
      }
    }
    for (const pkg of options.packages ?? GRPC_PACKAGES) server.addService(passingBytes(serviceDefinition(pkg)), impl)
    const port = yield* Effect.acquireRelease(
      Effect.async<number, AgentGrpcUnavailable>((resume) => {
        let creds: grpc.ServerCredentials
        try {
          creds = serverCredentials(options.tls)
        } catch (e) {
          return resume(Effect.fail(new AgentGrpcUnavailable({ address: options.address, message: String(e) })))
        }
        server.bindAsync(options.address, creds, (err, port) => {
          if (err !== null) resume(Effect.fail(new AgentGrpcUnavailable({ address: options.address, message: err.message })))
          else resume(Effect.succeed(port))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          hub.draining = true
          for (const s of hub.streams) s.startDrain()
          let done = false
          const finish = () => {
            if (done) return
            done = true
            clearTimeout(timer)
            for (const s of [...hub.streams]) s.close()
            server.forceShutdown()
            resume(Effect.void)
          }
          const timer = setTimeout(finish, options.drainTimeoutMs ?? 2000)
          hub.onIdle = finish
          if (hub.inFlight === 0) finish()
        })
    )
    const host = options.address.slice(0, options.address.lastIndexOf(":"))
    yield* Effect.logDebug(`agent ${options.info.agentId} serving gRPC on ${host}:${port}`)
    return {
      address: `${host}:${port}`,
      port,
      connections: () => hub.streams.size,
      inFlight: () => hub.inFlight
    }
  })
