/**
 * The access log stage: one line per request, built from the request
 * context and handed to a bounded, non-blocking writer (`Logs.ts`). Lines the
 * sink cannot take in time are dropped and counted, never queued without bound.
 * A configuration reload switches it on/off, moves it, changes its format.
 *
 * Refusals made by the listener before the pipeline (`makeRejectionLog`) are
 * logged too, following nginx's split: a refused request (parser errors, head
 * deadlines, CONNECT, in-flight admission) gets an access line of its own; a
 * connection-level decision (connection limits at accept, slow readers) and a
 * deadline cutting short a request the pipeline logs itself go to the error log
 * at warn, at most `REJECTION_LOG_LINES_PER_SECOND` lines per second per reason
 * plus one "suppressed" summary line. A request cut short that way has its one
 * access line from the pipeline, with the listener's status and reason
 * (`src/pipeline/Connection.ts`).
 */
import { hostname } from "node:os"
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import type { AccessLogConfig } from "../config/Schema.js"
import type { ClientCertificate, RequestContext } from "../pipeline/RequestContext.js"
import type { ClientRejection } from "../pipeline/Connection.js"
import { type AccessWebSocket, accessFormatter, type AccessLogEntry } from "./AccessFormat.js"
import { makeLogSlot, type LogDestination, type LogSwap } from "./LogSlot.js"
import type { LogOpenFailed } from "./LogWriter.js"
import type { Metrics } from "./Metrics.js"

export interface AccessLog {
  readonly write: (ctx: RequestContext) => void
  /** Writes a line built elsewhere (a refusal made before the pipeline). */
  readonly writeEntry: (entry: AccessLogEntry) => void
  readonly reopen: () => Promise<void>
  /** Resolves once the lines written so far reached their sink (old sinks of a reload included). */
  readonly flush: () => Promise<void>
  /** Opens what `next` needs; fails, changing nothing, when its file cannot be opened. */
  readonly prepare: (next: AccessLogConfig) => Either.Either<LogSwap, LogOpenFailed>
  /** Flushes and closes (the scope does it). */
  readonly close: () => Promise<void>
}

const instanceId = `${hostname()}:${process.pid}`

const protocolOf = (httpVersion: string): string =>
  httpVersion === "1.1" ? "HTTP/1.1" : httpVersion === "1.0" ? "HTTP/1.0" : `HTTP/${httpVersion}`

export const toAccessEntry = (ctx: RequestContext): AccessLogEntry => {
  const cl = ctx.req.headers["content-length"]
  const durationMs = performance.now() - ctx.start
  return {
    timestamp: Date.now() - Math.round(durationMs),
    trace_id: ctx.traceId,
    method: ctx.method,
    path: ctx.path,
    query: ctx.query === "" ? undefined : ctx.query,
    protocol: protocolOf(ctx.req.httpVersion),
    status: ctx.status,
    body_bytes: cl === undefined ? 0 : Number(cl) || 0,
    duration_ms: durationMs,
    client_ip: ctx.clientIp,
    user_agent: ctx.req.headers["user-agent"],
    referer: ctx.req.headers["referer"],
    host: ctx.host,
    route_id: ctx.routeId === "" ? undefined : ctx.routeId,
    upstream: ctx.upstreamId === "" ? undefined : ctx.upstreamId,
    upstream_attempts: ctx.attempts,
    upstream_addr: ctx.upstreamAddr === "" ? undefined : ctx.upstreamAddr,
    instance_id: instanceId,
    body_bytes_sent: ctx.bytesSent,
    error: ctx.error,
    ...(ctx.tap?.result !== undefined ? { cache: ctx.tap.result } : undefined),
    ...(ctx.tls?.clientCert !== undefined ? clientCertFields(ctx.tls.clientCert) : undefined),
    ...(ctx.websocket?.summary !== undefined ? { websocket: websocketFields(ctx.websocket.summary) } : undefined),
    ...(ctx.compression !== undefined
      ? { compression: { encoding: ctx.compression.encoding, bytes_in: ctx.compression.bytesIn, bytes_out: ctx.compression.bytesOut } }
      : undefined)
  }
}

/** What a tunnel reports when it ends (websocket/TunnelOptions.ts `TunnelSummary`), as the access line reads it. */
type TunnelSummary = NonNullable<NonNullable<RequestContext["websocket"]>["summary"]>

const websocketFields = (s: TunnelSummary): AccessWebSocket => ({
  bytes_from_client: s.bytesFromClient,
  bytes_to_client: s.bytesToClient,
  bytes_from_upstream: s.bytesFromUpstream,
  bytes_to_upstream: s.bytesToUpstream,
  frames_from_client: s.framesFromClient,
  frames_from_upstream: s.framesFromUpstream,
  frames_dropped: s.framesDropped,
  close_code: s.closeCode ?? null,
  close_reason: s.closeReason,
  closed_by: s.closedBy,
  end_reason: s.reason
})

const clientCertFields = (c: ClientCertificate) => ({
  client_cert_subject: c.subject,
  client_cert_issuer: c.issuer,
  client_cert_serial: c.serial,
  client_cert_fingerprint: c.fingerprint256
})

