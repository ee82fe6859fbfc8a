/**
 * Access, audit and error logs: bounded, non-blocking writers plus formatters,
 * and the JSON application logger plugged into Effect's `Logger`.
 *
 * Why a writer of our own: a log sink that stalls (full disk, a paused log
 * collector on stdout) must never stall the proxy. `write()` is synchronous and
 * O(1): it appends to a bounded queue and returns. A pump hands batches of
 * queued lines to the sink (an `fs.WriteStream`, whose writes run on libuv's
 * thread pool) and stops handing more as soon as the sink reports
 * back-pressure. When the queue is full, new lines are dropped and counted
 * (`onDrop`, wired to `sentinel_log_dropped_total{log}`). Memory is bounded by
 * `bufferSize` lines / `maxBufferBytes` bytes plus one batch inside the sink.
 */
import * as fs from "node:fs"
import type { Writable } from "node:stream"
import { Cause, Data, Effect, Either, HashMap, Layer, List, Logger, LogLevel } from "effect"

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

export interface LogWriterOptions {
  /** Log name, used in error reports and as the `log` label of the drop metric ("access", "audit", "error"). */
  readonly name: string
  /** File to append to; `"-"` or absent writes to the standard stream `fd` (default stdout). */
  readonly file?: string | undefined
  /** Standard stream used when `file` is absent or `"-"`: 1 stdout (default), 2 stderr. */
  readonly fd?: 1 | 2 | undefined
  /** Maximum lines queued while the sink is slow; further lines are dropped. Default 10000. */
  readonly bufferSize?: number | undefined
  /** Maximum bytes queued while the sink is slow (a line counts its UTF-16 length when admitted). Default 16 MiB. */
  readonly maxBufferBytes?: number | undefined
  /** Called with the number of lines dropped (queue full, sink failed, or writer closed). */
  readonly onDrop?: ((lines: number) => void) | undefined
  /**
   * Called once per outage when the sink fails (open or write error); the writer
   * retries every `retryMs`. Default: one line on stderr.
   */
  readonly onError?: ((error: Error) => void) | undefined
  /**
   * Lines may wait this long to be written together (a batch also goes out once it reaches
   * 256 KiB, or when someone flushes). 0: write as soon as the previous write finished.
   * Default 0.
   */
  readonly flushIntervalMs?: number | undefined
  /** Delay before reopening a failed sink. Default 1000 ms. */
  readonly retryMs?: number | undefined
  /** Upper bound for `close()` / `reopen()` waiting on a stalled sink. Default 5000 ms. */
  readonly closeTimeoutMs?: number | undefined
  /** Sink factory replacing file/stdout (tests, custom transports). Called again on reopen. */
  readonly sink?: (() => Writable) | undefined
  /**
   * A descriptor already open on `file` for appending (see `openLogWriter`), used by the
   * first sink; reopens open `file` by path again. The writer owns (closes) it.
   */
  readonly openedFd?: number | undefined
}

export interface LogWriterStats {
  /** Lines waiting in the writer's queue. */
  readonly queued: number
  /** Lines handed to the sink and confirmed written. */
  readonly written: number
  /** Lines dropped since start. */
  readonly dropped: number
}

export interface LogWriter {
  /** Queues one line (without trailing newline). Never blocks, never throws. */
  readonly write: (line: string) => void
  /** Resolves once every line queued so far is written (or dropped). Bounded by `closeTimeoutMs`. */
  readonly flush: () => Promise<void>
  /** Closes and reopens the same path (logrotate's SIGUSR1). Queued lines go to the new file. */
  readonly reopen: () => Promise<void>
  /** Flushes and closes; later writes are dropped. Idempotent. */
  readonly close: () => Promise<void>
  readonly stats: () => LogWriterStats
}

/** Lines per batch handed to the sink: large enough to amortise syscalls, small enough to stay one chunk. */
const BATCH_BYTES = 256 * 1024

const withTimeout = (p: Promise<void>, ms: number): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    t.unref()
    p.then(
      () => {
        clearTimeout(t)
        resolve()
      },
      () => {
        clearTimeout(t)
        resolve()
      }
    )
  })

