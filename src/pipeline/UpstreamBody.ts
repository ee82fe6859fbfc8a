/**
 * The request body an upstream attempt sends: none, the client's stream (bounded by the route's
 * `max-body-size` while it streams), a body a stage replaced, or the body read into memory
 * first so that a retry can send it again: a declared one up to the buffer limit, and a chunked
 * one (HTTP/2: one without Content-Length) that ends within it, which then goes upstream with
 * a Content-Length, in one write (a longer one streams on after what was read).
 */
import { Readable } from "node:stream"
import type { IncomingMessage } from "node:http"
import { headersEndedStream } from "../http/Response.js"
import type { ForwardRequest } from "../upstream/Forward.js"
import { readBodyUpTo } from "./BodyRead.js"
import { markClosing } from "./Connection.js"
import type { RoutePlan } from "./Dataplane.js"
import { BodyTooLarge, ClientClosed, type ProxyError } from "./Errors.js"
import type { RequestContext } from "./RequestContext.js"

/**
 * The client's body as it streams on (chunked HTTP/1.1, HTTP/2 without a Content-Length),
 * counted: past the limit it fails, which makes undici abort the upload, and the client's
 * stream is left paused, unread (the 413 can still go out on its connection). A Readable fed
 * by the client's `data` events rather than a Transform it is piped into: a chunk costs one
 * `push`, without the writable half's bookkeeping and its tick per write, and undici's
 * back-pressure reaches the client through `pause` / `_read` as it does through a pipe.
 */
class LimitedBody extends Readable {
  private seen = 0
  private readonly onData = (chunk: Buffer): void => {
    this.seen += chunk.length
    if (this.seen > this.limit) {
      unreadRest(this.ctx)
      this.destroy(new Error("request body over limit"))
      return
    }
    if (!this.push(chunk)) this.src.pause()
  }
  private readonly onEnd = (): void => {
    this.push(null)
  }

  /** `prefix`: what was read of the body already (the client's stream goes on after it). */
  constructor(private readonly src: IncomingMessage, private readonly limit: number, private readonly ctx: RequestContext, prefix?: Buffer) {
    super()
    if (prefix !== undefined) {
      this.seen = prefix.length
      this.push(prefix)
    }
    src.on("data", this.onData)
    src.once("end", this.onEnd)
  }

  override _read(): void {
    this.src.resume()
  }

  override _destroy(error: Error | null, cb: (error?: Error | null) => void): void {
    // as an unpipe does: the client's stream stops where it is
    this.src.off("data", this.onData)
    this.src.off("end", this.onEnd)
    this.src.pause()
    cb(error)
  }
}

export interface BodySource {
  readonly body: ForwardRequest["body"]
  /** The same bytes can be sent again (no body, or a Buffer). */
  readonly replayable: boolean
}

/**
 * The bytes already read of the client's body followed by the rest of it, bounded by `limit` in
 * total: past it the upload fails and the 413 closes the connection (as for every streamed body).
 */
export const bodyAfter = (ctx: RequestContext, prefix: Buffer, limit: number): Readable => new LimitedBody(ctx.req, limit, ctx, prefix)

const NO_BODY: BodySource = { body: null, replayable: true }

/**
 * The body went over the route's limit and its rest stays unread: the 413 ends the connection
 * (HTTP/1.1 cannot find the next request behind an unread body; an HTTP/2 stream ends alone).
 */
const unreadRest = (ctx: RequestContext): void => {
  ctx.bodyTooLarge = true
  closeAfterAnswer(ctx)
}

/**
 * The request body's rest stays unread (a rejection before it ended): this answer is the
 * connection's last on HTTP/1.1, and nothing pipelined behind it is handed on. An HTTP/2
 * stream ends alone.
 */
export const closeAfterAnswer = (ctx: RequestContext): void => {
  if (ctx.http2) return
  ctx.res.shouldKeepAlive = false
  markClosing(ctx.req.socket)
}

/**
 * Reads a body into memory, up to `limit`; the client going away fails it. A body longer than
 * that (only a chunked one: the parser frames a declared one) is over the route's limit when
 * `limit` is the route's limit, else it streams on after what was read. Returns a cancel function.
 */
export const bufferBody = (
  ctx: RequestContext,
  limit: number,
  maxBodySize: number,
  done: (error: ProxyError | undefined, body: BodySource | undefined) => void
): (() => void) =>
  readBodyUpTo(ctx.req, limit, (read) => {
    if (read._tag === "Failed") return done(new ClientClosed(), undefined)
    if (read.complete) return done(undefined, { body: read.data, replayable: true })
    if (limit >= maxBodySize || read.data.length > maxBodySize) {
      unreadRest(ctx)
      return done(new BodyTooLarge(), undefined)
    }
    done(undefined, { body: new LimitedBody(ctx.req, maxBodySize, ctx, read.data), replayable: false })
  })

/** The body to send: at hand, or `"buffer"` when it must be read into memory first (replayable). */
export const requestBody = (ctx: RequestContext, plan: RoutePlan, bufferLimit: number): BodySource | "buffer" => {
  const pre = ctx.upstreamBody
  if (pre !== undefined) return pre === null || Buffer.isBuffer(pre) ? { body: pre, replayable: true } : { body: pre, replayable: false }
  const h = ctx.req.headers
  // HTTP/2 frames a body without Content-Length (unless the headers ended the stream): it is
  // handled as a chunked HTTP/1.1 body
  const unframed = h["transfer-encoding"] !== undefined || (ctx.http2 && h["content-length"] === undefined && !headersEndedStream(ctx.req))
  // read first up to the buffer limit (buffer-requests: the route's limit, the whole body):
  // one that ends within it goes upstream whole; a longer one streams on, bounded
  if (unframed) return bufferLimit > 0 ? "buffer" : { body: new LimitedBody(ctx.req, plan.maxBodySize, ctx), replayable: false }
  const cl = h["content-length"]
  if (cl === undefined || cl === "0") return NO_BODY
  if (bufferLimit > 0 && Number(cl) <= bufferLimit) return "buffer"
  return { body: ctx.req, replayable: false }
}
