/**
 * Spans of one sampled request, made with the OpenTelemetry tracer directly:
 * the request path is plain callbacks (DESIGN.md §2), so Effect's span
 * machinery (`Effect.withSpan`, ~20 µs, a fiber-local current span) would be
 * paid for nothing. `Effect` appears only where a stage already is one (the
 * agents phase): one `onExit` to end its span.
 *
 * Costs:
 * - tracing not configured: the pipeline checks `env.tracing` once per
 *   request; stages see `ctx.trace === undefined` (a property read);
 * - configured, not sampled: `parseTraceparent` + `decideSampled`, no span
 *   object; the caller's `traceparent` (if any) reaches the upstream and the
 *   agents unchanged, and none is invented when there was none (the trace
 *   would be recorded nowhere; `x-request-id` already correlates);
 * - sampled: a server span (child of the caller's `traceparent`), a
 *   `sentinel.agents` span for the request-phase agents, a
 *   `sentinel.upstream` span per upstream attempt; the `traceparent` sent to
 *   the agents / the upstream names that span.
 *
 * Every span is ended exactly once: the agents span on its Effect's exit
 * (success, failure, interruption), an attempt's span when its exchange
 * reports, and whatever is still open when the request completes (an
 * exchange cancelled by the client going away or the route deadline, a stage
 * interrupted before it started) with the server span, as an error.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context as OtelContext,
  type Span,
  type Tracer
} from "@opentelemetry/api"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { errorAnswer } from "../pipeline/ErrorResponse.js"
import type { ProxyError } from "../pipeline/Errors.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import { isServed, type StageStep } from "../pipeline/Stage.js"
import { decideSampled, formatTraceparent, parseTraceparent, type RequestTracing, type TraceContext } from "./Tracing.js"

/**
 * The sampling decision for a request: sets `ctx.trace` (and opens the server
 * span) only when the request is sampled. Call once, at arrival.
 */
export const startRequestTrace = (ctx: RequestContext, tracing: RequestTracing): void => {
  const incoming = parseTraceparent(ctx.req.headers.traceparent)
  if (decideSampled(incoming, tracing.samplingRate, tracing)) ctx.trace = new RequestTrace(tracing.tracer, ctx, incoming)
}

/** Sets `traceparent` in a flat upstream header list, in place (replacing the caller's). */
export const setTraceparent = (headers: Array<string>, value: string): void => {
  let found = false
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]
    if (name.length === 11 && name.toLowerCase() === "traceparent") {
      if (found) {
        headers.splice(i, 2)
        i -= 2
      } else {
        headers[i + 1] = value
        found = true
      }
    }
  }
  if (!found) headers.push("traceparent", value)
}

const hostAndPort = (target: string): { host: string; port: number | undefined } => {
  const colon = target.lastIndexOf(":")
  if (colon === -1 || target.indexOf("]", colon) !== -1) return { host: target, port: undefined }
  const port = Number(target.slice(colon + 1))
  const host = target.slice(0, colon)
  return {
    host: host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host,
    port: Number.isInteger(port) ? port : undefined
  }
}

/** One child span of a request (agents phase, upstream attempt). */
export class StageSpan {
  private done = false
  constructor(readonly span: Span, private readonly owner: RequestTrace) {}

  /** The `traceparent` naming this span (sent to the agent / upstream). */
  get traceparent(): string {
    const c = this.span.spanContext()
    return formatTraceparent({ traceId: c.traceId, spanId: c.spanId, sampled: (c.traceFlags & 1) === 1 })
  }

  get ended(): boolean {
    return this.done
  }

  /** Ends the span (once; later calls do nothing); `error` marks it failed with that reason. */
  end(error?: string): void {
    if (this.done) return
    this.done = true
    if (error !== undefined) {
      this.span.setAttribute("error.type", error)
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error })
    }
    this.span.end()
    this.owner.release(this)
  }

  /** The request-phase agents' effect, ending this span with its outcome. */
  trackStep(effect: Effect.Effect<StageStep> | undefined, ctx: RequestContext): Effect.Effect<StageStep> | undefined {
    if (effect === undefined) {
      this.end()
      return undefined
    }
    return Effect.onExit(effect, (exit) =>
      Effect.sync(() => {
        if (Exit.isSuccess(exit)) {
          const step = exit.value
          if (step === undefined || isServed(step)) this.span.setAttribute("sentinel.agents.decision", "continue")
          else {
            this.span.setAttributes({
              "sentinel.agents.decision": "respond",
              "sentinel.agents.reason": step.reason,
              "http.response.status_code": step.status
            })
          }
          this.end(step !== undefined && !isServed(step) && step.status >= 500 ? step.reason : undefined)
        } else this.end(exitReason(exit.cause, ctx))
      })
    )
  }

  /**
   * Ends an upstream attempt's span with the exchange's outcome (`exchange`'s
   * `onDone`). An exchange cancelled instead (client gone, route deadline)
   * never reports: its span is closed with the request (`RequestTrace.end`).
   */
  endExchange(
    error: ProxyError | undefined,
    /** The exchange's outcome (`upstream/Forward.ts`): the upstream's status, and whether the response path dropped it. */
    outcome: { readonly status: number; readonly discarded: boolean } | undefined,
    ctx: RequestContext
  ): void {
    if (error === undefined) {
      if (outcome !== undefined) {
        this.span.setAttribute("http.response.status_code", outcome.status)
        if (outcome.discarded) this.span.setAttribute("sentinel.upstream.discarded", true)
      }
      this.end(outcome !== undefined && outcome.status >= 500 ? `status_${outcome.status}` : undefined)
    } else this.end(ctx.bodyTooLarge ? "body_too_large" : errorAnswer(error).reason)
  }
}

