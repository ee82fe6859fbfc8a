/**
 * The agents stage: runs a route's agents for each phase and turns their
 * answers (or failures) into one decision the pipeline acts on.
 *
 * - request headers: the route's agents run in parallel; the first non-allow
 *   outcome in filter order wins (later calls are cancelled as soon as the
 *   winner is known); header mutations of allowing agents apply in filter order.
 * - request body, response headers, response body: agents run one after the
 *   other in filter order, each seeing the body as mutated by the ones before.
 * - request complete (`log`): sent after the response; answers are ignored.
 * - a failure (timeout, no connection, garbage, overload, open circuit) is
 *   resolved by failure mode (filter, else route, else agent): `closed`
 *   answers 503 (504 on timeout), `open` continues; both are audited and
 *   counted. A malformed answer is a failure, never an allow.
 * - decisions: block -> its status/body/headers; redirect -> status +
 *   Location; challenge -> 403 (configurable) with the challenge in a header.
 *
 * Each phase runs on plain callbacks (`start*`: done once, or cancelled), no fiber
 * (DESIGN.md §2).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { CircuitState } from "../upstream/Circuit.js"
import type { BodyChunk } from "../pipeline/Stage.js"
import {
  type AgentConfig,
  type AgentFilterRef,
  type FailureMode,
  filterBodyCap,
  filterSubscribes,
  resolveFailureMode
} from "./AgentConfig.js"
import {
  type Acc,
  type AgentAuditEntry,
  type AgentDecision,
  type AgentMetric,
  type AgentPhase,
  type AgentResult,
  type ChallengePolicy,
  WEBSOCKET_ALLOW,
  type WebSocketVerdict,
  websocketVerdictOf,
  CONTINUE,
  failureRespond,
  merge,
  type Outcome,
  type PhaseContext,
  resultOfDecision,
  resultOfFailure,
  respondFor,
  toContinue
} from "./AgentDecision.js"
import { type AgentFailure, AgentRuntime, type AgentRuntimeStatus } from "./AgentRuntime.js"
import { type AgentClient, type AgentClientStatus, AgentUnavailable, type CancelCall, type ClientEvent } from "./Channels.js"
import { make as makeClient } from "./Client.js"
import { make as makeGrpcClient } from "./GrpcTransport.js"
import {
  type AgentResponse,
  CancelReason,
  MessageType,
  type RequestCompleteEvent,
  type RequestHeadersEvent,
  type ResponseHeadersEvent,
  type WebSocketFrameEvent
} from "./Protocol.js"

// ---------------------------------------------------------------------------
// Service

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

// ---------------------------------------------------------------------------
// Implementation

const EMPTY = Buffer.alloc(0)

const typeOf: Record<AgentPhase, MessageType> = {
  request_headers: MessageType.RequestHeaders,
  request_body: MessageType.RequestBodyChunk,
  response_headers: MessageType.ResponseHeaders,
  response_body: MessageType.ResponseBodyChunk,
  request_complete: MessageType.RequestComplete,
  websocket_frame: MessageType.WebSocketFrame
}



class Manager implements AgentManagerService {
  private readonly challenge: ChallengePolicy

  constructor(
    private readonly runtimes: ReadonlyMap<string, AgentRuntime>,
    private readonly options: AgentManagerOptions
  ) {
    this.challenge = { status: 403, header: "x-sentinel-challenge", ...options.challenge }
  }

  // -- outcome of one call --------------------------------------------------

  private emit(entry: AgentAuditEntry, failOpen: boolean): void {
    try {
      this.options.onMetric?.({
        agent: entry.agent,
        phase: entry.phase,
        result: entry.result,
        durationMs: entry.durationMs,
        failOpen
      })
      this.options.onAudit?.(entry)
    } catch {
      // observers must not break the request
    }
  }

  private entry(
    ref: AgentFilterRef,
    phase: AgentPhase,
    ctx: PhaseContext,
    started: number,
    result: AgentResult,
    action: AgentAuditEntry["action"],
    status: number | undefined,
    response: AgentResponse | undefined,
    reason: string | undefined
  ): AgentAuditEntry {
    return {
      traceId: ctx.traceId,
      routeId: ctx.routeId,
      agent: ref.agent,
      filterId: ref.filterId,
      phase,
      result,
      action,
      status,
      ruleIds: response?.audit.rule_ids ?? [],
      tags: response?.audit.tags ?? [],
      reasonCodes: response?.audit.reason_codes ?? [],
      confidence: response?.audit.confidence ?? undefined,
      reason,
      durationMs: performance.now() - started,
      clientIp: ctx.clientIp,
      method: ctx.method,
      path: ctx.path
    }
  }

  private failureMode(ref: AgentFilterRef, ctx: PhaseContext, rt: AgentRuntime | undefined): FailureMode {
    return resolveFailureMode(ref.failureMode, ctx.routeFailureMode, rt?.config.failureMode ?? "closed")
  }

  /** A failed call (or a body over the cap) resolved by failure mode. */
  private failed(
    ref: AgentFilterRef,
    phase: AgentPhase,
    ctx: PhaseContext,
    rt: AgentRuntime | undefined,
    started: number,
    result: AgentResult,
    error: AgentFailure | undefined,
    message: string
  ): Outcome {
    const mode = this.failureMode(ref, ctx, rt)
    if (phase === "request_complete") {
      this.emit(this.entry(ref, phase, ctx, started, result, "ignored", undefined, undefined, message), false)
      return { response: undefined }
    }
    if (mode === "open") {
      this.emit(this.entry(ref, phase, ctx, started, result, "fail-open", undefined, undefined, message), true)
      return { response: undefined }
    }
    const respond = failureRespond(ref.agent, result, error, ctx.traceId)
    this.emit(this.entry(ref, phase, ctx, started, result, "fail-closed", respond.status, undefined, message), false)
    return { respond }
  }

  /** An answer turned into an outcome. */
  private answered(
    ref: AgentFilterRef,
    phase: AgentPhase,
    ctx: PhaseContext,
    started: number,
    response: AgentResponse,
    streaming: boolean
  ): Outcome {
    const decision = response.decision
    if (streaming && response.needs_more && decision !== "allow") {
      // not final yet (stream mode): the agent wants more of the body before it decides
      this.emit(this.entry(ref, phase, ctx, started, "allow", "continue", undefined, response, "needs more"), false)
      return { response }
    }
    if (phase === "request_complete") {
      this.emit(this.entry(ref, phase, ctx, started, resultOfDecision(decision), "ignored", undefined, response, undefined), false)
      return { response: undefined }
    }
    if (decision === "allow") {
      this.emit(this.entry(ref, phase, ctx, started, "allow", "continue", undefined, response, undefined), false)
      return { response }
    }
    const respond = respondFor(decision, ref.agent, this.challenge)
    const result = resultOfDecision(decision)
    this.emit(this.entry(ref, phase, ctx, started, result, "respond", respond.status, response, undefined), false)
    return { respond }
  }

  /**
   * Starts one agent call of `phase` and reports its outcome; `undefined`
   * from `event` means "skip" (outcome already reported by it).
   */
  private one(
    ref: AgentFilterRef,
    phase: AgentPhase,
    ctx: PhaseContext,
    event: object & { readonly correlation_id: string },
    done: (outcome: Outcome) => void,
    streaming: false | "chunk" | "last" = false
  ): CancelCall {
    const started = performance.now()
    const rt = this.runtimes.get(ref.agent)
    if (rt === undefined) {
      const error = new AgentUnavailable({
        agent: ref.agent,
        reason: "not-connected",
        message: `agent "${ref.agent}" is not configured`
      })
      done(this.failed(ref, phase, ctx, rt, started, "unavailable", error, error.message))
      return noop
    }
    return rt.invoke(
      typeOf[phase],
      event,
      (result) =>
        done(
          Either.isRight(result)
            ? this.answered(ref, phase, ctx, started, result.right, streaming === "chunk")
            : this.failed(ref, phase, ctx, rt, started, resultOfFailure(result.left), result.left, result.left.message)
        ),
      streaming !== false ? rt.config.chunkTimeoutMs : ref.timeoutMs
    )
  }

  private subscribed(ref: AgentFilterRef, phase: AgentPhase): boolean {
    const rt = this.runtimes.get(ref.agent)
    // an unknown agent is "subscribed" so that its absence is resolved by failure mode, not ignored
    return rt === undefined ? phase === "request_headers" : filterSubscribes(ref, rt.config.events, phase)
  }

  readonly wants = (filters: ReadonlyArray<AgentFilterRef>, phase: AgentPhase): boolean =>
    filters.some((f) => this.subscribed(f, phase))

  /** An agent in stream mode for this body. */
  private streams(ref: AgentFilterRef, phase: BodyPhase): boolean {
    const c = this.runtimes.get(ref.agent)?.config
    return (phase === "request_body" ? c?.requestBodyMode : c?.responseBodyMode) === "stream"
  }

  readonly streamsBodyOf = (ref: AgentFilterRef, phase: BodyPhase): boolean => this.streams(ref, phase) && this.subscribed(ref, phase)

  readonly streamsBody = (filters: ReadonlyArray<AgentFilterRef>, phase: BodyPhase): boolean =>
    filters.some((f) => this.streamsBodyOf(f, phase))

  readonly startBodyChunk = (
    filters: ReadonlyArray<AgentFilterRef>,
    phase: BodyPhase,
    chunk: BodyChunk,
    ctx: PhaseContext,
    stream: BodyStream,
    done: (decision: AgentDecision) => void
  ): (() => void) => {
    const acc: Acc = { requestHeaders: [], responseHeaders: [], routingMetadata: {}, body: undefined }
    let i = 0
    let finished = false
    let current: CancelCall | undefined
    let data: string | undefined
    const finish = (decision: AgentDecision) => {
      finished = true
      done(decision)
    }
    const next = (): void => {
      while (!finished) {
        if (i >= filters.length) return finish(toContinue(acc))
        const ref = filters[i++]
        if (stream.settled.has(ref) || !this.streamsBodyOf(ref, phase)) continue
        const rt = this.runtimes.get(ref.agent)!
        const cap = filterBodyCap(ref, rt.config, phase)
        if (chunk.bytes > cap) {
          stream.settled.add(ref)
          const o = this.failed(ref, phase, ctx, rt, performance.now(), "body-too-large", undefined,
            `body of more than ${cap} bytes exceeds the agent's limit of ${cap}`)
          if (o.respond) return finish(o.respond)
          continue
        }
        data ??= chunk.data.toString("base64")
        const event = bodyChunkEvent(phase, ctx.traceId, data, chunk.isLast, chunk.total ?? null, chunk.index, chunk.bytes)
        current = this.one(ref, phase, ctx, event, (o) => {
          if (finished) return
          if (o.respond) {
            stream.settled.add(ref)
            return finish(o.respond)
          }
          // body mutations do not apply in stream mode (the body is not held chunk by chunk)
          if (o.response !== undefined) merge(acc, { ...o.response, request_body_mutation: null, response_body_mutation: null }, phase)
          if (chunk.isLast || o.response === undefined || !o.response.needs_more) stream.settled.add(ref)
          next()
        }, chunk.isLast ? "last" : "chunk")
        return
      }
    }
    next()
    return () => {
      if (finished) return
      finished = true
      current?.(CancelReason.ClientDisconnect)
    }
  }

  // -- phases ---------------------------------------------------------------

  readonly startRequestHeaders = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: RequestHeadersEvent,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => {
    const refs = filters.filter((f) => this.subscribed(f, "request_headers"))
    const n = refs.length
    if (n === 0) {
      done(CONTINUE)
      return noop
    }
    const outcomes: Array<Outcome | undefined> = new Array(n)
    const cancels: Array<CancelCall | undefined> = new Array(n)
    let finished = false
    const finish = (decision: AgentDecision, reason: CancelReason) => {
      finished = true
      for (let i = 0; i < n; i++) if (outcomes[i] === undefined) cancels[i]?.(reason)
      done(decision)
    }
    const evaluate = () => {
      const acc: Acc = { requestHeaders: [], responseHeaders: [], routingMetadata: {}, body: undefined }
      for (let i = 0; i < n; i++) {
        const o = outcomes[i]
        if (o === undefined) return // an earlier agent (in filter order) may still decide
        if (o.respond) return finish(o.respond, CancelReason.BlockedByAgent)
        merge(acc, o.response, "request_headers")
      }
      finish(toContinue(acc), CancelReason.Manual)
    }
    for (let i = 0; i < n && !finished; i++) {
      cancels[i] = this.one(refs[i], "request_headers", ctx, event, (o) => {
        if (finished) return
        outcomes[i] = o
        evaluate()
      })
    }
    return () => {
      if (finished) return
      finished = true
      for (let i = 0; i < n; i++) if (outcomes[i] === undefined) cancels[i]?.(CancelReason.ClientDisconnect)
    }
  }

  /**
   * Agents of `phase` one after the other, in filter order: `done` once, unless the returned
   * cancel runs first.
   */
  private startSequential(
    filters: ReadonlyArray<AgentFilterRef>,
    phase: "request_body" | "response_headers" | "response_body",
    ctx: PhaseContext,
    headersEvent: ResponseHeadersEvent | undefined,
    body: Buffer | undefined,
    done: (decision: AgentDecision) => void
  ): () => void {
    const acc: Acc = { requestHeaders: [], responseHeaders: [], routingMetadata: {}, body: undefined }
    let i = 0
    let finished = false
    let current: CancelCall | undefined
    const finish = (decision: AgentDecision) => {
      finished = true
      done(decision)
    }
    const onOutcome = (o: Outcome) => {
      if (finished) return
      if (o.respond) return finish(o.respond)
      merge(acc, o.response, phase)
      next()
    }
    const next = (): void => {
      while (!finished) {
        if (i >= filters.length) return finish(toContinue(acc))
        const ref = filters[i++]
        if (!this.subscribed(ref, phase)) continue
        // stream-mode agents had the body chunk by chunk
        if (phase !== "response_headers" && this.streams(ref, phase)) continue
        if (phase === "response_headers") {
          current = this.one(ref, phase, ctx, headersEvent!, onOutcome)
          return
        }
        const rt = this.runtimes.get(ref.agent)!
        const data = acc.body ?? body ?? EMPTY
        const cap = filterBodyCap(ref, rt.config, phase)
        if (data.length > cap) {
          const o = this.failed(
            ref,
            phase,
            ctx,
            rt,
            performance.now(),
            "body-too-large",
            undefined,
            `body of ${data.length} bytes exceeds the agent's limit of ${cap}`
          )
          if (o.respond) return finish(o.respond)
          continue
        }
        const event = bodyChunkEvent(phase, ctx.traceId, data.toString("base64"), true, data.length, 0, data.length)
        current = this.one(ref, phase, ctx, event, onOutcome)
        return
      }
    }
    next()
    return () => {
      if (finished) return
      finished = true
      current?.(CancelReason.ClientDisconnect)
    }
  }

  readonly startRequestBody = (
    filters: ReadonlyArray<AgentFilterRef>,
    body: Buffer,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => this.startSequential(filters, "request_body", ctx, undefined, body, done)

  readonly startResponseHeaders = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: ResponseHeadersEvent,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => this.startSequential(filters, "response_headers", ctx, event, undefined, done)

  readonly startResponseBody = (
    filters: ReadonlyArray<AgentFilterRef>,
    body: Buffer,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => this.startSequential(filters, "response_body", ctx, undefined, body, done)

  readonly startWebSocketFrame = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: WebSocketFrameEvent,
    ctx: PhaseContext,
    done: (verdict: WebSocketVerdict) => void
  ): (() => void) => {
    let i = 0
    let finished = false
    let current: CancelCall | undefined
    const next = (): void => {
      while (!finished) {
        if (i >= filters.length) {
          finished = true
          return done(WEBSOCKET_ALLOW)
        }
        const ref = filters[i++]
        if (!this.subscribed(ref, "websocket_frame")) continue
        current = this.oneFrame(ref, ctx, event, (v) => {
          if (finished) return
          if (v._tag !== "allow") {
            finished = true
            return done(v)
          }
          next()
        })
        return
      }
    }
    next()
    return () => {
      if (finished) return
      finished = true
      current?.(CancelReason.ClientDisconnect)
    }
  }

  /** One agent's look at one frame, resolved by failure mode when the call fails. */
  private oneFrame(
    ref: AgentFilterRef,
    ctx: PhaseContext,
    event: WebSocketFrameEvent,
    done: (verdict: WebSocketVerdict) => void
  ): CancelCall {
    const started = performance.now()
    const rt = this.runtimes.get(ref.agent)
    const failed = (result: AgentResult, message: string): void => {
      if (this.failureMode(ref, ctx, rt) === "open") {
        this.emit(this.entry(ref, "websocket_frame", ctx, started, result, "fail-open", undefined, undefined, message), true)
        return done(WEBSOCKET_ALLOW)
      }
      this.emit(this.entry(ref, "websocket_frame", ctx, started, result, "fail-closed", undefined, undefined, message), false)
      done({ _tag: "close", code: 1011, reason: "agent failure", why: "agent_failure" })
    }
    if (rt === undefined) {
      failed("unavailable", `agent "${ref.agent}" is not configured`)
      return noop
    }
    return rt.invoke(MessageType.WebSocketFrame, event, (result) => {
      if (Either.isLeft(result)) return failed(resultOfFailure(result.left), result.left.message)
      const v = websocketVerdictOf(result.right)
      const label: AgentResult = v._tag === "allow" ? "allow" : v._tag
      const reason = v._tag === "close" ? `close ${v.code}${v.reason !== "" ? `: ${v.reason}` : ""}` : undefined
      this.emit(this.entry(ref, "websocket_frame", ctx, started, label, v._tag === "allow" ? "continue" : "respond", undefined, result.right, reason), false)
      done(v)
    })
  }

  readonly notifyComplete = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: RequestCompleteEvent,
    ctx: PhaseContext
  ): void => {
    for (const ref of filters) {
      if (this.runtimes.get(ref.agent)?.config.events.includes("request_complete")) {
        this.one(ref, "request_complete", ctx, event, () => {})
      }
    }
  }

  readonly status = (): ReadonlyArray<AgentStatus> =>
    [...this.runtimes.values()].map((rt) => ({ id: rt.config.id, client: rt.client.status(), runtime: rt.status() }))
}


