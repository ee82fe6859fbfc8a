/**
 * The proxy's logs as services.
 *
 *   Logs      the access and audit logs of the configuration in force (each a file, stdout,
 *             or off), plus the process's error log when an `ErrorLogService` is provided:
 *             `prepare(next)` opens what the next configuration needs (a file that cannot be
 *             opened fails the reload before anything changed), its swap switches them all.
 *   ErrorLogService
 *             the process's own error log (JSON lines, a file or stderr, at a level), and
 *             `ErrorLogService.layer` also installs it as Effect's logger. The command line
 *             provides it; an embedder keeps their own logger by not providing it: the
 *             proxy's lines (start, reloads, health changes) go to whatever logger is in
 *             place.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import { ConfigSource } from "../config/ConfigSource.js"
import type { SentinelConfig } from "../config/Schema.js"
import { type AccessLog, makeAccessLog } from "./AccessLog.js"
import { type AuditLog, makeAuditLog } from "./AuditLog.js"
import { combineLogSwaps, type LogSwap } from "./LogSlot.js"
import type { LogOpenFailed } from "./LogWriter.js"
import { appLoggerLayer, type ErrorLog, type ErrorLogSettings, makeErrorLog } from "./Logs.js"
import { MetricsService } from "./Metrics.js"

/** The error log `config` asks for: its file at its level, or stderr at `logging.level`. */
export const errorLogSettings = (config: SentinelConfig): ErrorLogSettings => {
  const e = config.observability.logging.errorLog
  if (e.enabled && e.file !== undefined && e.file !== "-") return { file: e.file, level: e.level, bufferSize: e.bufferSize }
  return { level: config.observability.logging.level, bufferSize: e.bufferSize }
}

/** Runs a log effect from a callback; a log line never breaks the caller. */
export const callbackLogger = (runtime: Runtime.Runtime<never>) => {
  const runSync = Runtime.runSync(runtime)
  return (effect: Effect.Effect<void>) => {
    try {
      runSync(effect)
    } catch {
      // a log line must never break the request path
    }
  }
}

export class ErrorLogService extends Context.Tag("sentinel/observability/ErrorLog")<ErrorLogService, ErrorLog>() {
  /** The error log of the source's initial configuration, installed as Effect's logger too. */
  static readonly layer: Layer.Layer<ErrorLogService, never, ConfigSource | MetricsService> = Layer.unwrapScoped(
    Effect.gen(function* () {
      const source = yield* ConfigSource
      const metrics = yield* MetricsService
      const errorLog = yield* Effect.acquireRelease(
        Effect.sync(() =>
          makeErrorLog(errorLogSettings(source.initial.config), { onDrop: (n: number) => metrics.logDropped.add(n, "error") })
        ),
        (log) => Effect.promise(() => log.close())
      )
      return Layer.merge(Layer.succeed(ErrorLogService, errorLog), appLoggerLayer({ errorLog }))
    })
  )
}

export interface LogsService {
  readonly access: AccessLog
  readonly audit: AuditLog
  /** Opens every log `next` asks for; the swap switches them together (commit) or closes them (abort). */
  readonly prepare: (next: SentinelConfig) => Effect.Effect<LogSwap, LogOpenFailed>
  /** Reopen every log file (logrotate's SIGUSR1). */
  readonly reopen: () => Effect.Effect<void>
}

export class Logs extends Context.Tag("sentinel/observability/Logs")<Logs, LogsService>() {
  static readonly layer: Layer.Layer<Logs, never, ConfigSource | MetricsService> = Layer.scoped(
    Logs,
    Effect.gen(function* () {
      const { config } = (yield* ConfigSource).initial
      const metrics = yield* MetricsService
      const errorLog = yield* Effect.serviceOption(ErrorLogService)
      const access = yield* makeAccessLog(config.observability.logging.accessLog, metrics)
      const audit = yield* makeAuditLog(config.observability.logging.auditLog, metrics)
      const prepare = (next: SentinelConfig): Effect.Effect<LogSwap, LogOpenFailed> =>
        Effect.suspend(() => {
          const logging = next.observability.logging
          const swaps: Array<LogSwap> = []
          const abortAll = () => {
            for (const s of swaps) s.abort()
          }
          const steps = [
            () => access.prepare(logging.accessLog),
            () => audit.prepare(logging.auditLog),
            ...(errorLog._tag === "Some" ? [() => errorLog.value.prepare(errorLogSettings(next))] : [])
          ]
          for (const step of steps) {
            const r = step()
            if (Either.isLeft(r)) {
              abortAll()
              return Effect.fail(r.left)
            }
            swaps.push(r.right)
          }
          return Effect.succeed(combineLogSwaps(swaps))
        })
      const reopen = () =>
        Effect.promise(() =>
          Promise.all([access.reopen(), audit.reopen(), ...(errorLog._tag === "Some" ? [errorLog.value.writer.reopen()] : [])])
        ).pipe(Effect.asVoid)
      return { access, audit, prepare, reopen }
    })
  )
}
