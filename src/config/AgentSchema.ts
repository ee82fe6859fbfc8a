/**
 * Typed model of `agents { agent "<id>" [type="waf"] { ... } }`. Fields and
 * units are those of src/agents/AgentConfig.ts `AgentConfig` (milliseconds,
 * as the KDL `-ms` keys), so a decoded agent is passed to the manager as is.
 */
import * as Schema from "effect/Schema"
import { CircuitBreakerConfig } from "./UpstreamSchema.js"
import { Count, defaulted, defaultedStruct, PositiveCount } from "./SchemaPrimitives.js"
import { GRPC_MAX_BODY_BYTES } from "../agents/AgentConfig.js"
export { GRPC_MAX_BODY_BYTES }
export type { AgentGrpcConfig as AgentGrpcSettings } from "../agents/AgentConfig.js"

export const agentEvents = [
  "request_headers", "request_body", "response_headers", "response_body", "request_complete", "websocket_frame", "guardrail"
] as const
export const AgentEvent = Schema.Literal(...agentEvents)
export type AgentEventName = (typeof agentEvents)[number]

/** Maps Sentinel's spellings (`request-headers`, `log`, ...) to an event name, or undefined. */
export const normaliseEvent = (name: string): AgentEventName | undefined => {
  const n = name.trim().toLowerCase().replace(/-/g, "_")
  switch (n) {
    case "request_headers":
    case "request_body":
    case "response_headers":
    case "response_body":
    case "request_complete":
    case "websocket_frame":
    case "guardrail":
      return n
    case "log":
      return "request_complete"
    case "guardrail_inspect":
      return "guardrail"
    default:
      return undefined
  }
}

export const FailureMode = Schema.Literal("open", "closed")
export type FailureMode = typeof FailureMode.Type

/** A JSON value (the agent's free-form `config { ... }` block). */
export const JsonValue: Schema.Schema<unknown> = Schema.Unknown

const MiB = 1024 * 1024

/** `grpc address="..." { tls; tls-insecure; ca-cert; client-cert; client-key }` (AgentConfig.ts `AgentGrpcTls`). */
export const AgentGrpcTls = Schema.Struct({
  /** `tls-insecure`: TLS without verifying the agent's certificate. Default #false. */
  insecure: defaulted(Schema.Boolean, () => false),
  /** `ca-cert`: PEM file of the CA(s) the agent's certificate must chain to. Default: the system roots. */
  caCert: Schema.optional(Schema.NonEmptyString),
  /** `client-cert`: PEM file of the proxy's certificate (mTLS, with `client-key`). Default none. */
  clientCert: Schema.optional(Schema.NonEmptyString),
  /** `client-key`: PEM file of the proxy's key. Default none. */
  clientKey: Schema.optional(Schema.NonEmptyString)
})

/** `grpc "http://host:port"` (AgentConfig.ts `AgentGrpcConfig`). */
export const AgentGrpcConfig = Schema.Struct({
  /** `http://host:port` (plaintext h2c) or `https://host:port` (TLS). Required. */
  address: Schema.String.pipe(Schema.pattern(/^https?:\/\/(\[[^\]]+\]|[^/:@]+):\d+$/i)),
  /** TLS settings; TLS is on when present or the address is https://. Default none. */
  tls: Schema.optional(AgentGrpcTls)
})

