/**
 * The response phases of an agent route, as its response hook (AgentsExtension.ts compiles
 * the route, then builds this once per route): the upstream head to the `response_headers`
 * agents, then the body held up to the cap to the `response_body` ones; with
 * `response-body-mode "stream"` agents each body chunk goes to them before the client
 * (ResponseHold.ts) and the buffer-mode agents get what they passed. A block replaces the
 * response, mutations edit it. Plain callbacks.
 */
import type { RequestContext } from "../pipeline/RequestContext.js"
import { type Answer, callbackAsEffect, type ResponseHook, type ResponseHookStep } from "../pipeline/Stage.js"
import type { AgentFilterRef } from "./AgentConfig.js"
import type { AgentRespond, PhaseContext } from "./AgentDecision.js"
import { responseHeadersEvent } from "./AgentEvents.js"
import { applyHeaderOps } from "./AgentHeaders.js"
import { type AgentManagerService, BodyStream } from "./AgentManager.js"
import type { HeaderOp } from "./Protocol.js"

/** Edits a flat list in place. */
/** Edits a flat list in place. */
export const applyInPlace = (flat: Array<string>, ops: ReadonlyArray<HeaderOp>): void => {
  if (ops.length === 0) return
  const next = applyHeaderOps(flat, ops)
  flat.length = 0
  for (let i = 0; i < next.length; i++) flat.push(next[i])
}

const noop = (): void => {}

const EMPTY = Buffer.alloc(0)

/** What the response phases take from their route, computed when the route is compiled. */
export interface ResponseRoute {
  readonly refs: ReadonlyArray<AgentFilterRef>
  readonly manager: AgentManagerService
  readonly wantsResponseHeaders: boolean
  readonly wantsResponseBody: boolean
  readonly streamsResponse: boolean
  readonly responseStreamRefs: ReadonlyArray<AgentFilterRef>
  readonly responseCap: number
  readonly bufferedResponseCap: number
  readonly wantsBufferedResponseBody: boolean
  readonly phaseContext: (ctx: RequestContext) => PhaseContext
  readonly respond: (d: AgentRespond) => Answer
}

/** The route's response hook; undefined when no agent of the route looks at the response. */
export const responseHookOf = (route: ResponseRoute): ResponseHook | undefined => {
  const { refs, manager, wantsResponseHeaders, wantsResponseBody, streamsResponse, responseStreamRefs } = route
  const { responseCap, bufferedResponseCap, wantsBufferedResponseBody, phaseContext, respond } = route
  /** The response phases on callbacks: headers, then (if subscribed) the buffered body. */
  const startResponse: NonNullable<ResponseHook["start"]> = (ctx, status, headers, body, complete, done) => {
    const pc = phaseContext(ctx)
    const startBody = () => startBufferedResponseBody(ctx, pc, headers, body ?? EMPTY, complete, done)
    // stream routes: the head alone here (the body follows chunk by chunk)
    const bodyHere = wantsResponseBody && !streamsResponse
    if (!wantsResponseHeaders) return bodyHere ? startBody() : (done(undefined), noop)
    let onBody: (() => void) | undefined
    const onHeaders = manager.startResponseHeaders(refs, responseHeadersEvent(ctx.traceId, status, headers), pc, (d) => {
      if (d._tag === "Respond") return done(respond(d))
      applyInPlace(headers, d.responseHeaders)
      if (bodyHere) onBody = startBody()
      else done(undefined)
    })
    return () => (onBody ?? onHeaders)()
  }

  /** The buffered response body to the buffer-mode agents (after the stream ones, on stream routes). */
  const startBufferedResponseBody = (
    ctx: RequestContext,
    pc: PhaseContext,
    headers: Array<string>,
    body: Buffer,
    complete: boolean,
    done: (step: ResponseHookStep) => void
  ): (() => void) =>
    manager.startResponseBody(refs, body, pc, (d) => {
      if (d._tag === "Respond") return done(respond(d))
      applyInPlace(headers, d.responseHeaders)
      done(complete && d.body !== undefined ? { replaceBody: d.body } : undefined)
    })

  /** Per-response state of the stream-mode agents: which have decided. */
  const responseStreams = new WeakMap<RequestContext, BodyStream>()
  const responseStream: ResponseHook["stream"] = streamsResponse
    ? {
        chunk: (ctx, chunk, done) => {
          let stream = responseStreams.get(ctx)
          if (stream === undefined) responseStreams.set(ctx, (stream = new BodyStream()))
          const s = stream
          return manager.startBodyChunk(refs, "response_body", chunk, phaseContext(ctx), s, (d) => {
            if (d._tag === "Respond") return done(respond(d))
            // response-header edits of a chunk's answer are not applied: the head may be out
            done(responseStreamRefs.every((r) => s.settled.has(r)) ? "done" : "more")
          })
        },
        body: (ctx, _status, headers, body, complete, done) => startBufferedResponseBody(ctx, phaseContext(ctx), headers, body, complete, done)
      }
    : undefined

  const responseHook: ResponseHook | undefined =
    wantsResponseHeaders || wantsResponseBody
      ? {
          bufferBytes: !wantsResponseBody ? 0 : streamsResponse ? (wantsBufferedResponseBody ? Math.max(bufferedResponseCap, 1) : 0) : responseCap,
          start: startResponse,
          run: (ctx, status, headers, body, complete) =>
            callbackAsEffect<ResponseHookStep>((done) => startResponse(ctx, status, headers, body, complete, done)),
          ...(responseStream !== undefined ? { stream: responseStream } : {})
        }
      : undefined
  return responseHook
}
