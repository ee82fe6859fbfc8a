/**
 * Reloadable log destinations: a slot holds the writer of one log (file or stdout/stderr) and
 * swaps it on reload in two steps (`prepare` opens what the new settings need and fails,
 * changing nothing, when a file cannot be opened; `commit` swaps; `abort` discards), so that a
 * reload of several logs applies all or none.
 */
import * as Either from "effect/Either"
import { makeLogWriter, openLogWriter, type LogOpenFailed, type LogWriter, type LogWriterOptions } from "./LogWriter.js"

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