/** Builds the writer; it owns its sink (see `makeLogWriterScoped` for the scoped form). */
export const makeLogWriter = (options: LogWriterOptions): LogWriter => {
  const bufferSize = Math.max(1, options.bufferSize ?? 10_000)
  const maxBytes = Math.max(1, options.maxBufferBytes ?? 16 * 1024 * 1024)
  const retryMs = options.retryMs ?? 1000
  const flushIntervalMs = options.flushIntervalMs ?? 0
  const closeTimeoutMs = options.closeTimeoutMs ?? 5000
  const onDrop = options.onDrop
  const onError =
    options.onError ??
    ((e: Error) => {
      // Synchronous, once per outage: the operator must learn that lines are being dropped.
      try {
        fs.writeSync(
          2,
          `${formatErrorLine("error", `log "${options.name}" sink failed (${e.message}); retrying every ${retryMs} ms, lines are dropped and counted`, { pid: process.pid, log: options.name })}\n`
        )
      } catch {
        /* stderr gone too */
      }
    })
  const isStd = options.file === undefined || options.file === "-"

  let preopened = options.openedFd
  const openSink = (): Writable => {
    if (options.sink) return options.sink()
    if (preopened !== undefined && !isStd) {
      const fd = preopened
      preopened = undefined
      return fs.createWriteStream(options.file!, { fd, flags: "a" })
    }
    if (isStd) {
      // A WriteStream on the inherited descriptor: writes run on the thread pool,
      // unlike process.stdout, which writes synchronously to files and pipes.
      return fs.createWriteStream("", { fd: options.fd ?? 1, autoClose: false })
    }
    return fs.createWriteStream(options.file!, { flags: "a" })
  }

  // Lines are encoded at once into large byte slabs (off the JS heap): no string per line is
  // kept alive until its write, nothing is converted again when it is written, and a batch is
  // one slice of a slab. A slab region handed to the sink is never written again (a sink may
  // keep the chunk); a full slab is sealed into `sealed` and a fresh one started.
  let sealed: Array<{ readonly bytes: Buffer; readonly lines: number }> = []
  let slab: Buffer | undefined
  /** Start of the region of `slab` not yet handed to the sink, and its end. */
  let slabStart = 0
  let slabEnd = 0
  let slabLines = 0
  let queuedLines = 0
  let queuedBytes = 0
  let written = 0
  let dropped = 0
  let inflightWrites = 0
  /** Bumped per sink: a write counts as in flight only on the sink it was handed to. */
  let generation = 0
  let sink: Writable | undefined
  let blocked = false
  let scheduled = false
  let reopening = false
  let closed = false
  let failed = false
  let retryTimer: NodeJS.Timeout | undefined
  let waiters: Array<() => void> = []

  const drop = (n: number) => {
    if (n <= 0) return
    dropped += n
    onDrop?.(n)
  }

  const queued = () => queuedLines

  /** Moves the pending region of the current slab to `sealed` (when it has lines). */
  const seal = () => {
    if (slab === undefined || slabLines === 0) return
    sealed.push({ bytes: slab.subarray(slabStart, slabEnd), lines: slabLines })
    slabStart = slabEnd
    slabLines = 0
  }

  const settleWaiters = () => {
    if (waiters.length === 0) return
    if (queued() === 0 && inflightWrites === 0) {
      const ws = waiters
      waiters = []
      for (const w of ws) w()
    }
  }

  let delayed: NodeJS.Timeout | undefined
  const schedule = (now = false) => {
    // One write in flight at a time: lines arriving meanwhile go out together in the next
    // write (self-clocking batches; thousands of tiny writes per second cost more CPU than
    // the formatting of the lines). With a flush interval, small batches also wait for it:
    // each write is a thread-pool round trip, which at low concurrency (a write per request)
    // cost about half the proxy's throughput on one connection.
    if (scheduled || blocked || reopening || sink === undefined || inflightWrites > 0) return
    if (!now && flushIntervalMs > 0 && queuedBytes < BATCH_BYTES && waiters.length === 0) {
      if (delayed === undefined) {
        delayed = setTimeout(() => {
          delayed = undefined
          schedule(true)
        }, flushIntervalMs)
        delayed.unref()
      }
      return
    }
    if (delayed !== undefined) {
      clearTimeout(delayed)
      delayed = undefined
    }
    scheduled = true
    setImmediate(pump)
  }

  const onDrain = () => {
    blocked = false
    pump()
  }

  const pump = () => {
    scheduled = false
    const s = sink
    while (s !== undefined && !blocked && !reopening && inflightWrites === 0 && queued() > 0) {
      if (sealed.length === 0) seal()
      // one slab region per write (a slab is at most about BATCH_BYTES)
      const { bytes: chunk, lines } = sealed.shift()!
      queuedLines -= lines
      queuedBytes -= chunk.length
      inflightWrites++
      const gen = generation
      const ok = s.write(chunk, (err) => {
        // A write handed to a sink that failed or was rotated away no longer holds the queue.
        if (gen === generation) inflightWrites--
        if (err) drop(lines)
        else {
          written += lines
          failed = false // the sink works again: report the next failure
        }
        if (queued() > 0) schedule()
        settleWaiters()
      })
      if (!ok) {
        blocked = true
        s.once("drain", onDrain)
      }
    }
    settleWaiters()
  }

  const attach = () => {
    const s = openSink()
    sink = s
    blocked = false
    generation++
    inflightWrites = 0
    s.on("error", (err: Error) => {
      if (sink !== s) return
      // The failed sink's buffered writes are reported dropped by their callbacks.
      s.off("drain", onDrain)
      sink = undefined
      blocked = false
      // One report per outage, not one per retry.
      if (!failed) onError(err)
      failed = true
      if (!closed && retryTimer === undefined) {
        retryTimer = setTimeout(() => {
          retryTimer = undefined
          if (!closed && !reopening && sink === undefined) {
            attach()
            schedule()
          }
        }, retryMs)
        retryTimer.unref()
      }
    })
  }

  const endSink = (s: Writable): Promise<void> =>
    withTimeout(
      new Promise<void>((resolve) => {
        s.off("drain", onDrain)
        if (s.destroyed || s.writableFinished) return resolve()
        s.once("close", () => resolve())
        s.once("error", () => resolve())
        s.end(() => {
          // autoClose:false streams (stdout) never emit "close".
          if (isStd && !options.sink) resolve()
        })
      }),
      closeTimeoutMs
    ).then(() => {
      if (!s.destroyed && !(isStd && !options.sink)) s.destroy()
    })

  attach()

  const write = (line: string) => {
    if (closed) return drop(1)
    // (UTF-8 takes at most 3 bytes per UTF-16 unit; a line of plain ASCII, the usual, takes 1)
    const room = line.length * 3 + 1
    if (queued() >= bufferSize || queuedBytes + line.length + 1 > maxBytes) return drop(1)
    if (slab === undefined || slabEnd + room > slab.length) {
      seal()
      slab = Buffer.allocUnsafeSlow(Math.max(BATCH_BYTES, room))
      slabStart = 0
      slabEnd = 0
    }
    const n = slab.write(line, slabEnd, "utf8")
    slab[slabEnd + n] = 10 // \n
    slabEnd += n + 1
    slabLines++
    queuedLines++
    queuedBytes += n + 1
    schedule()
  }

  const flush = (): Promise<void> => {
    if (queued() === 0 && inflightWrites === 0) return Promise.resolve()
    const p = new Promise<void>((resolve) => waiters.push(resolve))
    schedule(true)
    return withTimeout(p, closeTimeoutMs)
  }

  const reopen = async (): Promise<void> => {
    if (closed || reopening) return
    if (isStd && !options.sink) return // nothing to rotate
    reopening = true
    const old = sink
    sink = undefined
    // Lines already handed to the old stream go to the old (renamed) file.
    if (old) await endSink(old)
    if (retryTimer) {
      clearTimeout(retryTimer)
      retryTimer = undefined
    }
    reopening = false
    if (closed) return
    attach()
    schedule()
  }

  const close = async (): Promise<void> => {
    if (closed) return
    await flush()
    closed = true
    if (retryTimer) clearTimeout(retryTimer)
    if (delayed !== undefined) clearTimeout(delayed)
    const left = queued()
    sealed = []
    slab = undefined
    slabLines = 0
    queuedLines = 0
    queuedBytes = 0
    drop(left)
    const s = sink
    sink = undefined
    if (s) await endSink(s)
    settleWaiters()
  }

  return { write, flush, reopen, close, stats: () => ({ queued: queued(), written, dropped }) }
}