const destination = (config: AccessLogConfig): LogDestination | undefined =>
  config.enabled ? { file: config.file, bufferSize: config.bufferSize, flushIntervalMs: config.flushIntervalMs } : undefined

/**
 * The access log; a reload applies `access-log {}` through `prepare` (see
 * `LogSlot`): on/off, file (or stdout), format and buffer size. Per request,
 * `write` reads the writer and formatter in force: two variable reads.
 */
export const makeAccessLog = (config: AccessLogConfig, metrics: Metrics): Effect.Effect<AccessLog, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync((): AccessLog => {
      const slot = makeLogSlot({ name: "access", onDrop: (n) => metrics.logDropped.add(n, "access") }, destination(config))
      let format = accessFormatter(config.format)
      return {
        write: (ctx) => {
          const writer = slot.current
          if (writer !== undefined) writer.write(format(toAccessEntry(ctx)))
        },
        writeEntry: (entry) => {
          const writer = slot.current
          if (writer !== undefined) writer.write(format(entry))
        },
        reopen: async () => slot.current?.reopen(),
        flush: async () => {
          await Promise.all([slot.current?.flush(), slot.retired()])
        },
        prepare: (next) =>
          Either.map(slot.prepare(destination(next)), (swap) => ({
            commit: () => {
              swap.commit()
              format = accessFormatter(next.format)
            },
            abort: swap.abort
          })),
        close: slot.close
      }
    }),
    (log) => Effect.promise(() => log.close())
  )

// ---------------------------------------------------------------------------
// Refusals made before the pipeline
// ---------------------------------------------------------------------------

/**
 * Error-log lines per second per reason for connection-level refusals; the rest of
 * the second is counted and reported in one "suppressed" line. A flood of refused
 * connections thus costs at most this many lines a second per reason (the
 * `sentinel_rejected_total` counter stays exact).
 */
export const REJECTION_LOG_LINES_PER_SECOND = 20

/** What the parser read of a request head: the request line, Host and User-Agent. */
export interface HeadSeen {
  readonly method: string
  readonly path: string
  readonly query: string | undefined
  readonly protocol: string
  readonly host: string | undefined
  readonly userAgent: string | undefined
}

/** Longest prefix of the parser's buffer looked at (a 431 head may be much longer). */
const HEAD_SCAN_BYTES = 16 * 1024
/** Longest header value kept in the log line. */
const VALUE_MAX = 1024
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) ([\x21-\x7e]{1,8192}) (HTTP\/\d\.\d)\r?$/

const splitTarget = (target: string): readonly [string, string | undefined] => {
  const q = target.indexOf("?")
  return q < 0 ? [target, undefined] : [target.slice(0, q), target.slice(q + 1) || undefined]
}

/**
 * The request line (and Host, User-Agent) at the start of the bytes the parser
 * refused, when they start with a well-formed request line; else undefined (the
 * chunk may be a later part of the head, or garbage). Error path only.
 */
export const headOfPacket = (raw: Buffer): HeadSeen | undefined => {
  const text = raw.subarray(0, HEAD_SCAN_BYTES).toString("latin1")
  const lines = text.split("\n")
  // the last element is an incomplete line (or "" after a final newline): never used
  lines.pop()
  const m = lines.length > 0 ? REQUEST_LINE.exec(lines[0]) : null
  if (m === null) return undefined
  let host: string | undefined
  let userAgent: string | undefined
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i]
    if (line === "") break
    const colon = line.indexOf(":")
    if (colon <= 0) continue
    const name = line.slice(0, colon).toLowerCase()
    if (name === "host" && host === undefined) host = line.slice(colon + 1).trim().slice(0, VALUE_MAX)
    else if (name === "user-agent" && userAgent === undefined) userAgent = line.slice(colon + 1).trim().slice(0, VALUE_MAX)
  }
  const [path, query] = splitTarget(m[2])
  return { method: m[1], path, query, protocol: m[3], host, userAgent }
}

const headOfRequest = (req: NonNullable<ClientRejection["req"]>): HeadSeen => {
  const [path, query] = splitTarget(req.url ?? "")
  const host = req.headers.host
  const ua = req.headers["user-agent"]
  return {
    method: req.method ?? "-",
    path,
    query,
    protocol: `HTTP/${req.httpVersion}`,
    host: host === undefined ? undefined : host.slice(0, VALUE_MAX),
    userAgent: ua === undefined ? undefined : ua.slice(0, VALUE_MAX)
  }
}

/** What is known of the refused request's head. */
export const headOfRejection = (r: ClientRejection): HeadSeen | undefined =>
  r.req !== undefined ? headOfRequest(r.req) : r.rawPacket !== undefined ? headOfPacket(r.rawPacket) : undefined

/**
 * The access line of a refused request: status, `error` = the reason, what the parser
 * read (else null / "-"), a fresh trace id, no route or upstream; the timestamp is when
 * the wait that ended began (`durationMs` before now).
 */
