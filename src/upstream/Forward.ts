/**
 * One upstream exchange: a single `Effect.async` around undici's `dispatch`
 * that owns its deadlines (headers, write, body idle, total) and its abort, as DESIGN.md §2
 * asks for the hot path. The response streams into a `ResponseSink` with
 * back-pressure both ways; interruption (client gone, outer deadline) aborts
 * the upstream request and clears every timer.
 */
import { Effect } from "effect"
import type { Dispatcher } from "undici"
import type { Readable } from "node:stream"
import {
  UpstreamConnectFailed,
  UpstreamProtocolError,
  UpstreamTimeout
} from "../pipeline/Errors.js"

export type ForwardError = UpstreamConnectFailed | UpstreamTimeout | UpstreamProtocolError

export interface ForwardRequest {
  readonly method: string
  /** Path and query, origin-form. */
  readonly path: string
  /** Flat header list `[name, value, ...]`, already filtered. */
  readonly headers: Array<string>
  readonly body: Readable | Buffer | null
  /**
   * Deadline for the response head, from dispatch (covers connect + send + wait); for a
   * streamed body with a write deadline, from the end of the upload instead. 0 = none.
   */
  readonly headersTimeoutMs: number
  /** Longest silence allowed between response body chunks. 0 = none. */
  readonly bodyIdleTimeoutMs: number
  /**
   * Total deadline of the attempt, from dispatch to the end of the response body
   * (`timeouts { request }`), 0 = none. Time the response waits on a client that does not
   * read (back-pressure) is not counted: that is the client's, bounded by the listener.
   * Fires as `UpstreamTimeout` phase "request".
   */
  readonly requestTimeoutMs?: number
  /**
   * Longest time a streamed request body may make no progress towards the upstream
   * (`timeouts { write }`), 0 = none: the upstream socket does not drain. A client that
   * is slow to upload is not the upstream's fault and does not trip it (the listener's body
   * timeouts bound it). Buffer bodies are handed to the socket at once and have no write
   * phase (the head deadline covers them). Fires as `UpstreamTimeout` phase "write".
   */
  readonly writeTimeoutMs?: number
  /**
   * Deadline for getting the request onto a connected socket (waiting for a pool slot
   * and connecting), 0 = none. When it fires nothing was sent: safe to retry elsewhere.
   */
  readonly connectTimeoutMs?: number
}

/** Where the response goes. Implemented by the pipeline over `ServerResponse`. */
export interface ResponseSink {
  /** Response head arrived. Return false to discard this response (e.g. to retry). */
  readonly start: (status: number, rawHeaders: Array<Buffer>) => boolean
  /** A body chunk; return false when the client is full (the exchange pauses). */
  readonly data: (chunk: Buffer) => boolean
  /** Call `resume` once the client can take more. */
  readonly onDrain: (resume: () => void) => void
  readonly end: () => void
}

export interface ForwardOutcome {
  readonly status: number
  readonly bytes: number
  /** The sink refused the response (it was drained and dropped). */
  readonly discarded: boolean
}

export interface TargetRef {
  readonly upstream: string
  readonly target: string
}

class AbortedByProxy extends Error {
  constructor(readonly why: string) {
    super(why)
  }
}

const CONNECT_CODES: Record<string, UpstreamConnectFailed["reason"]> = {
  ECONNREFUSED: "refused",
  EHOSTUNREACH: "unreachable",
  ENETUNREACH: "unreachable",
  EADDRNOTAVAIL: "unreachable",
  ENOTFOUND: "dns",
  EAI_AGAIN: "dns",
  ERR_TLS_CERT_ALTNAME_INVALID: "tls",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "tls",
  DEPTH_ZERO_SELF_SIGNED_CERT: "tls",
  SELF_SIGNED_CERT_IN_CHAIN: "tls",
  CERT_HAS_EXPIRED: "tls"
}

/** Map an undici/socket error onto the typed upstream failures. */
export const classifyUpstreamError = (ref: TargetRef, err: unknown, headersSeen: boolean): ForwardError => {
  const e = err as { code?: string; message?: string; name?: string }
  const code = e?.code ?? ""
  const message = e?.message ?? String(err)
  const connect = CONNECT_CODES[code]
  if (connect !== undefined && !headersSeen) {
    return new UpstreamConnectFailed({ ...ref, reason: connect, message })
  }
  if (code === "UND_ERR_CONNECT_TIMEOUT") {
    return new UpstreamTimeout({ ...ref, phase: "connect", requestSent: false })
  }
  if (code === "UND_ERR_HEADERS_TIMEOUT") {
    return new UpstreamTimeout({ ...ref, phase: "headers", requestSent: true })
  }
  if (code === "UND_ERR_BODY_TIMEOUT") {
    return new UpstreamTimeout({ ...ref, phase: "body-idle", requestSent: true })
  }
  if (code.startsWith("HPE_") || code === "UND_ERR_INFO" || code === "UND_ERR_RES_CONTENT_LENGTH_MISMATCH") {
    return new UpstreamProtocolError({ ...ref, reason: "malformed", message, requestSent: true })
  }
  if (code === "ECONNRESET" || code === "EPIPE") {
    return new UpstreamProtocolError({ ...ref, reason: "reset", message, requestSent: true })
  }
  if (code === "UND_ERR_SOCKET" || code === "UND_ERR_CLOSED") {
    return new UpstreamProtocolError({ ...ref, reason: "closed", message, requestSent: true })
  }
  return new UpstreamProtocolError({ ...ref, reason: "other", message, requestSent: true })
}

