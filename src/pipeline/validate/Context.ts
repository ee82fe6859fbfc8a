/**
 * The validate phase, the request's first: the head is validated (`RequestHead.ts`, with the
 * listener's edge policy), the request's context is built from the validated, normalised
 * values (host, path, client address from trusted X-Forwarded-For), the trace id is taken from
 * the client's headers or made, and the limits that can be judged from the head alone are
 * checked before anything is read.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { performance } from "node:perf_hooks"
import { resolveForwarded, type ForwardedInfo } from "../../http/Forwarded.js"
import { normalizeHost } from "../../routing/Router.js"
import type { Dataplane } from "../Dataplane.js"
import { RequestRejected } from "../Errors.js"
import { connectionTls, splitTarget, type RequestContext } from "../RequestContext.js"
import { incomingTraceId } from "../TraceId.js"
import type { EdgePolicy } from "./EdgePolicy.js"
import { validateRequest, type Valid } from "./RequestHead.js"
import { isHttp2Message } from "../../http/Response.js"

const headerLookup = (req: IncomingMessage) => (lowerName: string): string | undefined => {
  const v = req.headers[lowerName]
  return Array.isArray(v) ? v[0] : v
}

/**
 * `headerLookup` for a request whose head lost headers at the edge (underscore names under
 * `underscores-in-headers "drop"`): routing, filters, agents and balancing must not see what
 * never reaches the upstream.
 */
const headerLookupWithout = (req: IncomingMessage, dropped: ReadonlyArray<string>) => {
  const lookup = headerLookup(req)
  return (lowerName: string): string | undefined => (dropped.includes(lowerName) ? undefined : lookup(lowerName))
}

export const makeContext = (
  env: { readonly listenerId: string; readonly scheme: "http" | "https" },
  dp: Dataplane,
  edge: EdgePolicy,
  req: IncomingMessage,
  res: ServerResponse
): RequestContext => {
  const http2 = isHttp2Message(req)
  const result = validateRequest(req, edge.validation, env.scheme === "https", http2)
  const header =
    result._tag === "Valid" && result.request.droppedHeaders.length > 0
      ? headerLookupWithout(req, result.request.droppedHeaders)
      : headerLookup(req)
  let host: string
  let path: string
  let query: string
  let clientIp: string
  let forwarded: ForwardedInfo | undefined
  let webSocketOverH2 = false
  if (result._tag === "Valid") {
    const v = result.request
    forwarded = resolveForwarded(v, { remoteAddress: req.socket.remoteAddress, encrypted: env.scheme === "https" }, edge.trusted)
    host = v.hostname ?? ""
    path = v.path
    query = v.query ?? ""
    clientIp = forwarded.clientIp
    webSocketOverH2 = v.connectProtocol === "websocket"
  } else {
    const target = splitTarget(req.url ?? "/")
    host = normalizeHost(target.authority ?? req.headers.host)
    path = target.path
    query = target.query
    clientIp = req.socket.remoteAddress ?? ""
  }
  const ctx: RequestContext = {
    req,
    res,
    start: performance.now(),
    traceId: incomingTraceId(header) ?? dp.newTraceId(),
    clientIp,
    // RFC 8441 §5: an extended CONNECT for a WebSocket is the GET handshake of HTTP/1.1
    method: webSocketOverH2 ? "GET" : req.method ?? "GET",
    host,
    path,
    query,
    listenerId: env.listenerId,
    scheme: env.scheme,
    http2,
    webSocketOverH2,
    tls: env.scheme === "https" ? connectionTls(req) : undefined,
    routeId: "",
    upstreamId: "",
    upstreamAddr: "",
    attempts: 0,
    status: 0,
    bytesSent: 0,
    error: undefined,
    bodyTooLarge: false,
    clientGone: false,
    upstreamHeaders: [],
    upstreamPath: result._tag === "Valid" ? result.request.target : req.url ?? "/",
    upstreamBody: undefined,
    edge: { result, forwarded },
    trace: undefined,
    responseHeaders: undefined,
    header
  }
  return ctx
}

/**
 * Edge validation and the limits that can be judged from the head alone: 400/405/414/417/431/
 * 501/505 from the validator, 413 for a declared body over `limits { max-body-size }` (answered
 * before any of the body is read). Headers dropped for an underscore are counted.
 */
export const checkHead = (ctx: RequestContext, onReject: (ctx: RequestContext, reason: string, status: number) => void): RequestRejected | undefined => {
  const result = ctx.edge.result
  if (result._tag === "Rejected") {
    return new RequestRejected({ status: result.status, reason: result.reason.replace(/-/g, "_") })
  }
  const v = result.request
  if (v.droppedHeaders.length > 0) onReject(ctx, "underscore_header_dropped", 0)
  return undefined
}

/** A declared body over the route's limit (`policies { max-body-size }`, else `limits`): 413 before any of it is read. */
export const declaredBodyOver = (ctx: RequestContext, max: number): boolean => {
  const v = (ctx.edge.result as Valid).request
  return v.contentLength !== null && v.contentLength > max
}