/** A log file that could not be opened for appending (a reload naming it is refused). */
export class LogOpenFailed extends Data.TaggedError("LogOpenFailed")<{
  /** "access", "audit", "error". */
  readonly log: string
  readonly file: string
  readonly message: string
}> {}

/**
 * Builds a writer after opening its file for appending right now, so that a path that
 * cannot be written (missing directory, no permission, a directory) is an error the
 * caller sees, as nginx fails `-s reload` on a log it cannot open. Stdout/stderr and
 * custom sinks cannot fail here.
 */
export const openLogWriter = (options: LogWriterOptions): Either.Either<LogWriter, LogOpenFailed> => {
  if (options.sink !== undefined || options.file === undefined || options.file === "-") return Either.right(makeLogWriter(options))
  let fd: number
  try {
    fd = fs.openSync(options.file, "a")
  } catch (e) {
    return Either.left(new LogOpenFailed({ log: options.name, file: options.file, message: (e as Error).message }))
  }
  return Either.right(makeLogWriter({ ...options, openedFd: fd }))
}

/** The writer as a scoped resource: flushed and closed when the scope closes. */
export const makeLogWriterScoped = (options: LogWriterOptions) =>
  Effect.acquireRelease(
    Effect.sync(() => makeLogWriter(options)),
    (w) => Effect.promise(() => w.close())
  )

