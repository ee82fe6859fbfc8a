/**
 * Typed configuration of one agent (`agents { agent "<id>" { ... } }`) and of
 * the filters that attach agents to routes. The KDL decoder maps onto these;
 * nothing here reads KDL.
 */
import { type CircuitConfig, defaultCircuitConfig } from "../upstream/Circuit.js"

/** Events an agent can subscribe to (`events ...`; hyphen spellings and `log` are normalised). */
export type AgentEvent =
  | "request_headers"
  | "request_body"
  | "response_headers"
  | "response_body"
  | "request_complete"
  | "websocket_frame"
  | "guardrail"

/** How a body reaches an agent: whole once read (`buffer`) or chunk by chunk as it arrives (`stream`). */
export type BodyMode = "buffer" | "stream"

/** `closed`: an agent failure answers 503 (504 on timeout) and never forwards. `open`: forward, audit, count. */
export type FailureMode = "open" | "closed"

/** TLS to a gRPC agent (`grpc address="..." { tls; tls-insecure; ca-cert; client-cert; client-key }`). */
export interface AgentGrpcTls {
  /** `tls-insecure`: TLS without verifying the agent's certificate. Default false. */
  readonly insecure: boolean
  /** `ca-cert "<pem>"`: CA(s) the agent's certificate must chain to. Default: the system roots. */
  readonly caCert?: string
  /** `client-cert "<pem>"` / `client-key "<pem>"`: the proxy's certificate (mTLS). Default none. */
  readonly clientCert?: string
  readonly clientKey?: string
}

/** `grpc "http://host:port"` or `grpc address="..." { ... }`: the agent serves AgentServiceV2 there. */
export interface AgentGrpcConfig {
  /** `http://host:port` (plaintext h2c) or `https://host:port` (TLS). */
  readonly address: string
  /** TLS settings; TLS is on when this is set or the address is `https://`. Default none. */
  readonly tls?: AgentGrpcTls
}

export interface AgentConfig {
  /** `agent "<id>"` */
  readonly id: string
  /** `unix-socket "<path>"`. Exactly one of `socketPath` and `grpc`. */
  readonly socketPath?: string
  /** `grpc ...`. Exactly one of `socketPath` and `grpc`. */
  readonly grpc?: AgentGrpcConfig
  /** `events ...`: which events the agent receives. Default `["request_headers"]`. */
  readonly events: ReadonlyArray<AgentEvent>
  /** `timeout-ms`: deadline of one call, including the wait for a concurrency slot. Default 1000. */
  readonly timeoutMs: number
  /** `failure-mode`: used when neither the filter nor the route sets one. Default "open" (as Sentinel). */
  readonly failureMode: FailureMode
  /** `max-concurrent-calls`: calls in flight to this agent at once. Default 100. */
  readonly maxConcurrentCalls: number
  /**
   * Calls allowed to wait for a slot when `maxConcurrentCalls` are in flight; past it
   * calls fail at once with `AgentOverloaded`. A waiting call also fails when its
   * `timeoutMs` runs out. Not in Sentinel's KDL (its semaphore waits unbounded). Default 100.
   */
  readonly maxQueuedCalls: number
  /** `circuit-breaker { ... }`. Default 5 failures open, 2 successes close, 30 s open, 1 probe. */
  readonly circuitBreaker: CircuitConfig
  /** `max-request-body-bytes`: largest request body sent for inspection. Default 1 MiB. */
  readonly maxRequestBodyBytes: number
  /** `max-response-body-bytes`: largest response body sent for inspection. Default 1 MiB. */
  readonly maxResponseBodyBytes: number
  /**
   * `request-body-mode`: "buffer" (the body read up to the cap, then sent whole as one chunk)
   * or "stream" (each chunk sent as it arrives; the agent may decide before the end with
   * `needs_more: false`). Default "buffer".
   */
  readonly requestBodyMode: BodyMode
  /**
   * `response-body-mode`: "buffer" (the response held up to the cap, then sent whole as one
   * chunk) or "stream" (each chunk sent as it arrives from the upstream, and passed on to the
   * client once the stream-mode agents have answered it; the agent may decide before the end).
   * Default "buffer".
   */
  readonly responseBodyMode: BodyMode
  /** `chunk-timeout-ms`: deadline of each chunk's answer in stream mode. Default 5000. */
  readonly chunkTimeoutMs: number
  /** Connections kept to the agent (not in Sentinel's KDL; its pool uses 4). Default 4. */
  readonly poolSize: number
  /** `config { ... }` as JSON, sent in the handshake. Default null. */
  readonly config: unknown
  /** Connect + handshake deadline per connection, ms. Default 5000. */
  readonly connectTimeoutMs: number
  /** Ping period per connection, ms (0 = no pings). Default 10000. */
  readonly pingIntervalMs: number
  /** Reconnect backoff: first delay and cap, ms. Default 100 / 5000. */
  readonly reconnectBaseMs: number
  readonly reconnectMaxMs: number
}

