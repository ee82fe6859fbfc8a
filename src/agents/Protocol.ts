/**
 * Sentinel agent protocol v2 over Unix domain sockets: the message types and
 * the JSON shapes of every message, byte for byte as Sentinel's (its protocol
 * reference is the contract), and the error of a peer that breaks it.
 *
 * The frames that carry them: ProtocolFrames.ts; the decoders (`Either`, never
 * throwing): ProtocolDecoders.ts. Used by both sides: the proxy's Client and
 * the agent SDK.
 */
import * as Data from "effect/Data"
import * as Schema from "effect/Schema"

// ---------------------------------------------------------------------------
// Constants

/** Protocol version spoken (and the only one offered in the handshake). */
export const PROTOCOL_VERSION = 2

/** Largest legal `L` (type byte + payload): 16 MiB, as Sentinel's UDS transport. */
export const MAX_FRAME_LENGTH = 16 * 1024 * 1024

/** Type byte of every message. */
export const MessageType = {
  HandshakeRequest: 0x01,
  HandshakeResponse: 0x02,
  RequestHeaders: 0x10,
  RequestBodyChunk: 0x11,
  ResponseHeaders: 0x12,
  ResponseBodyChunk: 0x13,
  RequestComplete: 0x14,
  WebSocketFrame: 0x15,
  GuardrailInspect: 0x16,
  Configure: 0x17,
  AgentResponse: 0x20,
  HealthStatus: 0x30,
  MetricsReport: 0x31,
  ConfigUpdateRequest: 0x32,
  FlowControl: 0x33,
  Cancel: 0x40,
  Ping: 0x41,
  Pong: 0x42
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

const knownTypes: ReadonlySet<number> = new Set(Object.values(MessageType))

/** True when `code` is a type byte of the protocol. */
export const isMessageType = (code: number): code is MessageType => knownTypes.has(code)

/** Human name of a type byte (for logs and errors). */
export const messageTypeName = (code: number): string => {
  for (const [name, value] of Object.entries(MessageType)) if (value === code) return name
  return `0x${code.toString(16).padStart(2, "0")}`
}

/** Event numbers used in the handshake's `supported_events`. */
export const EventNumber = {
  Configure: 0,
  RequestHeaders: 1,
  RequestBodyChunk: 2,
  ResponseHeaders: 3,
  ResponseBodyChunk: 4,
  RequestComplete: 5,
  WebSocketFrame: 6,
  GuardrailInspect: 7
} as const

/** `reason` codes of a Cancel (0x40) message. */
export const CancelReason = {
  ClientDisconnect: 1,
  Timeout: 2,
  BlockedByAgent: 3,
  UpstreamError: 4,
  ProxyShutdown: 5,
  Manual: 6
} as const
export type CancelReason = (typeof CancelReason)[keyof typeof CancelReason]

/** HealthStatus `state` values. */
export const HealthState = { Healthy: 1, Degraded: 2, Draining: 3, Unhealthy: 4 } as const

/** FlowControl `action` values. */
export const FlowAction = { Pause: 1, Resume: 2 } as const

// ---------------------------------------------------------------------------
// Errors

/**
 * The peer broke the wire contract. Frame-level reasons (`zero-length`,
 * `oversize`, `unknown-type`, `bad-json`) poison the connection: drop it.
 * `malformed` is a well-framed message whose JSON does not fit its schema.
 */
export class AgentProtocolError extends Data.TaggedError("AgentProtocolError")<{
  readonly reason: "zero-length" | "oversize" | "unknown-type" | "bad-json" | "malformed" | "unexpected"
  readonly message: string
  readonly agent?: string
}> {}

// ---------------------------------------------------------------------------
// Shared shapes

const Int = Schema.Int
const NonNegInt = Schema.Int.pipe(Schema.nonNegative())
/** Header names are RFC 9110 tokens; anything else could not be applied safely. */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
export const HEADER_VALUE = /^[^\r\n\0]*$/
const HeaderName = Schema.String.pipe(Schema.pattern(HEADER_NAME))
/** Header values must not smuggle line breaks or NUL into the forwarded message. */
const HeaderValue = Schema.String.pipe(Schema.pattern(HEADER_VALUE))

/** `{ lower-case name: [values...] }` */
export const HeaderMap = Schema.Record({ key: Schema.String, value: Schema.Array(Schema.String) })
export type HeaderMap = typeof HeaderMap.Type

const optNullString = Schema.optional(Schema.NullOr(Schema.String))

// ---------------------------------------------------------------------------
// Handshake

export const HandshakeRequest = Schema.Struct({
  supported_versions: Schema.Array(Int),
  proxy_id: Schema.String,
  proxy_version: Schema.String,
  config: Schema.optionalWith(Schema.Unknown, { default: () => null }),
  supported_encodings: Schema.optional(Schema.Array(Schema.String))
})
export type HandshakeRequest = typeof HandshakeRequest.Type

export const AgentFeatures = Schema.Struct({
  streaming_body: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  websocket: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  guardrails: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  config_push: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  metrics_export: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  concurrent_requests: Schema.optionalWith(NonNegInt, { default: () => 100 }),
  cancellation: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  flow_control: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  health_reporting: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type AgentFeatures = typeof AgentFeatures.Type

export const AgentLimits = Schema.Struct({
  max_body_size: Schema.optionalWith(NonNegInt, { default: () => 1048576 }),
  max_concurrency: Schema.optionalWith(NonNegInt, { default: () => 100 }),
  preferred_chunk_size: Schema.optionalWith(NonNegInt, { default: () => 65536 })
})
export type AgentLimits = typeof AgentLimits.Type

export const AgentCapabilities = Schema.Struct({
  agent_id: Schema.String,
  name: Schema.optionalWith(Schema.String, { default: () => "" }),
  version: Schema.optionalWith(Schema.String, { default: () => "" }),
  supported_events: Schema.optionalWith(Schema.Array(Int), { default: () => [1] }),
  features: Schema.optionalWith(AgentFeatures, { default: () => Schema.decodeSync(AgentFeatures)({}) }),
  limits: Schema.optionalWith(AgentLimits, { default: () => Schema.decodeSync(AgentLimits)({}) })
})
export type AgentCapabilities = typeof AgentCapabilities.Type

/**
 * Lenient on what it may default (capabilities details, encoding) so agents
 * from other SDKs connect; strict on `protocol_version` and `success`.
 */
export const HandshakeResponse = Schema.Struct({
  protocol_version: Int,
  success: Schema.Boolean,
  error: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
  encoding: Schema.optionalWith(Schema.String, { default: () => "json" }),
  capabilities: Schema.optionalWith(Schema.NullOr(AgentCapabilities), { default: () => null })
})
export type HandshakeResponse = typeof HandshakeResponse.Type

// ---------------------------------------------------------------------------
// Events (proxy -> agent). Every event has a top-level correlation_id.

export const RequestMetadata = Schema.Struct({
  correlation_id: Schema.String,
  request_id: Schema.String,
  client_ip: Schema.String,
  client_port: NonNegInt,
  server_name: optNullString,
  protocol: Schema.String,
  tls_version: optNullString,
  tls_cipher: optNullString,
  route_id: optNullString,
  upstream_id: optNullString,
  /** RFC 3339 */
  timestamp: Schema.String,
  traceparent: optNullString
})
export type RequestMetadata = typeof RequestMetadata.Type

export const RequestHeadersEvent = Schema.Struct({
  correlation_id: Schema.String,
  metadata: RequestMetadata,
  method: Schema.String,
  /** path + query */
  uri: Schema.String,
  headers: HeaderMap
})
export type RequestHeadersEvent = typeof RequestHeadersEvent.Type

export const RequestBodyChunkEvent = Schema.Struct({
  correlation_id: Schema.String,
  /** base64 */
  data: Schema.String,
  is_last: Schema.Boolean,
  total_size: Schema.optional(Schema.NullOr(NonNegInt)),
  chunk_index: NonNegInt,
  bytes_received: NonNegInt
})
export type RequestBodyChunkEvent = typeof RequestBodyChunkEvent.Type

export const ResponseHeadersEvent = Schema.Struct({
  correlation_id: Schema.String,
  status: Int,
  headers: HeaderMap
})
export type ResponseHeadersEvent = typeof ResponseHeadersEvent.Type

export const ResponseBodyChunkEvent = Schema.Struct({
  correlation_id: Schema.String,
  /** base64 */
  data: Schema.String,
  is_last: Schema.Boolean,
  total_size: Schema.optional(Schema.NullOr(NonNegInt)),
  chunk_index: NonNegInt,
  bytes_sent: NonNegInt
})
export type ResponseBodyChunkEvent = typeof ResponseBodyChunkEvent.Type

export const RequestCompleteEvent = Schema.Struct({
  correlation_id: Schema.String,
  status: Int,
  duration_ms: Schema.Number,
  request_body_size: NonNegInt,
  response_body_size: NonNegInt,
  upstream_attempts: NonNegInt,
  error: optNullString
})
export type RequestCompleteEvent = typeof RequestCompleteEvent.Type

export const WebSocketFrameEvent = Schema.Struct({
  correlation_id: Schema.String,
  opcode: Schema.Union(Schema.String, Int),
  data: Schema.String,
  client_to_server: Schema.Boolean,
  frame_index: NonNegInt,
  fin: Schema.Boolean,
  route_id: optNullString,
  client_ip: Schema.String
})
export type WebSocketFrameEvent = typeof WebSocketFrameEvent.Type

export const GuardrailInspectEvent = Schema.Struct({ correlation_id: Schema.String }, {
  key: Schema.String,
  value: Schema.Unknown
})
export type GuardrailInspectEvent = typeof GuardrailInspectEvent.Type

export const ConfigureEvent = Schema.Struct({
  correlation_id: optNullString,
  config: Schema.Unknown,
  config_version: optNullString
})
export type ConfigureEvent = typeof ConfigureEvent.Type

export const CancelMessage = Schema.Struct({
  correlation_id: Schema.String,
  reason: Int,
  timestamp_ms: Schema.Number
})
export type CancelMessage = typeof CancelMessage.Type

export const PingMessage = Schema.Struct({
  sequence: Schema.Number,
  timestamp_ms: Schema.Number
})
export type PingMessage = typeof PingMessage.Type
/** A Pong echoes the Ping payload. */
export const PongMessage = PingMessage
export type PongMessage = PingMessage

export const HealthStatusMessage = Schema.Struct({ state: Int })
export type HealthStatusMessage = typeof HealthStatusMessage.Type

export const FlowControlMessage = Schema.Struct({ action: Int })
export type FlowControlMessage = typeof FlowControlMessage.Type

/** An event the proxy sends, tagged by its message type (what an agent dispatches on). */
export type ProxyEvent =
  | { readonly type: typeof MessageType.RequestHeaders; readonly event: RequestHeadersEvent }
  | { readonly type: typeof MessageType.RequestBodyChunk; readonly event: RequestBodyChunkEvent }
  | { readonly type: typeof MessageType.ResponseHeaders; readonly event: ResponseHeadersEvent }
  | { readonly type: typeof MessageType.ResponseBodyChunk; readonly event: ResponseBodyChunkEvent }
  | { readonly type: typeof MessageType.RequestComplete; readonly event: RequestCompleteEvent }
  | { readonly type: typeof MessageType.WebSocketFrame; readonly event: WebSocketFrameEvent }
  | { readonly type: typeof MessageType.GuardrailInspect; readonly event: GuardrailInspectEvent }
  | { readonly type: typeof MessageType.Configure; readonly event: ConfigureEvent }

// ---------------------------------------------------------------------------
// AgentResponse (0x20)

export const HeaderOp = Schema.Union(
  Schema.Struct({ set: Schema.Struct({ name: HeaderName, value: HeaderValue }) }),
  Schema.Struct({ add: Schema.Struct({ name: HeaderName, value: HeaderValue }) }),
  Schema.Struct({ remove: Schema.Struct({ name: HeaderName }) })
)
export type HeaderOp = typeof HeaderOp.Type

const HttpStatus = Schema.Int.pipe(Schema.between(100, 599))

export const BlockDecision = Schema.Struct({
  block: Schema.Struct({
    status: Schema.optionalWith(HttpStatus, { default: () => 403 }),
    body: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
    headers: Schema.optionalWith(
      Schema.NullOr(Schema.Record({ key: HeaderName, value: HeaderValue })),
      { default: () => null }
    )
  })
})
export const RedirectDecision = Schema.Struct({
  redirect: Schema.Struct({
    url: HeaderValue,
    status: Schema.optionalWith(Schema.Int.pipe(Schema.between(300, 399)), { default: () => 302 })
  })
})
export const ChallengeDecision = Schema.Struct({
  challenge: Schema.Struct({
    challenge_type: Schema.String,
    params: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), {
      default: () => ({})
    })
  })
})
export const Decision = Schema.Union(Schema.Literal("allow"), BlockDecision, RedirectDecision, ChallengeDecision)
export type Decision = typeof Decision.Type

export const AuditMetadata = Schema.Struct({
  tags: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [], nullable: true }),
  rule_ids: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [], nullable: true }),
  confidence: Schema.optional(Schema.NullOr(Schema.Number)),
  reason_codes: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [], nullable: true }),
  custom: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), {
    default: () => ({}),
    nullable: true
  })
})
export type AuditMetadata = typeof AuditMetadata.Type

