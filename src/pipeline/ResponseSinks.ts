/**
 * Where an upstream response goes on its way to the client: `DirectSink` writes the head
 * (hop-by-hop removed, the route's response policy and stages applied) and the body with
 * back-pressure; `BufferedSink` (`policies { buffer-responses }`) holds it first.
 */
import { connectionTokens, isHopByHop } from "../http/HopByHop.js"
import type { ResponseSink } from "../upstream/Forward.js"
import type { RoutePlan } from "./Dataplane.js"
import { removeHeaders } from "./Headers.js"
import type { RequestContext } from "./RequestContext.js"
import { writeHead } from "./ResponseHead.js"

/**
 * The response written to the client: head filtered and extended, body with back-pressure.
 * A client slower than the upstream gets up to `bufferLimit` bytes held for it (node's
 * writable buffer) before the upstream is paused, so a response of that size frees its
 * upstream connection at the upstream's pace, not the client's (nginx's proxy buffering,
 * in memory only).
 */
export class DirectSink implements ResponseSink {
  constructor(
    private readonly ctx: RequestContext,
    private readonly draining: () => boolean,
    private readonly plan: RoutePlan,
    private readonly setCookie: string | undefined,
    private readonly bufferLimit: number
  ) {}

  /** `raw` is the upstream's head (Buffers), or a stored one (strings: a cache hit). */
  start(status: number, raw: ReadonlyArray<Buffer | string>): boolean {
    const ctx = this.ctx
    const flat: Array<string> = []
    let connection: string | undefined
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]
      const name = typeof n === "string" ? n : n.toString("latin1")
      if (isHopByHop(name)) {
        if (name.length === 10 && name.toLowerCase() === "connection") {
          const v = latin1(raw[i + 1])
          connection = connection === undefined ? v : `${connection}, ${v}`
        }
        continue
      }
      const v = raw[i + 1]
      flat.push(name, typeof v === "string" ? v : v.toString("latin1"))
    }
    // names listed in Connection are hop-by-hop too (rare beyond keep-alive/close)
    const named = connectionTokens(connection)
    if (named !== undefined) removeHeaders(flat, named)
    flat.push("x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId)
    if (this.setCookie !== undefined) flat.push("set-cookie", this.setCookie)
    if (ctx.responseHeaders !== undefined) flat.push(...ctx.responseHeaders)
    this.plan.responsePolicy?.(flat)
    for (const stage of this.plan.response) stage(ctx, status, flat)
    if (this.draining() && !ctx.http2) flat.push("connection", "close")
    try {
      writeHead(ctx.res, status, flat, ctx.http2)
    } catch {
      ctx.error = "upstream_invalid_header"
      return false
    }
    ctx.status = status
    return true
  }

  data(chunk: Buffer): boolean {
    this.ctx.bytesSent += chunk.length
    const res = this.ctx.res
    // once write() says full, node emits `drain` when the buffer empties, which resumes us
    return res.write(chunk) || res.writableLength < this.bufferLimit
  }

  onDrain(resume: () => void): void {
    this.ctx.res.once("drain", resume)
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    const res = this.ctx.res
    // Trailer fields pass through (HTTP/2, or a chunked HTTP/1.1 response); node drops them
    // for a client that cannot take them (HTTP/1.0, a response with a Content-Length)
    if (trailers !== undefined && trailers !== null) {
      const fields: Record<string, string> = {}
      for (let i = 0; i + 1 < trailers.length; i += 2) {
        const name = latin1(trailers[i]).toLowerCase()
        if (isHopByHop(name) || name === "content-length" || name === "host") continue
        const v = latin1(trailers[i + 1])
        fields[name] = fields[name] === undefined ? v : `${fields[name]}, ${v}`
      }
      try {
        res.addTrailers(fields)
      } catch {
        // invalid trailer fields are dropped, the body is still complete
      }
    }
    res.end()
  }
}

const latin1 = (v: Buffer | string): string => (typeof v === "string" ? v : v.toString("latin1"))

/** No body may follow these heads (RFC 9110 §6.4.1): their Content-Length is never rewritten. */
const bodiless = (status: number, method: string): boolean => method === "HEAD" || status === 204 || status === 304 || status < 200

/**
 * `policies { buffer-responses }`: the head and body wait here until the response is complete
 * (then the head goes out with its real Content-Length) or `limit` bytes arrived (then what is
 * held goes out and the rest streams). Until the head goes out, an upstream failure is still
 * answered cleanly (the pipeline's 502), never a cut response.
 */
export class BufferedSink implements ResponseSink {
  private status = 0
  private raw: Array<Buffer> = []
  private held: Array<Buffer> | undefined = []
  private size = 0
  private passed = true

  constructor(
    private readonly base: ResponseSink,
    private readonly limit: number,
    private readonly method: string
  ) {}

  start(status: number, raw: Array<Buffer>): boolean {
    this.status = status
    this.raw = raw
    return true
  }

  /** The head and what is held go out; from now on chunks pass straight through. */
  private flush(raw: Array<Buffer>): boolean {
    const held = this.held!
    this.held = undefined
    this.passed = this.base.start(this.status, raw)
    // an unusable head (invalid header): the exchange fails as the client's side, answered 502
    if (!this.passed) throw new Error("response head refused")
    let more = true
    for (const c of held) more = this.base.data(c)
    return more
  }

  data(chunk: Buffer): boolean {
    if (this.held === undefined) return this.passed ? this.base.data(chunk) : true
    this.held.push(chunk)
    this.size += chunk.length
    return this.size <= this.limit ? true : this.flush(this.raw)
  }

  onDrain(resume: () => void): void {
    if (this.held === undefined && this.passed) this.base.onDrain(resume)
    else resume()
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    if (this.held !== undefined) {
      let raw = this.raw
      if (!bodiless(this.status, this.method)) {
        raw = []
        for (let i = 0; i + 1 < this.raw.length; i += 2) {
          if (this.raw[i].length === 14 && this.raw[i].toString("latin1").toLowerCase() === "content-length") continue
          raw.push(this.raw[i], this.raw[i + 1])
        }
        raw.push(Buffer.from("content-length"), Buffer.from(String(this.size)))
      }
      this.flush(raw)
    }
    if (this.passed) this.base.end(trailers)
  }
}
