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
 *
 * With a streaming hook (response-body-mode "stream" agents), the head is
 * decided alone, then every body chunk is looked at before the client gets
 * it, one at a time (the upstream paused meanwhile); the head goes out with
 * the first chunk passed. A stop before that replaces the response; after
 * it, the response is cut (HTTP/1.1: the connection closes before the
 * announced length or the last chunk; HTTP/2: RST_STREAM), so a client never
 * takes a partial body for a complete one. A client that could not tell (an
 * HTTP/1.0 client, no Content-Length) gets nothing until the agents are done.
 */
import * as Effect from "effect/Effect"
import { abortResponse } from "../http/Response.js"
import { markCut } from "./Connection.js"
import type { ResponseSink } from "../upstream/Forward.js"
import { withContentLength } from "./Headers.js"
import type { ProxyError } from "./Errors.js"
import { UpstreamBadAnswer } from "../upstream/Errors.js"
import type { RequestContext } from "./RequestContext.js"
import type { Answer, ChunkStep, ResponseHook, ResponseHookStep } from "./Stage.js"
import { writeHead } from "./ResponseHead.js"

export interface HeldSink extends ResponseSink {
  /** `cb` once the held response went to the client (`undefined`) or could not (the error). */
  readonly onSettled: (cb: (error: ProxyError | undefined) => void) => void
  /** Stops the hook (the exchange was interrupted or failed). Idempotent. */
  readonly dispose: () => void
}

type Phase = "head" | "buffer" | "deciding" | "pass" | "drop"

const isAnswer = (s: ResponseHookStep | ChunkStep): s is Answer => typeof s === "object" && "status" in s

const toRaw = (flat: ReadonlyArray<string>): Array<Buffer> => flat.map((s) => Buffer.from(s, "latin1"))