export const MiB = 1024 * 1024

/** Sentinel's `MAX_MESSAGE_SIZE` for gRPC, applied to both directions here (grpc's default is 4 MiB). */
export const GRPC_MAX_MESSAGE_BYTES = 10 * MiB
/** Room a body chunk's envelope needs beside its data (correlation id, counters). */
export const GRPC_ENVELOPE_BYTES = 64 * 1024
/** Largest body (`max-request-body-bytes` / `max-response-body-bytes`) a gRPC agent can be sent in one message. */
export const GRPC_MAX_BODY_BYTES = GRPC_MAX_MESSAGE_BYTES - GRPC_ENVELOPE_BYTES

/** Failure mode of an agent filter that does not say (`filter { type "agent"; failure-mode ... }`). */
export const DEFAULT_FILTER_FAILURE_MODE: FailureMode = "closed"

export const agentConfigDefaults: Omit<AgentConfig, "id" | "socketPath" | "grpc"> = {
  events: ["request_headers"],
  timeoutMs: 1000,
  failureMode: "open",
  maxConcurrentCalls: 100,
  maxQueuedCalls: 100,
  circuitBreaker: defaultCircuitConfig,
  maxRequestBodyBytes: MiB,
  maxResponseBodyBytes: MiB,
  requestBodyMode: "buffer",
  responseBodyMode: "buffer",
  chunkTimeoutMs: 5000,
  poolSize: 4,
  config: null,
  connectTimeoutMs: 5000,
  pingIntervalMs: 10_000,
  reconnectBaseMs: 100,
  reconnectMaxMs: 5000
}

/** A full config from the required fields plus any overrides. */
export const agentConfig = (
  fields: Pick<AgentConfig, "id"> & Partial<Omit<AgentConfig, "circuitBreaker">> & {
    readonly circuitBreaker?: Partial<CircuitConfig>
  }
): AgentConfig => ({
  ...agentConfigDefaults,
  ...fields,
  circuitBreaker: { ...defaultCircuitConfig, ...fields.circuitBreaker }
})

/** A route's reference to an agent, through a `type "agent"` filter, in filter order. */
export interface AgentFilterRef {
  /** The agent id (`agent "<id>"` inside the filter). */
  readonly agent: string
  /** The filter's `failure-mode`, when it sets one. */
  readonly failureMode?: FailureMode
  /** The filter id, for audit lines. */
  readonly filterId?: string
  /** The filter's `timeout-ms`: deadline of this filter's calls instead of the agent's. */
  readonly timeoutMs?: number
  /**
   * The filter's `inspect-body`: `false` sends this filter's agent no body (request or
   * response) whatever its `events`; `true` sends it the request body even when its
   * `events` leave `request_body` out. Unset: the agent's `events` decide.
   */
  readonly inspectBody?: boolean
  /** The filter's `max-body-bytes`: body cap of this filter's calls instead of the agent's. */
  readonly maxBodyBytes?: number
}

/** Whether the agent of `ref` gets `phase` (its `events`, adjusted by the filter's `inspect-body`). */
export const filterSubscribes = (ref: AgentFilterRef, events: ReadonlyArray<AgentEvent>, phase: AgentEvent): boolean => {
  if (phase === "request_body" || phase === "response_body") {
    if (ref.inspectBody === false) return false
    if (ref.inspectBody === true && phase === "request_body") return true
  }
  return events.includes(phase)
}

/** The body cap of `ref`'s calls in a body phase (the filter's `max-body-bytes`, else the agent's). */
export const filterBodyCap = (
  ref: AgentFilterRef,
  agent: Pick<AgentConfig, "maxRequestBodyBytes" | "maxResponseBodyBytes">,
  phase: "request_body" | "response_body"
): number => ref.maxBodyBytes ?? (phase === "request_body" ? agent.maxRequestBodyBytes : agent.maxResponseBodyBytes)

/** The transport of an agent, for logs and errors: its socket path or gRPC address. */
export const agentEndpoint = (a: Pick<AgentConfig, "socketPath" | "grpc">): string =>
  a.grpc !== undefined ? a.grpc.address : a.socketPath ?? "(no transport)"

/** filter `failure-mode`, else route `policies { failure-mode }`, else the agent's. */
export const resolveFailureMode = (
  filterMode: FailureMode | undefined,
  routeMode: FailureMode | undefined,
  agentMode: FailureMode
): FailureMode => filterMode ?? routeMode ?? agentMode
