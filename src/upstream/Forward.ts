/**
 * One upstream exchange on plain callbacks around undici's `dispatch` (`startExchange`): it
 * owns its deadlines (headers, write, body idle, total) and its abort, as DESIGN.md §2 asks
 * for the hot path. The response streams into a `ResponseSink` with
 * back-pressure both ways; interruption (client gone, outer deadline) aborts
 * the upstream request and clears every timer.
 */
import type { Dispatcher } from "undici"
import type { Socket } from "node:net"
import type { Readable } from "node:stream"
import {
  DownstreamError,
  type ExchangeError,
  UpstreamConnectFailed,
  UpstreamProtocolError,
  UpstreamSaturated,
  UpstreamTimeout
} from "./Errors.js"
import type { GateWaiter, PoolGate } from "./PoolGate.js"

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
  /** The client's address: its share of the target's connections (`PoolGate`). */
  readonly client?: string
  /**
   * Longest time the response may hold its upstream connection while the client does not
   * take what is already buffered for it (`limits { slow-reader-timeout-secs }`), 0 = none.
   * Then the upstream connection is released, the rest of the response dropped, and the
   * exchange fails with `DownstreamError` "slow_reader" (the client connection is closed).
   */
  readonly clientStallTimeoutMs?: number
  /**
   * An upgrade to ask for (`"websocket"`: undici sends `Connection: upgrade` and `Upgrade`). A
   * 101 goes to the sink's `upgrade`; any other answer is an ordinary response.
   */
  readonly upgrade?: string | undefined
}

