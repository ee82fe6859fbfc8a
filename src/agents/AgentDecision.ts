/**
 * What the agents stage hands the pipeline (continue with mutations, or
 * respond), what it reports (audit entries, metrics), and the pure mapping
 * from agent answers to those. No I/O here.
 */
import type { AgentEvent, FailureMode } from "./AgentConfig.js"
import { PROTECTED_HEADERS } from "./AgentHeaders.js"
import type { AgentFailure } from "./AgentRuntime.js"
import type { AgentResponse, Decision, HeaderOp } from "./Protocol.js"
import { errorBody } from "../pipeline/ErrorResponse.js"

export type AgentPhase = Extract<
  AgentEvent,
  "request_headers" | "request_body" | "response_headers" | "response_body" | "request_complete" | "websocket_frame"
>

/**
 * What the agents decided about one WebSocket frame: forward it as it came, discard it, or
 * close the tunnel with `code` both ways (`why`: an agent's `close`, or a failure under
 * failure mode closed, 1011).
 */
export type WebSocketVerdict =
  | { readonly _tag: "allow" }
  | { readonly _tag: "drop" }
  | { readonly _tag: "close"; readonly code: number; readonly reason: string; readonly why: "agent_close" | "agent_failure" }

export const WEBSOCKET_ALLOW: WebSocketVerdict = { _tag: "allow" }

/**
 * An answer to a `websocket_frame` event: its `websocket_decision` (null = allow, as Sentinel
 * reads it). A Sentinel agent that answers a frame with a plain `block` (and no
 * `websocket_decision`) gets the tunnel closed with 1008 (policy violation): never an allow.
 */