// ---------------------------------------------------------------------------
// Reloadable destinations
// ---------------------------------------------------------------------------

/** A prepared reload of one log: `commit` applies it, `abort` discards it. Both synchronous. */
export interface LogSwap {
  readonly commit: () => void
  readonly abort: () => void
}

/** Swaps that all apply or all abort together. */
export const combineLogSwaps = (swaps: ReadonlyArray<LogSwap>): LogSwap => ({
  commit: () => {
    for (const s of swaps) s.commit()
  },
  abort: () => {
    for (const s of swaps) s.abort()
  }
})

/** Where a log goes; settings with the same file and buffer size keep their writer across a reload. */
export interface LogDestination {
  /** Path; absent or "-" = the standard stream of the log. */
  readonly file?: string | undefined
  readonly bufferSize: number
  /** See `LogWriterOptions.flushIntervalMs`. Default 0. */
  readonly flushIntervalMs?: number | undefined
}

/**
 * The writer of one log, replaceable by a configuration reload (nginx's reload
 * semantics): `prepare` opens the new destination up front and fails, changing
 * nothing, when its file cannot be opened; `commit` swaps the new writer in
 * (lines written from then on go to it) and closes the old one, which first
 * flushes the lines already queued to the old sink. Each line is queued in
 * exactly one writer, so none is lost or duplicated by a swap.
 */
export interface LogSlot {
  /** The writer in force; undefined when the log is off. Read it per line (one field read). */
  readonly current: LogWriter | undefined
  /** Opens what `next` needs (undefined = log off); the swap applies it. */
  readonly prepare: (next: LogDestination | undefined) => Either.Either<LogSwap, LogOpenFailed>
  /** Writers being flushed and closed after a swap (resolves when they are). */
  readonly retired: () => Promise<void>
  /** Closes the writer in force and waits for the retired ones. Idempotent. */
  readonly close: () => Promise<void>
}

const destinationKey = (d: LogDestination | undefined): string =>
  d === undefined ? "off" : JSON.stringify([d.file === undefined || d.file === "-" ? "-" : d.file, d.bufferSize, d.flushIntervalMs ?? 0])

const noSwap: LogSwap = { commit: () => {}, abort: () => {} }

/**
 * Builds a slot on `initial`. Its first writer is built without the open check
 * (start-up keeps the writer's report-and-retry behaviour for a sink that fails).
 */
export const makeLogSlot = (
  base: Omit<LogWriterOptions, "file" | "bufferSize" | "flushIntervalMs" | "openedFd">,
  initial: LogDestination | undefined
): LogSlot => {
  const writerFor = (d: LogDestination): LogWriterOptions => ({ ...base, file: d.file, bufferSize: d.bufferSize, flushIntervalMs: d.flushIntervalMs })
  let key = destinationKey(initial)
  const retiring = new Set<Promise<void>>()
  const retire = (w: LogWriter) => {
    const p: Promise<void> = w.close().then(() => void retiring.delete(p))
    retiring.add(p)
  }
  const slot = {
    current: initial === undefined ? undefined : makeLogWriter(writerFor(initial)),
    prepare: (next: LogDestination | undefined): Either.Either<LogSwap, LogOpenFailed> => {
      const nextKey = destinationKey(next)
      if (nextKey === key) return Either.right(noSwap)
      let fresh: LogWriter | undefined
      if (next !== undefined) {
        const opened = openLogWriter(writerFor(next))
        if (Either.isLeft(opened)) return Either.left(opened.left)
        fresh = opened.right
      }
      let done = false
      return Either.right({
        commit: () => {
          if (done) return
          done = true
          const old = slot.current
          slot.current = fresh
          key = nextKey
          if (old !== undefined) retire(old)
        },
        abort: () => {
          if (done) return
          done = true
          if (fresh !== undefined) retire(fresh)
        }
      })
    },
    retired: async () => {
      await Promise.all([...retiring])
    },
    close: async () => {
      await Promise.all([slot.current?.close(), ...retiring])
    }
  }
  return slot
}

