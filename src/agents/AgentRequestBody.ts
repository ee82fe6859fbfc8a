/**
 * The request-body phase of an agent route (AgentsExtension.ts compiles the route, then builds
 * this once per route): the body read up to the largest agent cap and sent to each subscribed
 * agent in turn, or, with `request-body-mode "stream"` agents, each chunk to them as it
 * arrives (AgentBodyStream.ts); a body past the route's limit answers 413. Plain callbacks.
 */
import { requestMayHaveBody } from "../http/Response.js"
import { type BodyRead, readBodyUpTo } from "../pipeline/BodyRead.js"
import { errorAnswer, errorBody } from "../pipeline/ErrorResponse.js"
import { BodyTooLarge, RequestRejected, type ProxyError } from "../pipeline/Errors.js"
import { withContentLength } from "../pipeline/Headers.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import type { Answer, StageStep } from "../pipeline/Stage.js"
import { bodyAfter, closeAfterAnswer } from "../pipeline/UpstreamBody.js"
import { streamBody } from "./AgentBodyStream.js"
import type { AgentFilterRef } from "./AgentConfig.js"
import type { AgentDecision, PhaseContext } from "./AgentDecision.js"
import { type AgentManagerService, BodyStream } from "./AgentManager.js"
import type { HeaderOp } from "./Protocol.js"

/** Per-request state of agent routes (response-header mutations decided in the request phase, body size). */
export interface RequestState {
  responseOps: Array<HeaderOp>
  requestBodySize: number
}

/** What the request-body phase takes from its route, computed when the route is compiled. */
export interface RequestBodyRoute {
  readonly refs: ReadonlyArray<AgentFilterRef>
  readonly manager: AgentManagerService
  readonly maxBodySize: number
  readonly requestCap: number
  readonly streamsBody: boolean
  readonly streamRefs: ReadonlySet<AgentFilterRef>
  readonly bufferedRequestCap: number
  readonly applyRequest: (ctx: RequestContext, d: AgentDecision) => StageStep
  readonly stateOf: (ctx: RequestContext) => RequestState
}

const noop = (): void => {}

/** A proxy-made answer of the body phase: JSON with the trace id, like every other error. */
const errorAnswerFor = (ctx: RequestContext, error: ProxyError): Answer => {
  const { status, reason, headers } = errorAnswer(error)
  return { status, headers: headers.flat(), body: errorBody(status, reason, ctx.traceId), contentType: "application/json", reason }
}

/** The route's request-body phase. */
export const requestBodyPhase = (route: RequestBodyRoute) => {
  const { refs, manager, maxBodySize, requestCap, streamsBody, streamRefs, bufferedRequestCap, applyRequest, stateOf } = route
  /**
   * The request-body phase on callbacks: read up to the cap, then the subscribed agents in
   * turn. `done` once, unless the returned cancel (client gone) runs first.
   */
  const startBodyPhase = (ctx: RequestContext, pc: PhaseContext, done: (step: StageStep) => void): (() => void) => {
    if (!requestMayHaveBody(ctx.req)) {
      done(undefined)
      return noop
    }
    let cancel: () => void
    const afterRead = (read: BodyRead) => {
      if (read._tag === "Failed") return done(errorAnswerFor(ctx, new RequestRejected({ status: 400, reason: "request_body_read_failed" })))
      if (read.data.length > maxBodySize) {
        ctx.bodyTooLarge = true
        closeAfterAnswer(ctx)
        return done(errorAnswerFor(ctx, new BodyTooLarge()))
      }
      // Over the largest cap, every agent sees cap + 1 bytes: the Manager resolves each by failure mode.
      cancel = manager.startRequestBody(refs, read.data, pc, (d) => {
        const step = applyRequest(ctx, d)
        if (step !== undefined) {
          // the rest of the body stays unread: the connection cannot carry another request
          if (!read.complete) closeAfterAnswer(ctx)
          return done(step)
        }
        if (read.complete) {
          const body = d._tag === "Continue" && d.body !== undefined ? d.body : read.data
          stateOf(ctx).requestBodySize = read.data.length
          ctx.upstreamBody = body
          ctx.upstreamHeaders = withContentLength(ctx.upstreamHeaders, body.length)
        } else {
          ctx.upstreamBody = bodyAfter(ctx, read.data, maxBodySize)
        }
        done(undefined)
      })
    }
    if (!streamsBody) {
      cancel = readBodyUpTo(ctx.req, requestCap, afterRead)
      return () => cancel()
    }
    // stream-mode agents get each chunk as it arrives and may decide before the end
    const stream = new BodyStream()
    const cl = Number(ctx.req.headers["content-length"])
    let callCancel: (() => void) | undefined
    const stopRead = streamBody(
      ctx.req,
      {
        maxBytes: maxBodySize,
        holdLimit: bufferedRequestCap,
        wantsChunks: () => refs.some((r) => streamRefs.has(r) && !stream.settled.has(r)),
        total: ctx.req.headers["content-length"] !== undefined && Number.isSafeInteger(cl) ? cl : undefined
      },
      (chunk, next) => {
        callCancel = manager.startBodyChunk(refs, "request_body", chunk, pc, stream, (d) => {
          callCancel = undefined
          const step = applyRequest(ctx, d)
          if (step === undefined) return next()
          stopRead()
          // the rest of the body stays unread: the connection cannot carry another request
          if (!chunk.isLast) closeAfterAnswer(ctx)
          done(step)
        })
      },
      (read) => {
        callCancel = undefined
        afterRead(read)
      }
    )
    cancel = () => {
      stopRead()
      callCancel?.()
    }
    return () => cancel()
  }
  return startBodyPhase
}
