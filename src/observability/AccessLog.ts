/**
 * The access log stage: one line per request, built from the request
 * context and handed to a bounded, non-blocking writer (`Logs.ts`). Lines the
 * sink cannot take in time are dropped and counted, never queued without bound.
 */
import { hostname } from "node:os"
import { performance } from "node:perf_hooks"
import { Effect, type Scope } from "effect"
import type { AccessLogConfig } from "../config/Schema.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import { accessFormatter, makeLogWriterScoped, type AccessLogEntry } from "./Logs.js"
import type { Metrics } from "./Metrics.js"

export interface AccessLog {
  readonly write: (ctx: RequestContext) => void
  readonly reopen: () => Promise<void>
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

export const makeAccessLog = (config: AccessLogConfig, metrics: Metrics): Effect.Effect<AccessLog, never, Scope.Scope> =>
  Effect.gen(function* () {
    if (!config.enabled) return { write: () => {}, reopen: async () => {} }
    const writer = yield* makeLogWriterScoped({
      name: "access",
      file: config.file,
      bufferSize: config.bufferSize,
      onDrop: (n) => metrics.logDropped.add(n, "access")
    })
    const format = accessFormatter(config.format)
    return {
      write: (ctx) => writer.write(format(toAccessEntry(ctx))),
      reopen: writer.reopen
    }
  })