// ---------------------------------------------------------------------------
// Access log
// ---------------------------------------------------------------------------

/** One access log record (Sentinel's field names). */
export interface AccessLogEntry {
  /** Epoch milliseconds when the request head was received. */
  readonly timestamp: number
  readonly trace_id: string
  /** Undefined (JSON null, combined "-") for a refusal made before the request line was read. */
  readonly method: string | undefined
  /** Path without the query string (undefined as `method`). */
  readonly path: string | undefined
  /** Query string without the leading "?", or undefined. */
  readonly query?: string | undefined
  /** "HTTP/1.0", "HTTP/1.1", "HTTP/2" (undefined as `method`). */
  readonly protocol: string | undefined
  readonly status: number
  /** Request body bytes received from the client. */
  readonly body_bytes: number
  /** Wall time from request head to response end, in milliseconds. */
  readonly duration_ms: number
  readonly client_ip: string
  readonly user_agent?: string | undefined
  readonly referer?: string | undefined
  readonly host?: string | undefined
  readonly route_id?: string | undefined
  readonly upstream?: string | undefined
  /** Attempts made upstream (0 when answered by the proxy). */
  readonly upstream_attempts: number
  /** Address of the upstream target that answered (last attempt). */
  readonly upstream_addr?: string | undefined
  /** Identifies the proxy process (host + worker). */
  readonly instance_id: string
  /** Response body bytes sent to the client. */
  readonly body_bytes_sent: number
  /** Tag of the typed error that ended the request, if any. */
  readonly error?: string | undefined
  /**
   * Listener id; set on refusals made by the listener before the pipeline (JSON only,
   * and only when set: request lines keep their keys).
   */
  readonly listener?: string | undefined
  /** The verified mTLS client certificate (JSON only, and only when there is one). */
  readonly client_cert_subject?: string | undefined
  readonly client_cert_issuer?: string | undefined
  readonly client_cert_serial?: string | undefined
  readonly client_cert_fingerprint?: string | undefined
  /**
   * A WebSocket handshake's tunnel, when it had one (JSON only): the line is written when the
   * tunnel ends, `duration_ms` is the whole tunnel and `body_bytes_sent` what went to the client.
   */
  readonly websocket?: AccessWebSocket | undefined
}

/** The `websocket` object of an access line. */
export interface AccessWebSocket {
  readonly bytes_from_client: number
  readonly bytes_to_client: number
  readonly bytes_from_upstream: number
  readonly bytes_to_upstream: number
  readonly frames_from_client: number
  readonly frames_from_upstream: number
  readonly frames_dropped: number
  /** The first close frame's code (null: none was sent). */
  readonly close_code: number | null
  readonly close_reason: string
  /** "client" | "upstream" | "proxy" */
  readonly closed_by: string
  /** Why the tunnel ended (`sentinel_websocket_closes_total{reason}`). */
  readonly end_reason: string
}

/** Access log formats, as in `access-log { format "json" | "combined" }`. */
export type AccessLogFormat = "json" | "combined"

/** Milliseconds rounded to microseconds, so float noise never reaches the log. */
const ZEROS = ["", "0", "00"]
/**
 * Milliseconds rounded to the microsecond, as JSON: the same text as
 * `String(Math.round(n * 1000) / 1000)` without converting a double to text (which costs more
 * than the rest of a field); only small integers are converted, and V8 caches those.
 */
export const msText = (n: number): string => {
  const us = Math.round(n * 1000)
  if (!(us >= 0 && us < 2 ** 31)) return String(us / 1000)
  const whole = (us / 1000) | 0
  let frac = us - whole * 1000
  if (frac === 0) return String(whole)
  let digits = 3
  while (frac % 10 === 0) {
    frac /= 10
    digits--
  }
  const f = String(frac)
  return `${whole}.${ZEROS[digits - f.length]}${f}`
}

/** Printable ASCII without `"` and `\\`: safe inside JSON quotes as is (the common case). */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/
/** A JSON string (or null), without JSON.stringify for the plain strings every line is made of. */
const jstr = (v: string | undefined): string => (v === undefined ? "null" : PLAIN.test(v) ? `"${v}"` : JSON.stringify(v))

