/**
 * The `RouteExtension` for routes with `static-files { root … }`: the route's handler becomes
 * `serveStatic` (StaticFiles.ts) on the validated, normalised path (after any url-rewrite), so
 * the file handler sees the same path routing did. The response head gets what every proxy
 * answer gets: the trace id, headers decided in the request phase (CORS, rate limit) and the
 * route's response stages (security headers, headers filters). A client that goes away before
 * the body is complete is logged as 499 (a connection the listener cut: its status and reason).
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http"
import type { RouteConfig } from "../config/Schema.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import type { LocalHandler, ResponseStage, RouteExtension } from "../pipeline/Stage.js"
import { settleEarlyClose } from "../pipeline/Connection.js"
import { serveStatic, type StaticFilesConfig } from "./StaticFiles.js"

export interface StaticFilesRouteOptions {
  /**
   * The response stages of the request's route (the plan's `response` list). Default none.
   * The pipeline does not pass the plan to a local handler, so the App looks it up.
   */
  readonly responseStages?: (ctx: RequestContext) => ReadonlyArray<ResponseStage>
}

const toFlat = (headers: OutgoingHttpHeaders | ReadonlyArray<string> | undefined): Array<string> => {
  if (headers === undefined) return []
  if (Array.isArray(headers)) return headers.slice() as Array<string>
  const flat: Array<string> = []
  for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) flat.push(name, String(v))
    else flat.push(name, String(value))
  }
  return flat
}

/** Routes the head `serveStatic` writes through the same edits as every other answer. */
const decorate = (ctx: RequestContext, res: ServerResponse, stages: ReadonlyArray<ResponseStage>): void => {
  const writeHead = res.writeHead
  res.writeHead = function (this: ServerResponse, status: number, a?: unknown, b?: unknown) {
    const headers = (typeof a === "string" ? b : a) as OutgoingHttpHeaders | ReadonlyArray<string> | undefined
    const flat = toFlat(headers)
    flat.push("x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId)
    if (ctx.responseHeaders !== undefined) for (const h of ctx.responseHeaders) flat.push(h)
    for (const stage of stages) stage(ctx, status, flat)
    ctx.status = status
    return writeHead.call(this, status, flat)
  } as ServerResponse["writeHead"]
}

export const makeStaticHandler = (
  config: StaticFilesConfig,
  options: StaticFilesRouteOptions = {}
): LocalHandler => async (ctx) => {
  const req: IncomingMessage = ctx.req
  const res = ctx.res
  const socket = req.socket
  decorate(ctx, res, options.responseStages?.(ctx) ?? [])
  const result = await serveStatic(config, req, res, ctx.upstreamPath)
  ctx.bytesSent += result.bytes
  if (result.aborted) {
    // 499, or the listener's status and reason when it cut the connection (a stalled reader)
    settleEarlyClose(ctx, socket)
  } else {
    ctx.status = result.status
    if (result.reason !== null && result.status >= 400) ctx.error ??= `static_${result.reason.replace(/-/g, "_")}`
  }
}

/** Compiles `static-files` routes; other routes get nothing. */
export const makeStaticFilesRoute = (options: StaticFilesRouteOptions = {}): RouteExtension => ({
  name: "static-files",
  compile: (route: RouteConfig) => {
    const sf = route.staticFiles
    if (sf === undefined) return undefined
    return { handler: makeStaticHandler(sf, options) }
  }
})
