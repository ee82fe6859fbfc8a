/**
 * The response phase for answers the proxy makes itself: errors (through the error table,
 * `ErrorResponse.ts`), stage answers (filters, agents) and builtin answers. They carry the
 * trace id, the route's response stages and, while the listener drains, `Connection: close`.
 */
import type { Socket } from "node:net"
import { abortResponse } from "../http/Response.js"
import { settleEarlyClose } from "./Connection.js"
import type { RoutePlan } from "./Dataplane.js"
import { errorAnswer, errorBody } from "./ErrorResponse.js"
import type { ProxyError } from "./Errors.js"
import type { RequestContext } from "./RequestContext.js"
import type { Answer } from "./Stage.js"
import { writeHead } from "./ResponseHead.js"

/** What answering needs of the listener's pipeline: its refusal hook and whether it drains. */
export interface AnswerEnv {
  readonly hooks: { readonly onReject: (ctx: RequestContext, reason: string, status: number) => void }
  readonly draining: () => boolean
}

/** Send a proxy-made answer (errors and rejections); never throws. */
export const sendAnswer = (
  ctx: RequestContext,
  env: AnswerEnv,
  status: number,
  headers: ReadonlyArray<string>,
  body: string | Buffer,
  contentType: string,
  plan?: RoutePlan
): void => {
  const res = ctx.res
  ctx.status = status
  if (res.headersSent || res.destroyed) {
    abortResponse(res)
    return
  }
  const flat: Array<string> = ["content-type", contentType, "x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId]
  for (let i = 0; i < headers.length; i++) flat.push(headers[i])
  if (ctx.responseHeaders !== undefined) flat.push(...ctx.responseHeaders)
  if (plan !== undefined) for (const stage of plan.response) stage(ctx, status, flat)
  if (env.draining() && !ctx.http2) flat.push("connection", "close")
  const buf = typeof body === "string" ? Buffer.from(body) : body
  flat.push("content-length", String(buf.length))
  try {
    writeHead(res, status, flat, ctx.http2)
    res.end(ctx.method === "HEAD" ? undefined : buf)
    ctx.bytesSent += ctx.method === "HEAD" ? 0 : buf.length
  } catch {
    abortResponse(res)
  }
}

export const sendError = (
  ctx: RequestContext,
  env: AnswerEnv,
  error: ProxyError,
  plan?: RoutePlan,
  /** The request's connection, when `ctx.req.socket` may be gone already (`settleEarlyClose`). */
  socket: Socket | null = ctx.req.socket
): void => {
  if (error._tag === "ClientClosed") {
    // 499, or what the listener answered when it cut the request (its body stopped, ...)
    settleEarlyClose(ctx, socket)
    return
  }
  const answer = errorAnswer(error)
  ctx.error ??= answer.reason
  // our own limits refusing or cutting the request: counted with the other refusals
  if (error._tag === "DownstreamError" || error._tag === "UpstreamSaturated" || error._tag === "RouteCircuitOpen") {
    env.hooks.onReject(ctx, answer.reason, answer.status)
  }
  sendAnswer(ctx, env, answer.status, answer.headers.flat(), errorBody(answer.status, answer.reason, ctx.traceId), "application/json", plan)
}

/** Answer decided by a stage (filters, agents). */
export const sendStageAnswer = (ctx: RequestContext, env: AnswerEnv, answer: Answer, plan: RoutePlan): void => {
  ctx.error ??= answer.reason
  env.hooks.onReject(ctx, answer.reason, answer.status)
  sendAnswer(ctx, env, answer.status, answer.headers, answer.body, answer.contentType ?? "application/json", plan)
}
