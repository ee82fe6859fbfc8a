/**
 * The access log stage: one line per request, built from the request
 * context and handed to a bounded, non-blocking writer (`Logs.ts`). Lines the
 * sink cannot take in time are dropped and counted, never queued without bound.
 * A configuration reload switches it on/off, moves it, changes its format.
 */
import { hostname } from "node:os"
import { performance } from "node:perf_hooks"
import { Effect, Either, type Scope } from "effect"
import type { AccessLogConfig } from "../config/Schema.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import {
  accessFormatter,
  makeLogSlot,
  type AccessLogEntry,
  type LogDestination,
  type LogOpenFailed,
  type LogSwap
} from "./Logs.js"
import type { Metrics } from "./Metrics.js"

export interface AccessLog {
  readonly write: (ctx: RequestContext) => void
  readonly reopen: () => Promise<void>
  /** Resolves once the lines written so far reached their sink (old sinks of a reload included). */
  readonly flush: () => Promise<void>
  /** Opens what `next` needs; fails, changing nothing, when its file cannot be opened. */
  readonly prepare: (next: AccessLogConfig) => Either.Either<LogSwap, LogOpenFailed>
  /** Flushes and closes (the scope does it). */
  readonly close: () => Promise<void>
}

const instanceId = `${hostname()}:${process.pid}`

export const toAccessEntry = (ctx: RequestContext): AccessLogEntry => {
  const cl = ctx.req.headers["content-length"]
  return {
    timestamp: Date.now() - Math.round(performance.now() - ctx.start),
    trace_id: ctx.traceId,
    method: ctx.method,
    path: ctx.path,
    query: ctx.query === "" ? undefined : ctx.query,
    protocol: `HTTP/${ctx.req.httpVersion}`,
    status: ctx.status,
    body_bytes: cl === undefined ? 0 : Number(cl) || 0,
    duration_ms: performance.now() - ctx.start,
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
    error: ctx.error
  }
}

const destination = (config: AccessLogConfig): LogDestination | undefined =>
  config.enabled ? { file: config.file, bufferSize: config.bufferSize } : undefined

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
