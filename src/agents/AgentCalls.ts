/**
 * One agent call of the agents stage and its outcome (Manager.ts fans the calls out over a
 * route's agents): the agent's runtime invoked for a phase, its answer or failure turned into
 * an Outcome (decision; failure mode filter > route > agent), each audited and counted; and
 * which agents take which phase (subscriptions, stream mode).
 */
import * as Either from "effect/Either"
import {
  type AgentFilterRef,
  type FailureMode,
  filterSubscribes,
  resolveFailureMode
} from "./AgentConfig.js"
import {
  type AgentAuditEntry,
  type AgentPhase,
  type AgentResult,
  type ChallengePolicy,
  failureRespond,
  type Outcome,
  type PhaseContext,
  resultOfDecision,
  resultOfFailure,
  respondFor,
  WEBSOCKET_ALLOW,
  type WebSocketVerdict,
  websocketVerdictOf
} from "./AgentDecision.js"
import type { AgentManagerOptions, BodyPhase } from "./AgentManager.js"
import type { AgentFailure, AgentRuntime } from "./AgentRuntime.js"
import { AgentUnavailable, type CancelCall } from "./Channels.js"
import { type AgentResponse, MessageType, type WebSocketFrameEvent } from "./Protocol.js"

const typeOf: Record<AgentPhase, MessageType> = {
  request_headers: MessageType.RequestHeaders,
  request_body: MessageType.RequestBodyChunk,
  response_headers: MessageType.ResponseHeaders,
  response_body: MessageType.ResponseBodyChunk,
  request_complete: MessageType.RequestComplete,
  websocket_frame: MessageType.WebSocketFrame
}

export const noop: CancelCall = () => {}

/** The calls of one manager (its agents' runtimes); the phases are the subclass's (Manager). */
export class AgentCalls {
  private readonly challenge: ChallengePolicy

  constructor(
    protected readonly runtimes: ReadonlyMap<string, AgentRuntime>,
    private readonly options: AgentManagerOptions
  ) {
    this.challenge = { status: 403, header: "x-sentinel-challenge", ...options.challenge }
  }

  // -- outcome of one call --------------------------------------------------

  protected emit(entry: AgentAuditEntry, failOpen: boolean): void {
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

  protected entry(
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

  protected failureMode(ref: AgentFilterRef, ctx: PhaseContext, rt: AgentRuntime | undefined): FailureMode {
    return resolveFailureMode(ref.failureMode, ctx.routeFailureMode, rt?.config.failureMode ?? "closed")
  }

  /** A failed call (or a body over the cap) resolved by failure mode. */
  protected failed(
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
  protected one(
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

  protected subscribed(ref: AgentFilterRef, phase: AgentPhase): boolean {
    const rt = this.runtimes.get(ref.agent)
    // an unknown agent is "subscribed" so that its absence is resolved by failure mode, not ignored
    return rt === undefined ? phase === "request_headers" : filterSubscribes(ref, rt.config.events, phase)
  }

  readonly wants = (filters: ReadonlyArray<AgentFilterRef>, phase: AgentPhase): boolean =>
    filters.some((f) => this.subscribed(f, phase))

  /** An agent in stream mode for this body. */
  protected streams(ref: AgentFilterRef, phase: BodyPhase): boolean {
    const c = this.runtimes.get(ref.agent)?.config
    return (phase === "request_body" ? c?.requestBodyMode : c?.responseBodyMode) === "stream"
  }

  readonly streamsBodyOf = (ref: AgentFilterRef, phase: BodyPhase): boolean => this.streams(ref, phase) && this.subscribed(ref, phase)

  readonly streamsBody = (filters: ReadonlyArray<AgentFilterRef>, phase: BodyPhase): boolean =>
    filters.some((f) => this.streamsBodyOf(f, phase))

  /** One agent's look at one frame, resolved by failure mode when the call fails. */
  protected oneFrame(
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
}
