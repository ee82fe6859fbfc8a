/**
 * The agents stage's service, as the pipeline and the WebSocket tunnels see it: one
 * `start*` per phase on plain callbacks (done once, or cancelled), the subscription
 * queries, the status, and the per-request state of a streamed body. Manager.ts builds it.
 */
import * as Context from "effect/Context"
import type { CircuitState } from "../upstream/Circuit.js"
import type { BodyChunk } from "../pipeline/Stage.js"
import type { AgentFilterRef } from "./AgentConfig.js"
import type {
  AgentAuditEntry,
  AgentDecision,
  AgentMetric,
  AgentPhase,
  ChallengePolicy,
  PhaseContext,
  WebSocketVerdict
} from "./AgentDecision.js"
import type { AgentRuntimeStatus } from "./AgentRuntime.js"
import type { AgentClientStatus, ClientEvent } from "./Channels.js"
import type { RequestCompleteEvent, RequestHeadersEvent, ResponseHeadersEvent, WebSocketFrameEvent } from "./Protocol.js"

export interface AgentManagerOptions {
  readonly challenge?: Partial<ChallengePolicy>
  /** Called for every agent outcome. Must not throw. */
  readonly onAudit?: (entry: AgentAuditEntry) => void
  /** Called for every agent call. Must not throw. */
  readonly onMetric?: (metric: AgentMetric) => void
  /** Connection lifecycle of every agent's pool. */
  readonly onClientEvent?: (event: ClientEvent) => void
  readonly onCircuitTransition?: (agent: string, from: CircuitState, to: CircuitState) => void
  /** Handshake `proxy_id` / `proxy_version`. */
  readonly proxyId?: string
  readonly proxyVersion?: string
}

export interface AgentStatus {
  readonly id: string
  readonly client: AgentClientStatus
  readonly runtime: AgentRuntimeStatus
}

export interface AgentManagerService {
  /**
   * RequestHeaders to the route's agents, in parallel: `done` is called exactly once, unless
   * the returned cancel (client gone) is called first. Code that runs as a fiber wraps a phase
   * with `callbackAsEffect` (pipeline/Stage.ts).
   */
  readonly startRequestHeaders: (
    filters: ReadonlyArray<AgentFilterRef>,
    event: RequestHeadersEvent,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ) => () => void
  /** The buffered request body, as one RequestBodyChunk, to each subscribed agent in turn (callbacks as `startRequestHeaders`). */
  readonly startRequestBody: (
    filters: ReadonlyArray<AgentFilterRef>,
    body: Buffer,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ) => () => void
  /** ResponseHeaders to each subscribed agent in turn. */
  readonly startResponseHeaders: (
    filters: ReadonlyArray<AgentFilterRef>,
    event: ResponseHeadersEvent,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ) => () => void
  /** The buffered response body, as one ResponseBodyChunk, to each subscribed agent in turn. */
  readonly startResponseBody: (
    filters: ReadonlyArray<AgentFilterRef>,
    body: Buffer,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ) => () => void
  /**
   * One chunk of the request body (`request_body`) or of the response body (`response_body`)
   * to the route's agents in stream mode for that body (`request-body-mode` /
   * `response-body-mode "stream"`) that have not decided yet, one after the other in filter
   * order (each with `chunk-timeout-ms`). An answer with `needs_more` leaves its agent deciding
   * (a non-allow is then not final); without it the agent has decided: a non-allow stops the
   * body, an allow settles it. The last chunk settles every agent. Past an agent's body cap, it
   * is resolved by failure mode (closed: 413; open: skipped). `done` once, unless the returned
   * cancel runs first.
   */
  readonly startBodyChunk: (
    filters: ReadonlyArray<AgentFilterRef>,
    phase: BodyPhase,
    chunk: BodyChunk,
    ctx: PhaseContext,
    stream: BodyStream,
    done: (decision: AgentDecision) => void
  ) => () => void
  /** Whether some of these agents get that body in stream mode. */
  readonly streamsBody: (filters: ReadonlyArray<AgentFilterRef>, phase: BodyPhase) => boolean
  /** Whether the agent of `ref` gets that body in stream mode (and subscribes to it). */
  readonly streamsBodyOf: (ref: AgentFilterRef, phase: BodyPhase) => boolean
  /** RequestComplete to subscribed agents, fire and forget (answers only audited). */
  readonly notifyComplete: (filters: ReadonlyArray<AgentFilterRef>, event: RequestCompleteEvent, ctx: PhaseContext) => void
  /**
   * One WebSocket frame to the agents subscribed to `websocket_frame`, one after the other in
   * filter order; the first that does not allow decides. A failure: failure mode closed closes
   * the tunnel (1011), open lets the frame pass (audited, counted). `done` once, unless the
   * returned cancel (tunnel gone) runs first.
   */
  readonly startWebSocketFrame: (
    filters: ReadonlyArray<AgentFilterRef>,
    event: WebSocketFrameEvent,
    ctx: PhaseContext,
    done: (verdict: WebSocketVerdict) => void
  ) => () => void
  /** Whether any of these agents subscribes to `phase` (lets the pipeline skip buffering). */
  readonly wants: (filters: ReadonlyArray<AgentFilterRef>, phase: AgentPhase) => boolean
  readonly status: () => ReadonlyArray<AgentStatus>
}

export type { BodyChunk }

/** The two body phases. */
export type BodyPhase = "request_body" | "response_body"

/** Per-request state of a streamed body: the filters whose agent has decided (or was skipped). */
export class BodyStream {
  readonly settled = new Set<AgentFilterRef>()
}

export class AgentManager extends Context.Tag("sentinel/agents/Manager")<AgentManager, AgentManagerService>() {}