export const holdResponse = (ctx: RequestContext, hook: ResponseHook, base: ResponseSink): HeldSink => {
  const stream = hook.start !== undefined ? hook.stream : undefined
  let phase: Phase = "head"
  let status = 0
  let flat: Array<string> = []
  /** The head the client gets (`flat`, or with the Content-Length of a replaced body). */
  let outHead: Array<string> = flat
  const queued: Array<Buffer> = []
  let queuedBytes = 0
  let upstreamEnded = false
  let trailers: ReadonlyArray<Buffer | string> | null | undefined
  let pendingResume: (() => void) | undefined
  let cancel: (() => void) | undefined
  let disposed = false
  let result: Effect.Effect<void, ProxyError> | undefined
  /** Whether the client took the last chunk written by `decided` (a hook may decide synchronously). */
  let lastCanWrite = true
  let headOut = false

  // stream inspection (`hook.stream`)
  /** Agents still want chunks. */
  let inspecting = stream !== undefined
  /** The head was allowed: chunks may go to the agents. */
  let inspectReady = false
  /** Upstream chunks waiting for the agents. */
  const toInspect: Array<Buffer> = []
  let inspectBusy = false
  let chunkIndex = 0
  let inspectedBytes = 0
  let sentLast = false
  let total: number | undefined
  /** The client could not tell a cut response from a complete one: nothing goes out before the agents are done. */
  let holdAll = false
  /** Buffered agents beside the stream ones (`stream.body`) were started. */
  let bodyLaunched = false

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
    toInspect.length = 0
    if (headOut) {
      // The head went out already: cut the response short, so it cannot pass as complete. On
      // HTTP/1.x the connection goes with it: marked as the proxy's cut, so the access line
      // keeps the status sent and this reason (not the 499 of a client that left).
      if (!ctx.http2 && ctx.req.socket !== null) markCut(ctx.req.socket, { status: a.status, reason: a.reason, answered: undefined, bytesSent: 0 })
      abortResponse(res)
      settle(Effect.void)
      resumeUpstream(true)
      return
    }
    const head: Array<string> = ["content-type", a.contentType ?? "application/json", "x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId]
    for (let i = 0; i < a.headers.length; i++) head.push(a.headers[i])
    const body = typeof a.body === "string" ? Buffer.from(a.body) : a.body
    head.push("content-length", String(body.length))
    try {
      writeHead(res, a.status, head, ctx.http2)
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
    toInspect.length = 0
    ctx.error ??= reason
    const error = new UpstreamBadAnswer({ reason })
    settle(Effect.fail(error), error)
    resumeUpstream(true)
  }

  /** The head to the client; false (and failed) when node refused it. */
  const openClient = (): boolean => {
    if (headOut) return true
    if (!base.start(status, toRaw(outHead))) {
      failed(ctx.error ?? "upstream_invalid_header")
      return false
    }
    headOut = true
    return true
  }

  /** The held chunks to the client (the head first). */
  const writeQueued = (): boolean => {
    if (!openClient()) return false
    let canWrite = true
    for (const chunk of queued) canWrite = base.data(chunk)
    queued.length = 0
    queuedBytes = 0
    lastCanWrite = canWrite
    return true
  }

  const decided = (step: ResponseHookStep) => {
    cancel = undefined
    if (disposed) return
    if (isAnswer(step)) return answer(step)
    if (step !== undefined) {
      outHead = withContentLength(flat, step.replaceBody.length)
      queued.length = 0
      queued.push(step.replaceBody)
    }
    phase = "pass"
    if (stream !== undefined) return flush()
    if (!writeQueued()) return
    if (upstreamEnded) {
      base.end()
      settle(Effect.void)
      return
    }
    resumeUpstream(lastCanWrite)
  }

  /** Starts a decision on callbacks (`start` or the stream's `body`), else `run` as a fiber. */
  const launchWith = (startFn: ((done: (step: ResponseHookStep) => void) => () => void) | undefined, body: Buffer | undefined, complete: boolean, onStep: (step: ResponseHookStep) => void) => {
    phase = "deciding"
    if (startFn !== undefined) {
      // on callbacks, no fiber; a decision made synchronously leaves nothing to cancel
      let decidedNow = false
      try {
        const c = startFn((step) => {
          decidedNow = true
          onStep(step)
        })
        if (!decidedNow) cancel = c
      } catch {
        if (!disposed) failed("agent_response_phase_failed")
      }
      return
    }
    cancel = Effect.runCallback(hook.run(ctx, status, flat, body, complete), {
      onExit: (exit) => {
        if (exit._tag === "Success") onStep(exit.value)
        else if (!disposed) failed("agent_response_phase_failed")
      }
    })
  }

  const launch = (body: Buffer | undefined, complete: boolean) =>
    launchWith(hook.start && ((done) => hook.start!(ctx, status, flat, body, complete, done)), body, complete, decided)

  const body = () => (queued.length === 1 ? queued[0] : Buffer.concat(queued, queuedBytes))

  // -- streaming -------------------------------------------------------------

  /** The head alone was decided (stream routes): inspection may start. */
  const headDecided = (step: ResponseHookStep) => {
    cancel = undefined
    if (disposed) return
    if (isAnswer(step)) return answer(step)
    inspectReady = true
    phase = hook.bufferBytes > 0 ? "buffer" : "pass"
    flush()
  }

  /** One chunk to the agents; `flush` again once they answered. */
  const inspect = (data: Buffer, isLast: boolean) => {
    inspectBusy = true
    inspectedBytes += data.length
    if (isLast) sentLast = true
    let answeredNow = false
    const onStep = (step: ChunkStep) => {
      answeredNow = true
      cancel = undefined
      inspectBusy = false
      if (disposed || phase === "drop") return
      if (isAnswer(step)) return answer(step)
      if (step === "done") inspecting = false
      if (data.length > 0) release(data)
      flush()
    }
    try {
      const c = stream!.chunk(ctx, { data, index: chunkIndex++, isLast, bytes: inspectedBytes, total }, onStep)
      if (!answeredNow) cancel = c
    } catch {
      inspectBusy = false
      if (!disposed) failed("agent_response_phase_failed")
    }
  }

  /** A chunk the agents passed (or that needs no look): held, buffered, or to the client. */
  const release = (chunk: Buffer) => {
    if (phase === "pass" && !(holdAll && inspecting)) {
      if (!openClient()) return
      if (queued.length > 0) {
        queued.push(chunk)
        queuedBytes += chunk.length
        writeQueued()
        return
      }
      lastCanWrite = base.data(chunk)
      return
    }
    queued.push(chunk)
    queuedBytes += chunk.length
  }

  /** Moves a streamed response on after every event; idle = waiting for the upstream. */
  const flush = (): void => {
    while (!disposed && phase !== "drop" && result === undefined) {
      if (!inspectReady || inspectBusy || phase === "deciding") return
      if (inspecting) {
        if (toInspect.length > 0) {
          const c = toInspect.shift()!
          const last = toInspect.length === 0 && (upstreamEnded || (total !== undefined && inspectedBytes + c.length >= total))
          return inspect(c, last)
        }
        if (upstreamEnded && !sentLast) return inspect(EMPTY, true)
        if (sentLast) inspecting = false
      } else if (toInspect.length > 0) {
        for (const c of toInspect.splice(0)) release(c)
        continue
      }
      // the buffered agents beside the stream ones: once their share is held, or at the end
      if (phase === "buffer" && !bodyLaunched && (queuedBytes > hook.bufferBytes || (upstreamEnded && !inspecting))) {
        bodyLaunched = true
        const b = body()
        const complete = upstreamEnded && !inspecting
        queued.length = 0
        queuedBytes = 0
        queued.push(b)
        queuedBytes = b.length
        launchWith((done) => stream!.body(ctx, status, flat, b, complete, done), b, complete, decided)
        return
      }
      if (phase !== "pass") {
        // buffering: keep reading
        if (!upstreamEnded) resumeUpstream(true)
        return
      }
      if (holdAll && inspecting) {
        if (!upstreamEnded) resumeUpstream(true)
        return
      }
      if (queued.length > 0 && !writeQueued()) return
      if (upstreamEnded && !inspecting) {
        if (!openClient()) return
        base.end(trailers)
        settle(Effect.void)
        return
      }
      resumeUpstream(headOut ? lastCanWrite : true)
      return
    }
  }

  /** Stream routes: whether the upstream may send more now (nothing waits for the agents or a decision). */
  const streamReady = () =>
    phase === "drop" || (inspectReady && !inspectBusy && toInspect.length === 0 && (phase === "pass" || phase === "buffer"))
  /** ... and whether the client's back-pressure is what holds it (chunks go straight out). */
  const streamWrites = () => phase === "pass" && headOut && !(holdAll && inspecting)

  return {
    start(s, raw) {
      status = s
      flat = raw.map((b) => b.toString("latin1"))
      outHead = flat
      if (stream !== undefined) {
        total = ctx.method === "HEAD" || s === 204 || s === 304 ? 0 : contentLengthOf(flat)
        holdAll = !ctx.http2 && ctx.req.httpVersion === "1.0" && total === undefined
        launchWith((done) => hook.start!(ctx, status, flat, undefined, false, done), undefined, false, headDecided)
        return true
      }
      if (hook.bufferBytes > 0) phase = "buffer"
      else launch(undefined, false)
      return true
    },
    data(chunk) {
      if (stream !== undefined) {
        if (phase === "drop") return true
        // (an empty chunk is nothing to look at)
        if (chunk.length === 0) return streamReady() && (!streamWrites() || lastCanWrite)
        if (inspecting || toInspect.length > 0) toInspect.push(chunk)
        else release(chunk)
        flush()
        return streamReady() && (!streamWrites() || lastCanWrite)
      }
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
      if (phase === "drop") resume()
      else if (stream !== undefined) {
        if (!streamReady()) pendingResume = resume
        else if (streamWrites()) base.onDrain(resume)
        else resume()
      } else if (phase === "pass") base.onDrain(resume)
      else pendingResume = resume
    },
    end(t) {
      upstreamEnded = true
      if (stream !== undefined) {
        trailers = t
        if (phase === "drop") settle(Effect.void)
        else flush()
        return
      }
      if (phase === "pass") {
        base.end(t)
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

const EMPTY = Buffer.alloc(0)

/** The Content-Length of a flat head, when it has one valid value. */
const contentLengthOf = (flat: ReadonlyArray<string>): number | undefined => {
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i].length === 14 && flat[i].toLowerCase() === "content-length") {
      const n = Number(flat[i + 1])
      return Number.isSafeInteger(n) && n >= 0 ? n : undefined
    }
  }
  return undefined
}