const noop: CancelCall = () => {}

/** A RequestBodyChunk (`bytes_received`) or ResponseBodyChunk (`bytes_sent`) event. */
const bodyChunkEvent = (
  phase: BodyPhase,
  correlationId: string,
  data: string,
  isLast: boolean,
  total: number | null,
  index: number,
  bytes: number
) =>
  phase === "request_body"
    ? { correlation_id: correlationId, data, is_last: isLast, total_size: total, chunk_index: index, bytes_received: bytes }
    : { correlation_id: correlationId, data, is_last: isLast, total_size: total, chunk_index: index, bytes_sent: bytes }

/** The agent's transport: a Unix-socket pool (Client.ts) or a gRPC channel (GrpcTransport.ts), one interface. */
const makeTransport = (a: AgentConfig, options: AgentManagerOptions): Effect.Effect<AgentClient, never, Scope.Scope> => {
  const common = {
    id: a.id,
    connectTimeoutMs: a.connectTimeoutMs,
    reconnectBaseMs: a.reconnectBaseMs,
    reconnectMaxMs: a.reconnectMaxMs,
    handshakeConfig: a.config,
    ...(options.proxyId ? { proxyId: options.proxyId } : {}),
    ...(options.proxyVersion ? { proxyVersion: options.proxyVersion } : {}),
    ...(options.onClientEvent ? { onEvent: options.onClientEvent } : {})
  }
  if (a.grpc !== undefined) {
    return makeGrpcClient({
      ...common,
      address: a.grpc.address,
      ...(a.grpc.tls !== undefined ? { tls: a.grpc.tls } : {}),
      streams: a.poolSize,
      keepaliveMs: a.pingIntervalMs
    })
  }
  return makeClient({ ...common, socketPath: a.socketPath ?? "", poolSize: a.poolSize, pingIntervalMs: a.pingIntervalMs })
}


/**
 * Opens one connection pool per agent (connections are attempted at once;
 * missing sockets are retried in the background). Closing the scope fails
 * queued calls and closes every socket and timer.
 */
export const make = (
  agents: ReadonlyArray<AgentConfig>,
  options: AgentManagerOptions = {}
): Effect.Effect<AgentManagerService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runtimes = new Map<string, AgentRuntime>()
    for (const a of agents) {
      const client = yield* makeTransport(a, options)
      runtimes.set(
        a.id,
        new AgentRuntime(a, client, (from, to) => options.onCircuitTransition?.(a.id, from, to))
      )
    }
    // runs before the clients' finalizers (reverse order): queued calls fail, then sockets close
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const rt of runtimes.values()) rt.close()
      })
    )
    return new Manager(runtimes, options)
  })

export const layer = (agents: ReadonlyArray<AgentConfig>, options: AgentManagerOptions = {}) =>
  Layer.scoped(AgentManager, make(agents, options))