export const websocketVerdictOf = (response: AgentResponse): WebSocketVerdict => {
  const d = response.websocket_decision
  if (d === "allow") return WEBSOCKET_ALLOW
  if (d === "drop") return { _tag: "drop" }
  if (d !== null) {
    const code = d.close.code
    // a code an endpoint may not send (1005, 1006, out of range) becomes 1008
    const valid = (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
    return { _tag: "close", code: valid ? code : 1008, reason: d.close.reason, why: "agent_close" }
  }
  if (response.decision === "allow") return WEBSOCKET_ALLOW
  return { _tag: "close", code: 1008, reason: "blocked by agent", why: "agent_close" }
}

/** Go on; apply these mutations (in order) and, when set, use `body` instead of the original. */
export interface AgentContinue {
  readonly _tag: "Continue"
  readonly requestHeaders: ReadonlyArray<HeaderOp>
  readonly responseHeaders: ReadonlyArray<HeaderOp>
  readonly routingMetadata: Readonly<Record<string, string>>
  /** Body after mutations (body phases only); undefined = unchanged. */
  readonly body: Buffer | undefined
}

/** Answer the client with this instead of forwarding. */
export interface AgentRespond {
  readonly _tag: "Respond"
  readonly status: number
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: string
  readonly reason: "agent-block" | "agent-redirect" | "agent-challenge" | "agent-failure" | "agent-body-too-large"
  /** The agent whose outcome decided. */
  readonly agent: string
  /** The failure behind an `agent-failure` (for error mapping and logs). */
  readonly error?: AgentFailure
}

export type AgentDecision = AgentContinue | AgentRespond

/** What one agent call ended in (label of metrics and audit lines). */
export type AgentResult =
  | "allow"
  | "block"
  | "redirect"
  | "challenge"
  | "timeout"
  | "unavailable"
  | "rejected"
  | "protocol"
  | "overloaded"
  | "circuit-open"
  | "body-too-large"
  | "drop"
  | "close"

/** One audit line per agent outcome (every security decision is logged). */
export interface AgentAuditEntry {
  readonly traceId: string
  readonly routeId: string | undefined
  readonly agent: string
  readonly filterId: string | undefined
  readonly phase: AgentPhase
  readonly result: AgentResult
  /** What the proxy did with it. */
  readonly action: "continue" | "respond" | "fail-open" | "fail-closed" | "ignored"
  readonly status: number | undefined
  readonly ruleIds: ReadonlyArray<string>
  readonly tags: ReadonlyArray<string>
  readonly reasonCodes: ReadonlyArray<string>
  readonly confidence: number | undefined
  /** Error message for failures. */
  readonly reason: string | undefined
  readonly durationMs: number
  readonly clientIp?: string | undefined
  readonly method?: string | undefined
  readonly path?: string | undefined
}

export interface AgentMetric {
  readonly agent: string
  readonly phase: AgentPhase
  readonly result: AgentResult
  readonly durationMs: number
  /** True when the request went on because of fail-open. */
  readonly failOpen: boolean
}

/** What a challenge decision becomes (never an allow). */
export interface ChallengePolicy {
  /** Status answered. Default 403. */
  readonly status: number
  /** Header carrying the challenge type; the body carries type and params as JSON. Default "x-sentinel-challenge". */
  readonly header: string
}

/** Per-request facts the phases need. */
export interface PhaseContext {
  /** The request's trace id: the correlation id of every event. */
  readonly traceId: string
  readonly routeId?: string
  /** Route `policies { failure-mode }`, if set. */
  readonly routeFailureMode?: FailureMode
  /** Request facts copied into audit entries. */
  readonly clientIp?: string
  readonly method?: string
  readonly path?: string
}

export const resultOfFailure = (e: AgentFailure): AgentResult => {
  switch (e._tag) {
    case "AgentTimeout":
      return "timeout"
    case "AgentUnavailable":
      return "unavailable"
    case "AgentRejected":
      return "rejected"
    case "AgentProtocolError":
      return "protocol"
    case "AgentOverloaded":
      return "overloaded"
    case "AgentCircuitOpen":
      return "circuit-open"
  }
}

/** Printable ASCII only: the value goes into a header. */
const headerSafe = (s: string): string => s.replace(/[^\x20-\x7e]/g, "")

/**
 * The answer to the client for a non-allow decision: block -> its status,
 * body and headers (framing headers dropped); redirect -> its status with
 * Location; challenge -> the policy's status with the challenge type in a
 * header and type + params as a JSON body.
 */
export const respondFor = (
  decision: Exclude<Decision, "allow">,
  agent: string,
  challenge: ChallengePolicy
): AgentRespond => {
  if ("block" in decision) {
    const headers: Array<readonly [string, string]> = []
    let hasType = false
    for (const [name, value] of Object.entries(decision.block.headers ?? {})) {
      const lower = name.toLowerCase()
      if (PROTECTED_HEADERS.has(lower)) continue
      if (lower === "content-type") hasType = true
      headers.push([name, value])
    }
    const body = decision.block.body ?? ""
    if (body !== "" && !hasType) headers.push(["content-type", "text/plain; charset=utf-8"])
    return { _tag: "Respond", status: decision.block.status, headers, body, reason: "agent-block", agent }
  }
  if ("redirect" in decision) {
    return {
      _tag: "Respond",
      status: decision.redirect.status,
      headers: [["location", decision.redirect.url]],
      body: "",
      reason: "agent-redirect",
      agent
    }
  }
  return {
    _tag: "Respond",
    status: challenge.status,
    headers: [
      [challenge.header, headerSafe(decision.challenge.challenge_type)],
      ["content-type", "application/json"]
    ],
    body: JSON.stringify({ challenge: { type: decision.challenge.challenge_type, params: decision.challenge.params } }),
    reason: "agent-challenge",
    agent
  }
}

/** The result label of a decision. */
export const resultOfDecision = (decision: Decision): AgentResult =>
  decision === "allow" ? "allow" : "block" in decision ? "block" : "redirect" in decision ? "redirect" : "challenge"

/**
 * The answer to the client when an agent failed and its failure mode is closed: proxy-made,
 * so JSON with the trace id like every other error the proxy answers (`errorBody`).
 */
export const failureRespond = (
  agent: string,
  result: AgentResult,
  error: AgentFailure | undefined,
  traceId: string
): AgentRespond => {
  const status = result === "body-too-large" ? 413 : result === "timeout" ? 504 : 503
  const reason = result === "body-too-large" ? "agent-body-too-large" : "agent-failure"
  return {
    _tag: "Respond",
    status,
    headers: [["content-type", "application/json"]],
    body: errorBody(status, reason, traceId),
    reason,
    agent,
    ...(error ? { error } : {})
  }
}

/** Accumulated state of one phase. */
export interface Acc {
  requestHeaders: Array<HeaderOp>
  responseHeaders: Array<HeaderOp>
  routingMetadata: Record<string, string>
  body: Buffer | undefined
}

/** The outcome of one agent in one phase: go on (maybe with an answer to merge) or answer the client. */
export type Outcome =
  | { readonly respond: AgentRespond; readonly response?: undefined }
  | { readonly respond?: undefined; readonly response: AgentResponse | undefined }

export const CONTINUE: AgentContinue = {
  _tag: "Continue",
  requestHeaders: [],
  responseHeaders: [],
  routingMetadata: {},
  body: undefined
}

/** Folds an allowing answer into the phase's accumulated mutations. */
export const merge = (acc: Acc, response: AgentResponse | undefined, phase: AgentPhase): void => {
  if (response === undefined) return
  for (const op of response.request_headers) acc.requestHeaders.push(op)
  for (const op of response.response_headers) acc.responseHeaders.push(op)
  Object.assign(acc.routingMetadata, response.routing_metadata)
  const mutation =
    phase === "request_body"
      ? response.request_body_mutation
      : phase === "response_body"
        ? response.response_body_mutation
        : null
  // data: null keeps the chunk, "" drops it, base64 replaces it
  if (mutation !== null && mutation.data !== null) acc.body = Buffer.from(mutation.data, "base64")
}

export const toContinue = (acc: Acc): AgentContinue =>
  acc.requestHeaders.length === 0 &&
  acc.responseHeaders.length === 0 &&
  acc.body === undefined &&
  Object.keys(acc.routingMetadata).length === 0
    ? CONTINUE
    : { _tag: "Continue", ...acc }