/** Distinct values `jstrKnown` keeps; past it values are quoted each time (nothing is evicted). */
const KNOWN_VALUES_MAX = 512
const knownValues = new Map<string, string>()
/**
 * `jstr` for values drawn from a small set that repeat on every line (route and upstream
 * ids, target addresses, methods, error reasons): quoted once and remembered. Client-chosen
 * values can fill the table, which only makes later new values take the `jstr` path.
 */
const jstrKnown = (v: string | undefined): string => {
  if (v === undefined) return "null"
  let quoted = knownValues.get(v)
  if (quoted === undefined) {
    quoted = jstr(v)
    if (knownValues.size < KNOWN_VALUES_MAX) knownValues.set(v, quoted)
  }
  return quoted
}

let isoSecond = Number.NaN
let isoPrefix = ""
/** `Date#toISOString`, with the part up to the second computed once per second. */
export const isoTimestamp = (epochMs: number): string => {
  const second = Math.floor(epochMs / 1000)
  if (second !== isoSecond) {
    isoSecond = second
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20)
  }
  const milli = Math.floor(epochMs) - second * 1000
  return `${isoPrefix}${milli < 10 ? "00" : milli < 100 ? "0" : ""}${milli}Z`
}

/**
 * One JSON line; absent optional fields are null so every line has the same keys.
 * Built by hand rather than with JSON.stringify of an object: this runs once per
 * request and was the largest single cost of the access log.
 */
export const formatAccessJson = (e: AccessLogEntry): string =>
  `{"timestamp":"${isoTimestamp(e.timestamp)}","trace_id":${jstr(e.trace_id)},"method":${jstrKnown(e.method)}` +
  `,"path":${jstr(e.path)},"query":${jstr(e.query)},"protocol":${jstrKnown(e.protocol)},"status":${e.status}` +
  `,"body_bytes":${e.body_bytes},"duration_ms":${msText(e.duration_ms)},"client_ip":${jstr(e.client_ip)}` +
  `,"user_agent":${jstr(e.user_agent)},"referer":${jstr(e.referer)},"host":${jstr(e.host)}` +
  `,"route_id":${jstrKnown(e.route_id)},"upstream":${jstrKnown(e.upstream)},"upstream_attempts":${e.upstream_attempts}` +
  `,"upstream_addr":${jstrKnown(e.upstream_addr)},"instance_id":${jstrKnown(e.instance_id)},"body_bytes_sent":${e.body_bytes_sent}` +
  (e.listener !== undefined ? `,"listener":${jstrKnown(e.listener)}` : "") +
  (e.client_cert_fingerprint !== undefined
    ? `,"client_cert_subject":${jstr(e.client_cert_subject)},"client_cert_issuer":${jstr(e.client_cert_issuer)}` +
      `,"client_cert_serial":${jstr(e.client_cert_serial)},"client_cert_fingerprint":${jstr(e.client_cert_fingerprint)}`
    : "") +
  (e.websocket !== undefined ? `,"websocket":${JSON.stringify(e.websocket)}` : "") +
  (e.error !== undefined ? `,"error":${jstrKnown(e.error)}}` : "}")

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const pad2 = (n: number) => (n < 10 ? "0" + n : String(n))

/** `[10/Oct/2000:13:55:36 +0000]` (always UTC). */
export const clfDate = (epochMs: number): string => {
  const d = new Date(epochMs)
  return (
    `${pad2(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000`
  )
}

// Everything outside printable ASCII, plus the quote and the backslash: a client
// must not be able to forge a log line or break the field structure.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x1f"\\\x7f-\uffff]/g
const escapeChar = (c: string): string => {
  if (c === '"') return '\\"'
  if (c === "\\") return "\\\\"
  const code = c.charCodeAt(0)
  if (code <= 0xff) return "\\x" + code.toString(16).toUpperCase().padStart(2, "0")
  return Array.from(Buffer.from(c, "utf8"), (b) => "\\x" + b.toString(16).toUpperCase().padStart(2, "0")).join("")
}
/** Escapes a value for the combined format (nginx style `\xHH`); empty/absent -> "-". */
export const clfEscape = (s: string | undefined): string =>
  s === undefined || s === "" ? "-" : UNSAFE.test(s) ? ((UNSAFE.lastIndex = 0), s.replace(UNSAFE, escapeChar)) : s

