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

/** `closed`: an agent failure answers 503 (504 on timeout) and never forwards. `open`: forward, audit, count. */
export type FailureMode = "open" | "closed"

export interface AgentConfig {
  /** `agent "<id>"` */
  readonly id: string
  /** `unix-socket "<path>"` */
  readonly socketPath: string
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

/** Failure mode of an agent filter that does not say (`filter { type "agent"; failure-mode ... }`). */
export const DEFAULT_FILTER_FAILURE_MODE: FailureMode = "closed"

export const agentConfigDefaults: Omit<AgentConfig, "id" | "socketPath"> = {
  events: ["request_headers"],
  timeoutMs: 1000,
  failureMode: "open",
  maxConcurrentCalls: 100,
  maxQueuedCalls: 100,
  circuitBreaker: defaultCircuitConfig,
  maxRequestBodyBytes: MiB,
  maxResponseBodyBytes: MiB,
  poolSize: 4,
  config: null,
  connectTimeoutMs: 5000,
  pingIntervalMs: 10_000,
  reconnectBaseMs: 100,
  reconnectMaxMs: 5000
}

/** A full config from the required fields plus any overrides. */
export const agentConfig = (
  fields: Pick<AgentConfig, "id" | "socketPath"> & Partial<Omit<AgentConfig, "circuitBreaker">> & {
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
}

/** filter `failure-mode`, else route `policies { failure-mode }`, else the agent's. */
export const resolveFailureMode = (
  filterMode: FailureMode | undefined,
  routeMode: FailureMode | undefined,
  agentMode: FailureMode
): FailureMode => filterMode ?? routeMode ?? agentMode