export const toRejectionEntry = (r: ClientRejection, traceId: string, now: number = Date.now()): AccessLogEntry => {
  const head = headOfRejection(r)
  const duration = r.durationMs ?? 0
  return {
    timestamp: now - duration,
    trace_id: traceId,
    method: head?.method,
    path: head?.path,
    query: head?.query,
    protocol: head?.protocol,
    status: r.status,
    body_bytes: 0,
    duration_ms: duration,
    client_ip: r.clientIp,
    user_agent: head?.userAgent,
    referer: undefined,
    host: head?.host,
    route_id: undefined,
    upstream: undefined,
    upstream_attempts: 0,
    upstream_addr: undefined,
    instance_id: instanceId,
    body_bytes_sent: r.bytesSent ?? 0,
    listener: r.listener,
    error: r.reason
  }
}

/** Per-second budget of error-log lines, per reason (see `REJECTION_LOG_LINES_PER_SECOND`). */
export interface RejectionLimiter {
  /** True when a line for `reason` may be written now; false counts it as suppressed. */
  readonly admit: (reason: string) => boolean
  /** Closes the window of every reason (reports what it suppressed) and stops the timers. */
  readonly close: () => void
}

interface Window {
  start: number
  lines: number
  suppressed: number
  timer: NodeJS.Timeout | undefined
}

/**
 * At most `perSecond` lines per reason in each one-second window (starting at the
 * first line of the window); the count suppressed in a window is reported through
 * `onSuppressed` when the window ends (a timer armed by the first suppressed line,
 * so a flood that stops is still summed up). Reasons are code constants: the map is
 * bounded by their number.
 */
export const makeRejectionLimiter = (
  perSecond: number,
  onSuppressed: (reason: string, suppressed: number, windowMs: number) => void,
  now: () => number = Date.now,
  windowMs = 1000
): RejectionLimiter => {
  const windows = new Map<string, Window>()
  const report = (reason: string, w: Window) => {
    if (w.timer !== undefined) clearTimeout(w.timer)
    w.timer = undefined
    const n = w.suppressed
    w.suppressed = 0
    if (n > 0) onSuppressed(reason, n, windowMs)
  }
  return {
    admit: (reason) => {
      const t = now()
      let w = windows.get(reason)
      if (w === undefined) {
        w = { start: t, lines: 0, suppressed: 0, timer: undefined }
        windows.set(reason, w)
      } else if (t - w.start >= windowMs) {
        report(reason, w)
        w.start = t
        w.lines = 0
      }
      if (w.lines < perSecond) {
        w.lines++
        return true
      }
      w.suppressed++
      if (w.timer === undefined) {
        const win = w
        win.timer = setTimeout(() => report(reason, win), Math.max(0, win.start + windowMs - t))
        win.timer.unref()
      }
      return false
    },
    close: () => {
      for (const [reason, w] of windows) report(reason, w)
    }
  }
}

export interface RejectionLogOptions {
  readonly accessLog: AccessLog
  /** The trace id generator in force (`system { trace-id-format }`). */
  readonly newTraceId: () => string
  /** One error-log line at warn level with structured fields. Must not throw. */
  readonly warn: (message: string, fields: Readonly<Record<string, string | number>>) => void
  /** Default `REJECTION_LOG_LINES_PER_SECOND`. */
  readonly linesPerSecond?: number | undefined
}

export interface RejectionLog {
  /** Logs one refusal where it belongs (see the module comment). Never throws. */
  readonly record: (r: ClientRejection) => void
  readonly close: () => void
}

const messageOf = (r: ClientRejection): string =>
  r.stage === "connection" && r.status === 503
    ? "connection refused"
    : r.reason.endsWith("timeout")
      ? "client timed out"
      : "client rejected"

/** Refusal logging, split between the access log and the (rate-limited) error log. */
export const makeRejectionLog = (options: RejectionLogOptions): RejectionLog => {
  const limiter = makeRejectionLimiter(options.linesPerSecond ?? REJECTION_LOG_LINES_PER_SECOND, (reason, suppressed, windowMs) =>
    options.warn("client rejection log lines suppressed", { reason, suppressed, window_ms: windowMs })
  )
  return {
    record: (r) => {
      try {
        if (r.stage === "head" || r.stage === "request") {
          options.accessLog.writeEntry(toRejectionEntry(r, options.newTraceId()))
          return
        }
        if (!limiter.admit(r.reason)) return
        const fields: Record<string, string | number> = {
          listener: r.listener,
          client_ip: r.clientIp,
          status: r.status,
          reason: r.reason,
          stage: r.stage
        }
        if (r.durationMs !== undefined && r.durationMs > 0) fields.duration_ms = Math.round(r.durationMs)
        if (r.req !== undefined) {
          const head = headOfRequest(r.req)
          fields.method = head.method
          fields.path = head.path
          if (head.host !== undefined) fields.host = head.host
        }
        options.warn(messageOf(r), fields)
      } catch {
        // logging a refusal must never break the listener
      }
    },
    close: limiter.close
  }
}