/** Where the response goes. Implemented by the pipeline over `ServerResponse`. */
export interface ResponseSink {
  /** Response head arrived. Return false to discard this response (e.g. to retry). */
  readonly start: (status: number, rawHeaders: Array<Buffer>) => boolean
  /** A body chunk; return false when the client is full (the exchange pauses). */
  readonly data: (chunk: Buffer) => boolean
  /** Call `resume` once the client can take more. */
  readonly onDrain: (resume: () => void) => void
  /** The body is complete; `trailers` are the upstream's trailer fields (flat raw list), if any. */
  readonly end: (trailers?: ReadonlyArray<Buffer | string> | null) => void
  /**
   * The upstream switched protocols (an `upgrade` request answered 101): the socket is the
   * sink's now. Undefined = taken; "upstream": the answer does not fit (the exchange fails as a
   * protocol error); "client": the client side is gone.
   */
  readonly upgrade?: (status: number, rawHeaders: ReadonlyArray<Buffer>, socket: Socket) => "upstream" | "client" | undefined
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
export const classifyUpstreamError = (ref: TargetRef, err: unknown, headersSeen: boolean): ExchangeError => {
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
export type ExchangeDone = (error: ExchangeError | undefined, outcome: ForwardOutcome | undefined) => void

type Phase = "headers" | "write" | "body-idle"

/**
 * One exchange's state and undici handler in one object: its methods live on the prototype,
 * so an exchange allocates this object and its timer, not a dozen closures (hot path,
 * DESIGN.md §2).
 *
 * One timer per exchange, for the earliest of two deadlines: the current phase's idle
 * deadline (`since + phaseMs`: headers, write, body idle) and the attempt's total deadline
 * (`deadline`). Progress only records the time (`since`); the timer is not moved, and when
 * it fires `check` decides which deadline, if any, is due and re-arms.
 */
/** A started exchange: `cancel` aborts it (client gone, outer deadline); `onDone` is then not called. */
export interface ExchangeHandle {
  cancel(): void
}

const enum Admission {
  /** No gate, or not yet asked. */
  None,
  Waiting,
  Admitted
}

class Exchange implements Dispatcher.DispatchHandler, ExchangeHandle, GateWaiter {
  private admission = Admission.None
  private queueTimer: NodeJS.Timeout | undefined = undefined
  private resumeQueued = false
  private abortFn: ((err?: Error) => void) | undefined = undefined
  private done = false
  private status = 0
  private bytes = 0
  private discarded = false
  private headersSeen = false
  private paused = false
  private phase: Phase = "headers"
  private phaseMs: number
  private since: number
  private deadline: number
  private pausedAt = 0
  private timer: NodeJS.Timeout | undefined = undefined
  private timerDue = Infinity
  private connectTimer: NodeJS.Timeout | undefined = undefined
  /** undici's legacy handler resumes a paused body through the `resume` given to onHeaders. */
  private resumeData: (() => void) | undefined = undefined
  /** Only a streamed body (not a Buffer, not none) with a write deadline has a write phase. */
  private readonly streamed: boolean
  private readonly onCheck = () => this.check()
  private onClientDrained: (() => void) | undefined = undefined
  private onResume: (() => void) | undefined = undefined
  readonly client: string

  constructor(
    private readonly ref: TargetRef,
    private readonly request: ForwardRequest,
    private readonly sink: ResponseSink,
    private readonly onDone: ExchangeDone,
    private readonly dispatcher: Dispatcher,
    private readonly gate: PoolGate | undefined
  ) {
    this.client = request.client ?? ""
    const start = performance.now()
    const requestMs = request.requestTimeoutMs ?? 0
    this.phaseMs = request.headersTimeoutMs
    this.since = start
    this.deadline = requestMs > 0 ? start + requestMs : Infinity
    this.streamed = (request.writeTimeoutMs ?? 0) > 0 && request.body !== null && !Buffer.isBuffer(request.body)
    this.arm(start)
    const connectMs = request.connectTimeoutMs
    if (connectMs !== undefined && connectMs > 0) {
      this.connectTimer = setTimeout(() => {
        if (this.done || this.abortFn !== undefined) return
        this.finish(new UpstreamTimeout({ ...this.ref, phase: "connect", requestSent: false }))
      }, connectMs)
    }
  }

  /** Gets a connection slot (or waits for one, bounded), then dispatches. */
  start(): void {
    const gate = this.gate
    if (gate === undefined || gate.tryEnter(this.client)) {
      if (gate !== undefined) this.admission = Admission.Admitted
      return this.dispatch()
    }
    const refused = gate.wait(this)
    if (refused !== undefined) return this.finish(new UpstreamSaturated({ ...this.ref, reason: refused }))
    this.admission = Admission.Waiting
    const ms = gate.config.pendingTimeoutMs
    if (ms > 0) {
      this.queueTimer = setTimeout(() => {
        this.queueTimer = undefined
        if (this.done || this.admission !== Admission.Waiting) return
        this.admission = Admission.None
        this.finish(new UpstreamSaturated({ ...this.ref, reason: gate.remove(this) }))
      }, ms)
    }
  }

  admitted(): void {
    if (this.queueTimer !== undefined) clearTimeout(this.queueTimer)
    this.queueTimer = undefined
    this.admission = Admission.Admitted
    this.dispatch()
  }

  private dispatch(): void {
    const request = this.request
    try {
      this.dispatcher.dispatch(
        {
          origin: undefined,
          path: request.path,
          method: request.method as Dispatcher.HttpMethod,
          headers: request.headers,
          body: request.body,
          headersTimeout: 0,
          bodyTimeout: 0,
          // Redirects, retries and caching are decisions of the proxy, not of the client library.
          idempotent: false,
          ...(request.upgrade !== undefined ? { upgrade: request.upgrade } : {})
        } as Dispatcher.DispatchOptions,
        this
      )
    } catch (err) {
      this.finish(classifyUpstreamError(this.ref, err, false))
    }
  }

  /** The exchange is over for the gate: its slot goes to the next waiter, or it stops waiting. */
  private releaseSlot(): void {
    const was = this.admission
    this.admission = Admission.None
    if (was === Admission.Admitted) this.gate!.leave(this.client)
    else if (was === Admission.Waiting) this.gate!.remove(this)
  }

  private finish(error: ExchangeError | undefined, outcome?: ForwardOutcome): void {
    if (this.done) return
    this.done = true
    this.clearTimers()
    this.releaseSlot()
    this.onDone(error, outcome)
  }

  private clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer)
    if (this.queueTimer !== undefined) clearTimeout(this.queueTimer)
  }

  /**
   * The client's side ends the exchange: the response could not be handed on (the sink threw:
   * the client connection is broken), or a slow reader held the connection too long. Not the
   * upstream's fault: tear the exchange down (the upstream connection is released) and say so.
   */
  private downstreamFailed(reason: "client_write_failed" | "slow_reader", why: string): void {
    if (this.done) return
    this.finish(new DownstreamError({ status: this.status || 502, reason }))
    this.abortFn?.(new AbortedByProxy(why))
  }

