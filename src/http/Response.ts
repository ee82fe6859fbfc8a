/**
 * Ending a response that cannot be completed, alike over HTTP/1.1 and HTTP/2 (node's compat
 * `Http2ServerResponse` has a `stream`; `ServerResponse` has not). No I/O of its own.
 */
import type { ServerResponse } from "node:http"
import { sensitiveHeaders } from "node:http2"

/** A message of node's HTTP/2 compat API (`Http2ServerRequest`/`Response` have a `stream`). */
export const isHttp2Message = (m: object): boolean => (m as { stream?: unknown }).stream !== undefined

/**
 * HTTP/1.1: the connection is closed (a response cut short is never framed as complete).
 * HTTP/2: the stream is reset with INTERNAL_ERROR; a plain `destroy()` sends RST_STREAM
 * with NO_ERROR, which a client may take for the end of a complete response.
 */
export const abortResponse = (res: ServerResponse): void => {
  if (isHttp2Message(res)) res.destroy(new Error("response cut short"))
  else res.destroy()
}

/**
 * Whether a request may carry a body: `Transfer-Encoding`, a non-zero `Content-Length`, or an
 * HTTP/2 stream without `Content-Length` whose HEADERS did not end it (HTTP/2 frames a body in
 * DATA frames; a length is optional there).
 */
export const requestMayHaveBody = (req: { readonly headers: Readonly<Record<string, unknown>> }): boolean => {
  if (req.headers["transfer-encoding"] !== undefined) return true
  const cl = req.headers["content-length"]
  if (cl !== undefined) return cl !== "0"
  return isHttp2Message(req) && !headersEndedStream(req)
}

/** An HTTP/2 request whose HEADERS frame carried END_STREAM: it has no body. */
export const headersEndedStream = (req: object): boolean =>
  (req as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders === true

/**
 * `res.writeHead(status, flat)` for a flat `[name, value, ...]` list, alike over HTTP/1.1 and
 * HTTP/2. node's HTTP/1.1 response takes the list as it is (no object built). Its HTTP/2
 * compat response, given a list, first calls `removeHeader` for every name and then appends
 * one by one (validating each twice); given an object it sets each name once. So HTTP/2 gets
 * an object, a repeated name (set-cookie) as an array of its values. Throws what node throws
 * for an invalid name or value.
 */
export const writeHead = (res: ServerResponse, status: number, flat: Array<string>, http2: boolean): void => {
  if (!http2) {
    res.writeHead(status, flat)
    return
  }
  neverIndexTraceIds(res)
  const head: Record<string, string | Array<string>> = Object.create(null)
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i].toLowerCase()
    const seen = head[name]
    if (seen === undefined) head[name] = flat[i + 1]
    else if (typeof seen === "string") head[name] = [seen, flat[i + 1]]
    else seen.push(flat[i + 1])
  }
  res.writeHead(status, head)
}

/**
 * The trace id headers differ on every response: HPACK-indexed, each would take a fresh entry
 * in the client's dynamic table (4 KiB by default) and push out the entries that repeat
 * (content-type, server, ...), so nghttp2 would re-encode and re-insert those too. Sent as
 * "never indexed" (node's `sensitiveHeaders`, set on the compat response's own header object,
 * which is what it hands to `respond`); when node keeps that object elsewhere, nothing changes.
 */
const UNIQUE_PER_RESPONSE = ["x-request-id", "x-correlation-id"]
let headersKey: symbol | null | undefined
const neverIndexTraceIds = (res: ServerResponse): void => {
  if (headersKey === undefined) headersKey = Object.getOwnPropertySymbols(res).find((s) => s.description === "headers") ?? null
  if (headersKey === null) return
  const own = (res as unknown as Record<symbol, Record<symbol, unknown> | undefined>)[headersKey]
  if (own !== undefined && typeof own === "object") own[sensitiveHeaders] = UNIQUE_PER_RESPONSE
}