export const BodyMutation = Schema.Struct({
  /** null keeps the chunk, "" drops it, base64 replaces it */
  data: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
  chunk_index: Schema.optionalWith(NonNegInt, { default: () => 0 })
})
export type BodyMutation = typeof BodyMutation.Type

export const WebSocketDecision = Schema.Union(
  Schema.Literal("allow", "drop"),
  Schema.Struct({ close: Schema.Struct({ code: Int, reason: Schema.optionalWith(Schema.String, { default: () => "" }) }) })
)
export type WebSocketDecision = typeof WebSocketDecision.Type

/** Only `version` and `decision` are required; the rest defaults. */
export const AgentResponse = Schema.Struct({
  version: Int,
  decision: Decision,
  request_headers: Schema.optionalWith(Schema.Array(HeaderOp), { default: () => [], nullable: true }),
  response_headers: Schema.optionalWith(Schema.Array(HeaderOp), { default: () => [], nullable: true }),
  routing_metadata: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), {
    default: () => ({}),
    nullable: true
  }),
  audit: Schema.optionalWith(AuditMetadata, {
    default: () => ({ tags: [], rule_ids: [], reason_codes: [], custom: {} }),
    nullable: true
  }),
  needs_more: Schema.optionalWith(Schema.Boolean, { default: () => false, nullable: true }),
  request_body_mutation: Schema.optionalWith(Schema.NullOr(BodyMutation), { default: () => null }),
  response_body_mutation: Schema.optionalWith(Schema.NullOr(BodyMutation), { default: () => null }),
  websocket_decision: Schema.optionalWith(Schema.NullOr(WebSocketDecision), { default: () => null })
})
/** Decoded (defaults filled in). */
export type AgentResponse = typeof AgentResponse.Type
/** As written on the wire (optional fields may be absent). */
export type AgentResponseWire = typeof AgentResponse.Encoded

// ---------------------------------------------------------------------------
// Builders

/** Builds the wire form of an allow answer (handy for agents and tests). */
export const allowResponse = (correlationId: string): AgentResponseWire => ({
  version: PROTOCOL_VERSION,
  decision: "allow",
  audit: { custom: { correlation_id: correlationId } }
})