  private sinkFailed(): void {
    this.downstreamFailed("client_write_failed", "response could not be written")
  }

  private fireTimeout(which: UpstreamTimeout["phase"]): void {
    if (this.done) return
    // Fail first so the error reports the phase, then tear the exchange down. undici calls
    // onConnect just before writing the request: without it nothing reached the upstream
    // (still queued or connecting), which makes the attempt safe to retry elsewhere.
    this.finish(new UpstreamTimeout({ ...this.ref, phase: which, requestSent: this.abortFn !== undefined }))
    this.abortFn?.(new AbortedByProxy(`upstream ${which} timeout`))
  }

  private arm(now: number): void {
    const due = Math.min(this.phaseMs > 0 ? this.since + this.phaseMs : Infinity, this.deadline)
    this.timerDue = due
    this.timer = due === Infinity ? undefined : setTimeout(this.onCheck, Math.max(1, Math.ceil(due - now)))
  }

  /** After a phase change: re-arm only if the new deadline is earlier than the armed one. */
  private rearmIfEarlier(now: number): void {
    if (this.paused || (this.phaseMs > 0 ? this.since + this.phaseMs : Infinity) >= this.timerDue) return
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.arm(now)
  }

  /**
   * The upload is stuck on the upstream: undici paused the body stream because the socket
   * does not drain. Otherwise it waits on the client, whose pace the listener's own
   * body timeouts bound; that is not the upstream's fault.
   */
  private uploadStalled(): boolean {
    const body = this.request.body as Readable
    return typeof body?.isPaused === "function" && (body.isPaused() || body.readableLength > 0)
  }

  private check(): void {
    this.timer = undefined
    this.timerDue = Infinity
    if (this.done) return
    const now = performance.now()
    if (this.paused) {
      const stallMs = this.request.clientStallTimeoutMs ?? 0
      if (stallMs <= 0) return
      if (now < this.pausedAt + stallMs) {
        this.timer = setTimeout(this.onCheck, Math.max(1, Math.ceil(this.pausedAt + stallMs - now)))
        return
      }
      // The client has not taken what is buffered for it for that long: it does not get to
      // hold an upstream connection any longer. The rest of the response is dropped with it.
      return this.downstreamFailed("slow_reader", "client not reading")
    }
    if (now >= this.deadline) return this.fireTimeout("request")
    if (this.phaseMs > 0 && now >= this.since + this.phaseMs) {
      if (this.phase !== "write" || this.uploadStalled()) return this.fireTimeout(this.phase)
      this.since = now
    }
    this.arm(now)
  }

  /**
   * The client took what was buffered. Node may emit `drain` synchronously from inside
   * another response's `write` (a pipelined response queued behind this one), which can be
   * inside another undici parser's callback; undici's parsers must not be re-entered, so the
   * upstream is resumed from a microtask, once the current parser has returned.
   */
  private clientDrained(): void {
    if (this.done || !this.paused || this.resumeQueued) return
    this.resumeQueued = true
    queueMicrotask((this.onResume ??= () => this.resumeUpstream()))
  }