const exitReason = (cause: Cause.Cause<unknown>, ctx: RequestContext): string => {
  if (Cause.isInterruptedOnly(cause)) return ctx.clientGone ? "client_closed" : "cancelled"
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value as ProxyError
    return typeof e === "object" && e !== null && "_tag" in e ? errorAnswer(e).reason : "error"
  }
  return "internal"
}

/** The spans of one sampled request; stored on `ctx.trace`. */
export class RequestTrace {
  readonly span: Span
  private readonly context: OtelContext
  private readonly open: Array<StageSpan> = []
  private ended = false

  constructor(private readonly tracer: Tracer, ctx: RequestContext, incoming: TraceContext | undefined) {
    const parent =
      incoming === undefined
        ? ROOT_CONTEXT
        : trace.setSpanContext(ROOT_CONTEXT, {
            traceId: incoming.traceId,
            spanId: incoming.spanId,
            traceFlags: incoming.flags,
            isRemote: true
          })
    this.span = tracer.startSpan(
      ctx.method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": ctx.method,
          "url.path": ctx.path,
          "url.scheme": ctx.scheme,
          "server.address": ctx.host,
          "client.address": ctx.clientIp,
          "sentinel.trace_id": ctx.traceId,
          "sentinel.listener": ctx.listenerId
        }
      },
      parent
    )
    this.context = trace.setSpan(ROOT_CONTEXT, this.span)
  }

  /** The server span's `traceparent`. */
  get traceparent(): string {
    const c = this.span.spanContext()
    return formatTraceparent({ traceId: c.traceId, spanId: c.spanId, sampled: (c.traceFlags & 1) === 1 })
  }

  /** Opens a child span of the server span. */
  child(name: string, kind: SpanKind, attributes: Attributes): StageSpan {
    const s = new StageSpan(this.tracer.startSpan(name, { kind, attributes }, this.context), this)
    if (this.ended) s.end("after_request") // cannot happen through the pipeline; keeps "ended once" true
    else this.open.push(s)
    return s
  }

  /** `sentinel.agents`: the request phase's agents (headers, then body). */
  startAgents(routeId: string, refs: ReadonlyArray<{ readonly agent: string }>): StageSpan {
    return this.child("sentinel.agents", SpanKind.CLIENT, { "http.route": routeId, "sentinel.agents": refs.map((r) => r.agent) })
  }

  /**
   * `sentinel.upstream`: one attempt. Sets the span's `traceparent` in
   * `ctx.upstreamHeaders` (in place, so a request already built over that list sends it).
   */
  startUpstream(ctx: RequestContext, upstreamId: string, target: string, attempt: number): StageSpan {
    const { host, port } = hostAndPort(target)
    const s = this.child("sentinel.upstream", SpanKind.CLIENT, {
      "http.request.method": ctx.method,
      "sentinel.upstream.id": upstreamId,
      "sentinel.upstream.target": target,
      "sentinel.upstream.attempt": attempt,
      "server.address": host,
      ...(port !== undefined ? { "server.port": port } : {})
    })
    setTraceparent(ctx.upstreamHeaders, s.traceparent)
    return s
  }

  /** @internal a child span ended. */
  release(s: StageSpan): void {
    const i = this.open.indexOf(s)
    if (i !== -1) this.open.splice(i, 1)
  }

  /** Ends the server span (once) with the request's outcome; closes children still open. */
  end(ctx: RequestContext): void {
    if (this.ended) return
    this.ended = true
    // stages cancelled without reporting (client gone, route deadline) end here
    for (const s of this.open.splice(0)) s.end(ctx.clientGone ? "client_closed" : ctx.error ?? "cancelled")
    const span = this.span
    if (ctx.routeId !== "") {
      span.setAttribute("http.route", ctx.routeId)
      span.updateName(`${ctx.method} ${ctx.routeId}`)
    }
    if (ctx.status > 0) span.setAttribute("http.response.status_code", ctx.status)
    if (ctx.upstreamId !== "") span.setAttribute("sentinel.upstream.id", ctx.upstreamId)
    if (ctx.attempts > 0) span.setAttribute("sentinel.upstream.attempts", ctx.attempts)
    if (ctx.error !== undefined) span.setAttribute("sentinel.error_reason", ctx.error)
    if (ctx.status >= 500 || ctx.status === 499 || ctx.clientGone) {
      const reason = ctx.error ?? (ctx.clientGone ? "client_closed" : String(ctx.status))
      span.setAttribute("error.type", reason)
      span.setStatus({ code: SpanStatusCode.ERROR, message: reason })
    }
    span.end()
  }
}