/**
 * Apache combined log format plus Sentinel's suffix:
 * `%h - - [%t] "%r" %>s %b "%{Referer}i" "%{User-Agent}i" trace_id duration_ms`
 * (`%b` is "-" for an empty body, as in Apache).
 */
export const formatAccessCombined = (e: AccessLogEntry): string => {
  const target = e.query !== undefined && e.query !== "" ? `${e.path}?${e.query}` : e.path
  // no request line read (a refusal at the parser or a header deadline): `"-"`, as nginx writes
  const request = e.method === undefined ? "-" : `${clfEscape(e.method)} ${clfEscape(target)} ${clfEscape(e.protocol)}`
  return (
    `${clfEscape(e.client_ip)} - - [${clfDate(e.timestamp)}] ` +
    `"${request}" ` +
    `${e.status} ${e.body_bytes_sent > 0 ? e.body_bytes_sent : "-"} ` +
    `"${clfEscape(e.referer)}" "${clfEscape(e.user_agent)}" ` +
    `${clfEscape(e.trace_id)} ${Math.round(e.duration_ms)}`
  )
}

/** The formatter for a configured format. */
export const accessFormatter = (format: AccessLogFormat): ((e: AccessLogEntry) => string) =>
  format === "combined" ? formatAccessCombined : formatAccessJson

// ---------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------

/** One security decision (audit log). Every block/alteration is one entry. */
export interface AuditEntry {
  /** Epoch milliseconds of the decision. */
  readonly timestamp: number
  readonly trace_id: string
  /** "request_blocked" | "agent_decision" | "rate_limited" | "waf_event" | ... */
  readonly event_type: string
  /** Who decided: `agent:<id>`, `filter:<id>`, `limit:<name>`. */
  readonly source: string
  /** "allow" | "block" | "redirect" | "challenge" | "modify" | ... */
  readonly decision: string
  /** Status sent to the client, when the decision produced a response. */
  readonly status?: number | undefined
  readonly rule_ids?: ReadonlyArray<string> | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly reason?: string | undefined
  readonly client_ip: string
  readonly route_id?: string | undefined
  readonly method?: string | undefined
  readonly path?: string | undefined
}

export const formatAudit = (e: AuditEntry): string =>
  JSON.stringify({
    timestamp: new Date(e.timestamp).toISOString(),
    trace_id: e.trace_id,
    event_type: e.event_type,
    source: e.source,
    decision: e.decision,
    status: e.status ?? null,
    rule_ids: e.rule_ids ?? [],
    tags: e.tags ?? [],
    reason: e.reason ?? null,
    client_ip: e.client_ip,
    route_id: e.route_id ?? null,
    method: e.method ?? null,
    path: e.path ?? null
  })

// ---------------------------------------------------------------------------
// Error log / application logger
// ---------------------------------------------------------------------------

/** Levels as spelled in `logging { level "info" }` / `error-log { level "warn" }`. */
export type LogLevelName = "trace" | "debug" | "info" | "warn" | "error"

export const toLogLevel = (name: LogLevelName): LogLevel.LogLevel => {
  switch (name) {
    case "trace":
      return LogLevel.Trace
    case "debug":
      return LogLevel.Debug
    case "info":
      return LogLevel.Info
    case "warn":
      return LogLevel.Warning
    case "error":
      return LogLevel.Error
  }
}

const levelName = (level: LogLevel.LogLevel): string => {
  switch (level._tag) {
    case "Warning":
      return "warn"
    case "Fatal":
      return "fatal"
    default:
      return level.label.toLowerCase()
  }
}

/** One error-log line for a plain (non-Effect) caller. */
export const formatErrorLine = (
  level: LogLevelName | "fatal",
  message: string,
  fields: Readonly<Record<string, unknown>> = {},
  now: number = Date.now()
): string => {
  try {
    return JSON.stringify({ timestamp: new Date(now).toISOString(), level, message, ...fields })
  } catch {
    return JSON.stringify({ timestamp: new Date(now).toISOString(), level, message })
  }
}

const messageText = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts
    .map((p) => {
      if (typeof p === "string") return p
      if (p instanceof Error) return p.message
      try {
        return JSON.stringify(p)
      } catch {
        return String(p)
      }
    })
    .join(" ")
}

/**
 * Effect logger writing one JSON line per log call:
 * `{timestamp, level, message, fiber, spans?, cause?, ...annotations}`.
 */
