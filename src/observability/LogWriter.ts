/**
 * The bounded, non-blocking line writer behind the access, audit and error logs.
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
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { formatErrorLine } from "./ErrorLine.js"
import { makeSlabPool, type Slab } from "./LogSlabs.js"

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
  // one slice of a slab. A slab region handed to the sink is not written again before the sink
  // reports it written; a full slab is sealed into `sealed` and another one started (a written
  // one of our own streams' when there is one: LogSlabs.ts).
  const slabs = makeSlabPool(BATCH_BYTES, 2, options.sink === undefined)
  let sealed: Array<{ readonly bytes: Buffer; readonly lines: number; readonly slab: Slab }> = []
  let slab: Slab | undefined
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
    sealed.push({ bytes: slab.bytes.subarray(slabStart, slabEnd), lines: slabLines, slab })
    slab.pending++
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
      const { bytes: chunk, lines, slab: from } = sealed.shift()!
      queuedLines -= lines
      queuedBytes -= chunk.length
      inflightWrites++
      const gen = generation
      const ok = s.write(chunk, (err) => {
        // A write handed to a sink that failed or was rotated away no longer holds the queue.
        if (gen === generation) inflightWrites--
        if (err) drop(lines)
        else {
          slabs.written(from)
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
    if (slab === undefined || slabEnd + room > slab.bytes.length) {
      seal()
      if (slab !== undefined) slabs.retire(slab)
      slab = slabs.take(room)
      slabStart = 0
      slabEnd = 0
    }
    const n = slab.bytes.write(line, slabEnd, "utf8")
    slab.bytes[slabEnd + n] = 10 // \n
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
