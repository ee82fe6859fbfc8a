/**
 * The request body an upstream attempt sends: none, the client's stream (bounded by the route's
 * `max-body-size` while it streams), a body a stage replaced, or the body read into memory
 * first so that a retry can send it again.
 */
import { Transform, type TransformCallback } from "node:stream"
import type { IncomingMessage } from "node:http"
import { headersEndedStream } from "../http/Response.js"
import type { ForwardRequest } from "../upstream/Forward.js"
import { readBodyUpTo } from "./BodyRead.js"
import type { RoutePlan } from "./Dataplane.js"
import { BodyTooLarge, ClientClosed, type ProxyError } from "./Errors.js"
import type { RequestContext } from "./RequestContext.js"

/** Counts streamed request bytes and fails the upload once it passes the limit. */
class BodyLimit extends Transform {
  private seen = 0
  constructor(private readonly limit: number, private readonly ctx: RequestContext) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length
    if (this.seen > this.limit) {
      this.ctx.bodyTooLarge = true
      cb(new Error("request body over limit"))
      return
    }
    cb(null, chunk)
  }
}

export interface BodySource {
  readonly body: ForwardRequest["body"]
  /** The same bytes can be sent again (no body, or a Buffer). */
  readonly replayable: boolean
}

const NO_BODY: BodySource = { body: null, replayable: true }

/** Reads a declared-length body into memory; the client going away fails it. Returns a cancel function. */
export const bufferBody = (
  req: IncomingMessage,
  limit: number,
  done: (error: ProxyError | undefined, body: BodySource | undefined) => void
): (() => void) =>
  readBodyUpTo(req, limit, (read) => {
    if (read._tag === "Failed") return done(new ClientClosed(), undefined)
    // over the limit cannot happen with a correct Content-Length (the parser frames the body); be safe
    if (!read.complete) return done(new BodyTooLarge(), undefined)
    done(undefined, { body: read.data, replayable: true })
  })

/** The body to send: at hand, or `"buffer"` when it must be read into memory first (replayable). */
export const requestBody = (ctx: RequestContext, plan: RoutePlan, bufferLimit: number): BodySource | "buffer" => {
  const pre = ctx.upstreamBody
  if (pre !== undefined) return pre === null || Buffer.isBuffer(pre) ? { body: pre, replayable: true } : { body: pre, replayable: false }
  const h = ctx.req.headers
  // HTTP/2 frames a body without Content-Length (unless the headers ended the stream): it
  // streams upstream chunked, bounded like a chunked HTTP/1.1 body
  const unframed = h["transfer-encoding"] !== undefined || (ctx.http2 && h["content-length"] === undefined && !headersEndedStream(ctx.req))
  // buffer-requests: every body is read whole first, within the route's limit
  if (unframed && plan.bufferRequests) return "buffer"
  if (unframed) {
    const limited = new BodyLimit(plan.maxBodySize, ctx)
    ctx.req.pipe(limited)
    return { body: limited, replayable: false }
  }
  const cl = h["content-length"]
  if (cl === undefined || cl === "0") return NO_BODY
  if (bufferLimit > 0 && Number(cl) <= bufferLimit) return "buffer"
  return { body: ctx.req, replayable: false }
}