export const makeJsonLogger = (
  write: (line: string) => void,
  /** A minimum level read per call (a reloadable level); lines below it are not built. */
  minimum?: () => LogLevel.LogLevel
): Logger.Logger<unknown, void> =>
  Logger.make(({ annotations, cause, date, fiberId, logLevel, message, spans }) => {
    if (minimum !== undefined && logLevel.ordinal < minimum().ordinal) return
    const fields: Record<string, unknown> = {}
    for (const [k, v] of HashMap.toEntries(annotations)) fields[k] = v
    if (!List.isNil(spans)) {
      const now = date.getTime()
      fields.spans = Object.fromEntries(List.toArray(spans).map((s) => [s.label, now - s.startTime]))
    }
    if (!Cause.isEmpty(cause)) fields.cause = Cause.pretty(cause, { renderErrorCause: true })
    fields.fiber = `#${fiberId._tag === "Runtime" ? fiberId.id : "none"}`
    write(formatErrorLine(levelName(logLevel) as LogLevelName, messageText(message), fields, date.getTime()))
  })

export interface AppLoggerOptions {
  /** Minimum level; lower levels are discarded by Effect before the logger runs. Default "info". */
  readonly level?: LogLevelName | undefined
  /** Where lines go (an error-log writer, or stderr when absent). */
  readonly writer?: LogWriter | undefined
  /** A reloadable error log: its writer and level are read per log call (`level`/`writer` are ignored). */
  readonly errorLog?: ErrorLog | undefined
}

/**
 * Replaces Effect's default logger with the JSON logger and sets the minimum
 * level, so `Effect.logDebug` under level "info" costs one level comparison.
 * Without a writer, lines go to a bounded writer on stderr owned by the layer.
 * With a reloadable `errorLog`, Effect's own minimum is "trace" (a reload may
 * lower the level) and the logger compares with the error log's level first
 * thing, before any line is built.
 */
export const appLoggerLayer = (options: AppLoggerOptions = {}): Layer.Layer<never> => {
  const errorLog = options.errorLog
  if (errorLog !== undefined) {
    return Layer.merge(
      Logger.replace(
        Logger.defaultLogger,
        makeJsonLogger((line) => errorLog.writer.write(line), errorLog.minimum)
      ),
      Logger.minimumLogLevel(LogLevel.Trace)
    )
  }
  const level = toLogLevel(options.level ?? "info")
  const writerLayer = (writer: LogWriter) =>
    Layer.merge(
      Logger.replace(
        Logger.defaultLogger,
        makeJsonLogger((line) => writer.write(line))
      ),
      Logger.minimumLogLevel(level)
    )
  if (options.writer) return writerLayer(options.writer)
  return Layer.unwrapScoped(
    Effect.map(makeLogWriterScoped({ name: "error", fd: 2 }), writerLayer)
  )
}

/** What the error log is: a file (absent or "-" = stderr), its level and buffer. */
export interface ErrorLogSettings extends LogDestination {
  readonly level: LogLevelName
}

/**
 * The process's error log, reloadable: `writer` forwards each line to the
 * writer in force, `minimum` is the level in force; `prepare` opens a new
 * file (failing when it cannot) and its swap switches file and level at once.
 */
export interface ErrorLog {
  /** Forwards to the writer in force (stable: hand it out once). */
  readonly writer: LogWriter
  /** The level in force. */
  readonly minimum: () => LogLevel.LogLevel
  readonly prepare: (next: ErrorLogSettings) => Either.Either<LogSwap, LogOpenFailed>
  /** Flushes and closes the writer in force and the retired ones. */
  readonly close: () => Promise<void>
}

export const makeErrorLog = (initial: ErrorLogSettings, options: { readonly onDrop?: ((lines: number) => void) | undefined } = {}): ErrorLog => {
  const slot = makeLogSlot({ name: "error", fd: 2, onDrop: options.onDrop }, initial)
  let minimum = toLogLevel(initial.level)
  // The slot always has a writer here (the error log is never off): stderr at worst.
  const w = (): LogWriter => slot.current!
  return {
    writer: {
      write: (line) => w().write(line),
      flush: () => w().flush(),
      reopen: () => w().reopen(),
      close: () => slot.close(),
      stats: () => w().stats()
    },
    minimum: () => minimum,
    prepare: (next) =>
      Either.map(slot.prepare(next), (swap) => ({
        commit: () => {
          swap.commit()
          minimum = toLogLevel(next.level)
        },
        abort: swap.abort
      })),
    close: () => slot.close()
  }
}
