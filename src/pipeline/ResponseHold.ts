/**
 * Holds an upstream response while a route's `ResponseHook` (response-phase
 * agents) decides, then lets it through (head edited in place), replaces its
 * body, or answers the client instead.
 *
 * It wraps the pipeline's `ResponseSink` and needs nothing from the exchange
 * but its back-pressure contract: while the hook runs, `data` returns false,
 * which pauses the upstream until the `onDrain` resume is called. Body bytes
 * are buffered only up to the hook's `bufferBytes` (+1). `onSettled` is the
 * one wait the upstream call adds after the exchange finished: the held
 * response has been written (or failed). Routes without a hook never get
 * here.
 */
import { Effect } from "effect"
import { abortResponse } from "../http/Response.js"
import type { ResponseSink } from "../upstream/Forward.js"
import { withContentLength } from "./Headers.js"
import type { ProxyError } from "./Errors.js"
import { UpstreamBadAnswer } from "../upstream/Errors.js"
import type { RequestContext } from "./RequestContext.js"
import type { Answer, ResponseHook, ResponseHookStep } from "./Stage.js"

export interface HeldSink extends ResponseSink {
  /** `cb` once the held response went to the client (`undefined`) or could not (the error). */
  readonly onSettled: (cb: (error: ProxyError | undefined) => void) => void
  /** Stops the hook (the exchange was interrupted or failed). Idempotent. */
  readonly dispose: () => void
}

type Phase = "head" | "buffer" | "deciding" | "pass" | "drop"

const isAnswer = (s: ResponseHookStep): s is Answer => s !== undefined && "status" in s

const toRaw = (flat: ReadonlyArray<string>): Array<Buffer> => flat.map((s) => Buffer.from(s, "latin1"))

export const holdResponse = (ctx: RequestContext, hook: ResponseHook, base: ResponseSink): HeldSink => {
  let phase: Phase = "head"
  let status = 0
  let flat: Array<string> = []
  const queued: Array<Buffer> = []
  let queuedBytes = 0
  let upstreamEnded = false
  let pendingResume: (() => void) | undefined
  let cancel: (() => void) | undefined
  let disposed = false
  let result: Effect.Effect<void, ProxyError> | undefined
  /** Whether the client took the last chunk written by `decided` (a hook may decide synchronously). */
  let lastCanWrite = true

  let settledError: ProxyError | undefined
  let callbacks: Array<(error: ProxyError | undefined) => void> = []
  const settle = (r: Effect.Effect<void, ProxyError>, error?: ProxyError) => {
    if (result !== undefined) return
    result = r
    settledError = error
    const cbs = callbacks
    callbacks = []
    for (const cb of cbs) cb(error)
  }

  const resumeUpstream = (canWrite: boolean) => {
    const r = pendingResume
    pendingResume = undefined
    if (r === undefined) return
    if (canWrite) r()
    else base.onDrain(r)
  }

  const answer = (a: Answer) => {
    const res = ctx.res
    ctx.status = a.status
    ctx.error ??= a.reason
    phase = "drop"
    queued.length = 0
    const head: Array<string> = ["content-type", a.contentType ?? "application/json", "x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId]
    for (let i = 0; i < a.headers.length; i++) head.push(a.headers[i])
    const body = typeof a.body === "string" ? Buffer.from(a.body) : a.body
    head.push("content-length", String(body.length))
    try {
      res.writeHead(a.status, head)
      res.end(ctx.method === "HEAD" ? undefined : body)
      if (ctx.method !== "HEAD") ctx.bytesSent += body.length
    } catch {
      abortResponse(res)
    }
    settle(Effect.void)
    // drain and drop the rest of the upstream body
    resumeUpstream(true)
  }

  const failed = (reason: string) => {
    phase = "drop"
    queued.length = 0
    ctx.error ??= reason
    const error = new UpstreamBadAnswer({ reason })
    settle(Effect.fail(error), error)
    resumeUpstream(true)
  }

  const decided = (step: ResponseHookStep) => {
    cancel = undefined
    if (disposed) return
    if (isAnswer(step)) return answer(step)
    let head = flat
    if (step !== undefined) {
      head = withContentLength(flat, step.replaceBody.length)
      queued.length = 0
      queued.push(step.replaceBody)
    }
    if (!base.start(status, toRaw(head))) return failed(ctx.error ?? "upstream_invalid_header")
    phase = "pass"
    let canWrite = true
    for (const chunk of queued) canWrite = base.data(chunk)
    queued.length = 0
    lastCanWrite = canWrite
    if (upstreamEnded) {
      base.end()
      settle(Effect.void)
      return
    }
    resumeUpstream(canWrite)
  }

  const launch = (body: Buffer | undefined, complete: boolean) => {
    phase = "deciding"
    if (hook.start !== undefined) {
      // on callbacks, no fiber; a decision made synchronously leaves nothing to cancel
      let decidedNow = false
      try {
        const c = hook.start(ctx, status, flat, body, complete, (step) => {
          decidedNow = true
          decided(step)
        })
        if (!decidedNow) cancel = c
      } catch {
        if (!disposed) failed("agent_response_phase_failed")
      }
      return
    }
    cancel = Effect.runCallback(hook.run(ctx, status, flat, body, complete), {
      onExit: (exit) => {
        if (exit._tag === "Success") decided(exit.value)
        else if (!disposed) failed("agent_response_phase_failed")
      }
    })
  }

  const body = () => (queued.length === 1 ? queued[0] : Buffer.concat(queued, queuedBytes))

  return {
    start(s, raw) {
      status = s
      flat = raw.map((b) => b.toString("latin1"))
      if (hook.bufferBytes > 0) phase = "buffer"
      else launch(undefined, false)
      return true
    },
    data(chunk) {
      switch (phase) {
        case "pass":
          return base.data(chunk)
        case "drop":
          return true
        case "buffer":
          queued.push(chunk)
          queuedBytes += chunk.length
          if (queuedBytes <= hook.bufferBytes) return true
          launch(body(), false)
          // decided synchronously: back-pressure is the client's again
          return (phase as Phase) === "pass" ? lastCanWrite : (phase as Phase) === "drop"
        default:
          queued.push(chunk)
          queuedBytes += chunk.length
          return false
      }
    },
    onDrain(resume) {
      if (phase === "pass") base.onDrain(resume)
      else if (phase === "drop") resume()
      else pendingResume = resume
    },
    end(trailers) {
      upstreamEnded = true
      if (phase === "pass") {
        base.end(trailers)
        settle(Effect.void)
      } else if (phase === "drop") {
        settle(Effect.void)
      } else if (phase === "buffer") {
        const b = body()
        queued.length = 0
        queued.push(b)
        launch(b, true)
      }
    },
    onSettled(cb) {
      if (result !== undefined) cb(settledError)
      else callbacks.push(cb)
    },
    dispose() {
      if (disposed) return
      disposed = true
      const c = cancel
      cancel = undefined
      c?.()
    }
  }
}