/** Called exactly once per exchange: an error, or the outcome. */
export type ExchangeDone = (error: ForwardError | undefined, outcome: ForwardOutcome | undefined) => void

/**
 * Send one request through `dispatcher` and stream the answer into `sink`;
 * `onDone` reports the outcome or a typed upstream error exactly once.
 * Returns a cancel function (client gone, outer deadline): it aborts the
 * exchange and clears every timer, and `onDone` is not called afterwards.
 *
 * Plain callbacks, because this is the hot path (DESIGN.md §2); `forward` is
 * the same exchange as one `Effect.async`.
 */
export const exchange = (
  dispatcher: Dispatcher,
  ref: TargetRef,
  request: ForwardRequest,
  sink: ResponseSink,
  onDone: ExchangeDone
): (() => void) => {
    let abort: ((err?: Error) => void) | undefined
    let done = false
    let status = 0
    let bytes = 0
    let discarded = false
    let headersSeen = false
    let paused = false

    // One timer per exchange, for the earliest of two deadlines (DESIGN.md §2): the current
    // phase's idle deadline (`since + phaseMs`: headers, write, body idle) and the attempt's
    // total deadline (`deadline`). Progress only records the time (`since`); the timer is not
    // moved, and when it fires `check` decides which deadline, if any, is due and re-arms.
    const start = performance.now()
    const requestMs = request.requestTimeoutMs ?? 0
    const writeMs = request.writeTimeoutMs ?? 0
    let phase: "headers" | "write" | "body-idle" = "headers"
    let phaseMs = request.headersTimeoutMs
    let since = start
    let deadline = requestMs > 0 ? start + requestMs : Infinity
    let pausedAt = 0
    let timer: NodeJS.Timeout | undefined
    let timerDue = Infinity

    const finish = (error: ForwardError | undefined, outcome?: ForwardOutcome) => {
      if (done) return
      done = true
      if (timer !== undefined) clearTimeout(timer)
      if (connectTimer !== undefined) clearTimeout(connectTimer)
      onDone(error, outcome)
    }

    const fireTimeout = (which: UpstreamTimeout["phase"]) => {
      if (done) return
      // Fail first so the error reports the phase, then tear the exchange down. undici calls
      // onConnect just before writing the request: without it nothing reached the upstream
      // (still queued or connecting), which makes the attempt safe to retry elsewhere.
      finish(new UpstreamTimeout({ ...ref, phase: which, requestSent: abort !== undefined }))
      abort?.(new AbortedByProxy(`upstream ${which} timeout`))
    }

    const arm = (now: number) => {
      const due = Math.min(phaseMs > 0 ? since + phaseMs : Infinity, deadline)
      timerDue = due
      timer = due === Infinity ? undefined : setTimeout(check, Math.max(1, Math.ceil(due - now)))
    }
    /** After a phase change: re-arm only if the new deadline is earlier than the armed one. */
    const rearmIfEarlier = (now: number) => {
      if (paused || (phaseMs > 0 ? since + phaseMs : Infinity) >= timerDue) return
      if (timer !== undefined) clearTimeout(timer)
      arm(now)
    }
    /**
     * The upload is stuck on the upstream: undici paused the body stream because the socket
     * does not drain. Otherwise it waits on the client, whose pace the listener's own
     * body timeouts bound; that is not the upstream's fault.
     */
    const uploadStalled = (): boolean => {
      const body = request.body as Readable
      return typeof body?.isPaused === "function" && (body.isPaused() || body.readableLength > 0)
    }
    const check = () => {
      timer = undefined
      timerDue = Infinity
      if (done || paused) return
      const now = performance.now()
      if (now >= deadline) return fireTimeout("request")
      if (phaseMs > 0 && now >= since + phaseMs) {
        if (phase !== "write" || uploadStalled()) return fireTimeout(phase)
        since = now
      }
      arm(now)
    }

    arm(start)
    let connectTimer: NodeJS.Timeout | undefined
    if (request.connectTimeoutMs !== undefined && request.connectTimeoutMs > 0) {
      connectTimer = setTimeout(() => {
        if (done || abort !== undefined) return
        finish(new UpstreamTimeout({ ...ref, phase: "connect", requestSent: false }))
      }, request.connectTimeoutMs)
    }
    // Only a streamed body has a write phase: a Buffer is handed to the socket in one go
    // (undici reports it sent at once) and a body-less request has nothing to send.
    const streamed = writeMs > 0 && request.body !== null && !Buffer.isBuffer(request.body)

    const handler: Dispatcher.DispatchHandler = {
      onConnect(abortFn) {
        abort = abortFn
        if (connectTimer !== undefined) clearTimeout(connectTimer)
        // Interrupted while queued in the pool: never let it reach the upstream.
        if (done) return abortFn(new AbortedByProxy("cancelled before send"))
        if (streamed && phase === "headers") {
          phase = "write"
          phaseMs = writeMs
          since = performance.now()
          rearmIfEarlier(since)
        }
      },
      onHeaders(statusCode, rawHeaders, resumeFn) {
        if (done) return false
        if (statusCode < 200) return true // 1xx informational: keep waiting
        headersSeen = true
        status = statusCode
        phase = "body-idle"
        phaseMs = request.bodyIdleTimeoutMs
        since = performance.now()
        rearmIfEarlier(since)
        if (!sink.start(statusCode, rawHeaders as Array<Buffer>)) discarded = true
        void resumeFn
        return true
      },
      onData(chunk) {
        if (done) return false
        bytes += chunk.length
        if (discarded) return true
        since = performance.now()
        if (sink.data(chunk)) return true
        paused = true
        // While the client is slow, the idle deadline is the client's problem, not the upstream's,
        // and the time does not count against the attempt's total deadline either (the listener's
        // write timeout bounds a client that does not read).
        pausedAt = since
        if (timer !== undefined) clearTimeout(timer)
        timer = undefined
        timerDue = Infinity
        sink.onDrain(() => {
          if (done || !paused) return
          paused = false
          const now = performance.now()
          deadline += now - pausedAt
          since = now
          arm(now)
          resumeData()
        })
        return false
      },
      onComplete() {
        if (done) return
        if (!discarded) sink.end()
        finish(undefined, { status, bytes, discarded })
      },
      onError(err) {
        if (done) return
        finish(classifyUpstreamError(ref, err, headersSeen))
      }
    }

    if (streamed) {
      // Upload progress, observed only for streamed bodies: a body-less GET pays nothing.
      const h = handler as Dispatcher.DispatchHandler & { onRequestSent?: () => void }
      h.onBodySent = () => {
        if (phase === "write") since = performance.now()
      }
      h.onRequestSent = () => {
        if (phase !== "write" || done) return
        // the head deadline of a request with a body counts from the end of the upload
        phase = "headers"
        phaseMs = request.headersTimeoutMs
        since = performance.now()
        rearmIfEarlier(since)
      }
    }

    // undici's legacy handler resumes through the `resume` passed to onHeaders.
    let resumeData = () => {}
    const onHeaders = handler.onHeaders!
    handler.onHeaders = (statusCode, rawHeaders, resumeFn, statusText) => {
      resumeData = resumeFn
      return onHeaders.call(handler, statusCode, rawHeaders, resumeFn, statusText)
    }

    try {
      dispatcher.dispatch(
        {
          origin: undefined,
          path: request.path,
          method: request.method as Dispatcher.HttpMethod,
          headers: request.headers,
          body: request.body,
          headersTimeout: 0,
          bodyTimeout: 0,
          // Redirects, retries and caching are decisions of the proxy, not of the client library.
          idempotent: false
        } as Dispatcher.DispatchOptions,
        handler
      )
    } catch (err) {
      finish(classifyUpstreamError(ref, err, false))
    }

    return () => {
      if (done) return
      done = true
      if (timer !== undefined) clearTimeout(timer)
      if (connectTimer !== undefined) clearTimeout(connectTimer)
      abort?.(new AbortedByProxy("downstream went away"))
    }
}

/**
 * `exchange` as one `Effect.async`: succeeds when the response completed,
 * fails with a typed upstream error; interruption cancels the exchange.
 */
export const forward = (
  dispatcher: Dispatcher,
  ref: TargetRef,
  request: ForwardRequest,
  sink: ResponseSink
): Effect.Effect<ForwardOutcome, ForwardError> =>
  Effect.async<ForwardOutcome, ForwardError>((resume) => {
    const cancel = exchange(dispatcher, ref, request, sink, (error, outcome) =>
      resume(error !== undefined ? Effect.fail(error) : Effect.succeed(outcome!))
    )
    return Effect.sync(cancel)
  })