const AgentConfigFields = Schema.Struct({
  /** `agent "<id>"`. Required, unique. */
  id: Schema.NonEmptyString,
  /** `type="waf"|"auth"|...` on the node: a label for logs and metrics. Default none. */
  type: Schema.optional(Schema.NonEmptyString),
  /** `unix-socket "<path>"` (or `unix-socket path="..."`). Exactly one of this and `grpc`. */
  socketPath: Schema.optional(Schema.NonEmptyString),
  /** `grpc "http://host:port"` (or `grpc address="..." { ... }`). Exactly one of this and `unix-socket`. */
  grpc: Schema.optional(AgentGrpcConfig),
  /** `events ...`: events the agent receives (hyphen spellings and `log` accepted). Default request_headers. */
  events: defaulted(Schema.Array(AgentEvent).pipe(Schema.minItems(1)), () => ["request_headers" as const]),
  /** `timeout-ms`: deadline of one call, including the wait for a slot. Default 1000. */
  timeoutMs: defaulted(PositiveCount, () => 1000),
  /** `failure-mode`: used when neither the filter nor the route sets one. Default "open" (as Sentinel). */
  failureMode: defaulted(FailureMode, () => "open" as const),
  /** `max-concurrent-calls`: calls in flight at once. Default 100. */
  maxConcurrentCalls: defaulted(PositiveCount, () => 100),
  /** `max-queued-calls`: calls waiting for a slot; beyond it calls fail at once. Default 100. */
  maxQueuedCalls: defaulted(Count, () => 100),
  /** `circuit-breaker { ... }`. Default 5 failures open, 2 successes close, 30 s open, 1 probe. */
  circuitBreaker: defaultedStruct(CircuitBreakerConfig),
  /** `max-request-body-bytes`: largest request body sent for inspection. Default 1 MiB. */
  maxRequestBodyBytes: defaulted(Count, () => MiB),
  /** `max-response-body-bytes`: largest response body sent for inspection. Default 1 MiB. */
  maxResponseBodyBytes: defaulted(Count, () => MiB),
  /** `request-body-mode`: "buffer" (whole, once read up to the cap) or "stream" (chunk by chunk). Default "buffer". */
  requestBodyMode: defaulted(Schema.Literal("buffer", "stream"), () => "buffer" as const),
  /** `response-body-mode`: "buffer" (held up to the cap, sent whole) or "stream" (chunk by chunk, each passed on once answered). Default "buffer". */
  responseBodyMode: defaulted(Schema.Literal("buffer", "stream"), () => "buffer" as const),
  /** `chunk-timeout-ms`: deadline of each chunk's answer in stream mode. Default 5000. */
  chunkTimeoutMs: defaulted(PositiveCount, () => 5000),
  /** `pool-size`: connections kept to the agent. Default 4. */
  poolSize: defaulted(PositiveCount, () => 4),
  /** `config { ... }`: free-form settings, as JSON, sent in the handshake. Default null. */
  config: defaulted(JsonValue, () => null),
  /** `connect-timeout-ms`: connect + handshake deadline. Default 5000. */
  connectTimeoutMs: defaulted(PositiveCount, () => 5000),
  /** `ping-interval-ms`: 0 = no pings. Default 10000. */
  pingIntervalMs: defaulted(Count, () => 10_000),
  /** `reconnect-base-ms`: first reconnect delay (doubling). Default 100. */
  reconnectBaseMs: defaulted(PositiveCount, () => 100),
  /** `reconnect-max-ms`: cap of the reconnect delay. Default 5000. */
  reconnectMaxMs: defaulted(PositiveCount, () => 5000)
})

export const AgentConfig = AgentConfigFields.pipe(
  Schema.filter((a) =>
    (a.socketPath === undefined) === (a.grpc === undefined)
      ? `agent "${a.id}" needs exactly one transport: \`unix-socket\` or \`grpc\``
      : a.grpc !== undefined && a.events.some((e) => e === "websocket_frame" || e === "guardrail")
        ? `agent "${a.id}": a gRPC agent cannot receive websocket_frame or guardrail events`
        : a.grpc !== undefined && Math.max(a.maxRequestBodyBytes, a.maxResponseBodyBytes) > GRPC_MAX_BODY_BYTES
          ? `agent "${a.id}": a gRPC agent's body caps must be at most ${GRPC_MAX_BODY_BYTES} bytes`
          : true
  )
)
export type AgentConfig = typeof AgentConfig.Type
