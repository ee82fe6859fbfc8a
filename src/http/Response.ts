/**
 * Ending a response that cannot be completed, alike over HTTP/1.1 and HTTP/2 (node's compat
 * `Http2ServerResponse` has a `stream`; `ServerResponse` has not). No I/O of its own.
 */
import type { ServerResponse } from "node:http"

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
