/**
 * An upstream response re-encoded on its way to the client (the route's `ResponseEncoding`: the
 * `compress` filter). It wraps the sink the response goes to next (the client's, or whatever
 * the route stacks before it), so its head and bytes are the encoded ones: a cache behind it
 * stores the encoded variant it served.
 *
 * The encoder is synchronous (filters/BodyEncoder.ts): each upstream chunk is encoded as it
 * comes and whatever output it gives goes to the next sink at once; back-pressure is the next
 * sink's (`data` returns what it said, and `onDrain` waits for it). Nothing but the encoder's
 * state and output buffer is held.
 *
 * `onSettled` is the wait the upstream call adds for the encoded tail (as for a held response):
 * settled when `end` returns (the encoder is synchronous). `dispose` (client gone, upstream
 * failed) discards the encoder, unfinished; the response is then cut short by whoever disposed,
 * never completed.
 */
import type { ResponseSink } from "../upstream/Forward.js"
import { InternalError, type ProxyError } from "./Errors.js"
import { DownstreamError } from "../upstream/Errors.js"
import type { RequestContext } from "./RequestContext.js"
import type { BodyEncoding, ResponseEncoding } from "./Stage.js"

const latin1 = (b: Buffer): string => b.toString("latin1")
const toRaw = (s: string): Buffer => Buffer.from(s, "latin1")

export class EncodingSink implements ResponseSink {
  private encoding: BodyEncoding | undefined = undefined
  private bytesIn = 0
  private bytesOut = 0
  /** Whether the next sink took everything given to it during the current `data` call. */
  private more = true
  /** Set once: the encoded body went out whole (undefined), or failed. */
  private outcome: { readonly error: ProxyError | undefined } | undefined = undefined
  private callbacks: Array<(error: ProxyError | undefined) => void> = []
  private readonly onOutput = (chunk: Buffer) => this.output(chunk)

  constructor(
    private readonly ctx: RequestContext,
    private readonly plan: ResponseEncoding,
    private readonly base: ResponseSink
  ) {}

  start(status: number, raw: Array<Buffer>): boolean {
    const flat = raw.map(latin1)
    const encoding = this.plan.start(this.ctx, status, flat)
    if (!this.base.start(status, flat.map(toRaw))) {
      encoding?.encoder.discard()
      return false
    }
    if (encoding === undefined) return true
    this.encoding = encoding
    this.ctx.compression = { encoding: encoding.coding, bytesIn: 0, bytesOut: 0 }
    return true
  }

  private output(chunk: Buffer): void {
    if (this.outcome !== undefined) return
    this.bytesOut += chunk.length
    this.ctx.compression!.bytesOut = this.bytesOut
    try {
      if (!this.base.data(chunk)) this.more = false
    } catch {
      this.fail(new DownstreamError({ status: this.ctx.status || 502, reason: "client_write_failed" }))
    }
  }

  /** A failure of this sink reaches the exchange as a throw from `data`/`end` (Forward.ts: `sinkFailed`). */
  private failed(): boolean {
    if (this.outcome === undefined) return false
    throw new Error("response encoding failed")
  }

  /** Runs the encoder; its failure fails the response (the encoder is discarded). */
  private encode(encoding: BodyEncoding, chunk: Buffer | undefined): void {
    try {
      if (chunk === undefined) encoding.encoder.finish(this.onOutput)
      else encoding.encoder.write(chunk, this.onOutput)
    } catch {
      this.fail(new InternalError({ reason: "internal" }))
    }
  }

  data(chunk: Buffer): boolean {
    const encoding = this.encoding
    if (encoding === undefined) return this.base.data(chunk)
    if (this.failed()) return false
    this.bytesIn += chunk.length
    this.ctx.compression!.bytesIn = this.bytesIn
    this.more = true
    this.encode(encoding, chunk)
    this.failed()
    return this.more
  }

  onDrain(resume: () => void): void {
    if (this.outcome !== undefined) return resume()
    this.base.onDrain(resume)
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    const encoding = this.encoding
    if (encoding === undefined) {
      this.base.end(trailers)
      return this.settle(undefined)
    }
    if (this.failed()) return
    this.encode(encoding, undefined)
    if (this.outcome !== undefined) return
    try {
      this.base.end(trailers)
    } catch {
      return this.fail(new DownstreamError({ status: this.ctx.status || 502, reason: "client_write_failed" }))
    }
    this.settle(undefined)
  }

  private settle(error: ProxyError | undefined): void {
    if (this.outcome !== undefined) return
    this.outcome = { error }
    const encoding = this.encoding
    if (encoding !== undefined) {
      try {
        encoding.end(this.ctx, this.bytesIn, this.bytesOut, error === undefined)
      } catch {
        // reporting (metrics) never breaks the response
      }
    }
    const cbs = this.callbacks
    this.callbacks = []
    for (const cb of cbs) cb(error)
  }

  private fail(error: ProxyError): void {
    if (this.outcome !== undefined) return
    this.encoding?.encoder.discard()
    this.settle(error)
  }

  /** `cb` once the encoded body went to the next sink (undefined) or could not (the error); at once without an encoding. */
  onSettled(cb: (error: ProxyError | undefined) => void): void {
    if (this.outcome !== undefined || this.encoding === undefined) cb(this.outcome?.error)
    else this.callbacks.push(cb)
  }

  /** The response ends here (client gone, upstream failed): the encoder is discarded. Idempotent. */
  readonly dispose = (): void => {
    if (this.outcome !== undefined || this.encoding === undefined) return
    this.encoding.encoder.discard()
    // not completed: nobody waits for it any more (whoever disposed ends the response)
    this.callbacks = []
    this.settle(new DownstreamError({ status: this.ctx.status || 502, reason: "client_write_failed" }))
  }
}
