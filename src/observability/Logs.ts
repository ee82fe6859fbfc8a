/**
 * The error log and the JSON application logger plugged into Effect's `Logger`: every line the
 * process writes to stderr in `run` is one JSON object in the error log's format. The lines go
 * through the bounded writer (`LogWriter.ts`) in a reloadable slot (`LogSlot.ts`).
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as List from "effect/List"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { formatErrorLine, type LogLevelName } from "./ErrorLine.js"
import { makeLogSlot, type LogDestination, type LogSwap } from "./LogSlot.js"
import { makeLogWriterScoped, type LogOpenFailed, type LogWriter } from "./LogWriter.js"

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