  private resumeUpstream(): void {
    this.resumeQueued = false
    if (this.done || !this.paused) return
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.paused = false
    const now = performance.now()
    this.deadline += now - this.pausedAt
    this.since = now
    this.arm(now)
    try {
      this.resumeData?.()
    } catch {
      // never let a resume failure escape a microtask (it would take the process down)
      this.sinkFailed()
    }
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortFn = abort
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer)
    // Interrupted while queued in the pool: never let it reach the upstream.
    if (this.done) return abort(new AbortedByProxy("cancelled before send"))
    if (this.streamed && this.phase === "headers") {
      this.phase = "write"
      this.phaseMs = this.request.writeTimeoutMs ?? 0
      this.since = performance.now()
      this.rearmIfEarlier(this.since)
    }
  }

  /** Upload progress: observed only for streamed bodies. */
  onBodySent(): void {
    if (this.phase === "write") this.since = performance.now()
  }

  onRequestSent(): void {
    if (this.phase !== "write" || this.done) return
    // the head deadline of a request with a body counts from the end of the upload
    this.phase = "headers"
    this.phaseMs = this.request.headersTimeoutMs
    this.since = performance.now()
    this.rearmIfEarlier(this.since)
  }

  onHeaders(statusCode: number, rawHeaders: Array<Buffer>, resume: () => void): boolean {
    if (this.done) return false
    if (statusCode < 200) return true // 1xx informational: keep waiting
    this.resumeData = resume
    this.headersSeen = true
    this.status = statusCode
    this.phase = "body-idle"
    this.phaseMs = this.request.bodyIdleTimeoutMs
    this.since = performance.now()
    this.rearmIfEarlier(this.since)
    try {
      if (!this.sink.start(statusCode, rawHeaders)) this.discarded = true
    } catch {
      this.sinkFailed()
      return false
    }
    return true
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false
    this.bytes += chunk.length
    if (this.discarded) return true
    this.since = performance.now()
    let more: boolean
    try {
      more = this.sink.data(chunk)
    } catch {
      this.sinkFailed()
      return false
    }
    if (more) return true
    this.paused = true
    // While the client is slow, the idle deadline is the client's problem, not the upstream's,
    // and the time does not count against the attempt's total deadline either (the listener's
    // write timeout bounds a client that does not read).
    this.pausedAt = this.since
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.timerDue = Infinity
    const stallMs = this.request.clientStallTimeoutMs ?? 0
    if (stallMs > 0) this.timer = setTimeout(this.onCheck, stallMs)
    try {
      this.sink.onDrain((this.onClientDrained ??= () => this.clientDrained()))
    } catch {
      this.sinkFailed()
    }
    return false
  }

  /** undici's types say strings; its HTTP/1.1 parser hands raw Buffers. Both are handled. */
  onComplete(trailers: Array<string> | null): void {
    if (this.done) return
    if (!this.discarded) {
      try {
        this.sink.end(trailers !== undefined && trailers !== null && trailers.length > 0 ? trailers : undefined)
      } catch {
        return this.sinkFailed()
      }
    }
    this.finish(undefined, { status: this.status, bytes: this.bytes, discarded: this.discarded })
  }

  /** A 101 to an `upgrade` request: the socket goes to the sink, the exchange is over. */
  onUpgrade(statusCode: number, rawHeaders: Array<Buffer> | null, socket: Socket): void {
    if (this.done) {
      socket.destroy()
      return
    }
    this.headersSeen = true
    this.status = statusCode
    let taken: "upstream" | "client" | undefined = "upstream"
    try {
      if (this.sink.upgrade !== undefined) taken = this.sink.upgrade(statusCode, rawHeaders ?? [], socket)
    } catch {
      taken = "client"
    }
    if (taken === undefined) return this.finish(undefined, { status: statusCode, bytes: 0, discarded: false })
    socket.destroy()
    if (taken === "client") return this.finish(new DownstreamError({ status: 502, reason: "client_write_failed" }))
    this.finish(new UpstreamProtocolError({ ...this.ref, reason: "malformed", message: "upgrade answer does not fit the handshake", requestSent: true }))
  }

  onError(err: Error): void {
    if (this.done) return
    this.finish(classifyUpstreamError(this.ref, err, this.headersSeen))
  }

  /** Client gone or outer deadline: abort, clear every timer; `onDone` is not called. */
  cancel(): void {
    if (this.done) return
    this.done = true
    this.clearTimers()
    this.releaseSlot()
    this.abortFn?.(new AbortedByProxy("downstream went away"))
  }
}

/**
 * Send one request through `dispatcher` and stream the answer into `sink`; `onDone` reports
 * the outcome or a typed upstream error exactly once. Returns the exchange itself (no closure)
 * as the handle to cancel it (client gone, the route's deadline): that aborts the exchange and
 * clears every timer, and `onDone` is not called afterwards.
 */
export const startExchange = (
  dispatcher: Dispatcher,
  ref: TargetRef,
  request: ForwardRequest,
  sink: ResponseSink,
  onDone: ExchangeDone,
  /** The target's connection admission; none = straight to the dispatcher. */
  gate?: PoolGate
): ExchangeHandle => {
  const x = new Exchange(ref, request, sink, onDone, dispatcher, gate)
  x.start()
  return x
}
