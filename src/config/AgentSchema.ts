/**
 * Typed model of `agents { agent "<id>" [type="waf"] { ... } }`. Fields and
 * units are those of src/agents/AgentConfig.ts `AgentConfig` (milliseconds,
 * as the KDL `-ms` keys), so a decoded agent is passed to the manager as is.
 */
import { Schema } from "effect"
import { CircuitBreakerConfig } from "./UpstreamSchema.js"
import { Count, defaulted, defaultedStruct, PositiveCount } from "./SchemaPrimitives.js"

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

export const AgentConfig = Schema.Struct({
  /** `agent "<id>"`. Required, unique. */
  id: Schema.NonEmptyString,
  /** `type="waf"|"auth"|...` on the node: a label for logs and metrics. Default none. */
  type: Schema.optional(Schema.NonEmptyString),
  /** `unix-socket "<path>"` (or `unix-socket path="..."`). Required. */
  socketPath: Schema.NonEmptyString,
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
export type AgentConfig = typeof AgentConfig.Type
