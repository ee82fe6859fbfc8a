/**
 * An upstream response re-encoded on its way to the client (the route's `ResponseEncoding`: the
 * `compress` filter). It wraps the sink the response goes to next (the client's, or whatever
 * the route stacks before it), so its head and bytes are the encoded ones: a cache behind it
 * stores the encoded variant it served.
 *
 * Back-pressure both ways: an upstream chunk goes into the encoder, whose `write` says when its
 * input buffer is full (the upstream pauses until it drains); the encoder's output goes to the
 * next sink, and when that one is full the encoder is paused until it drains, which in turn
 * stops it taking input. Nothing but zlib's state and one stream buffer each way is held.
 *
 * The exchange is over before the encoder's tail is written: `onSettled` is the wait the
 * upstream call adds for it (as for a held response). `dispose` (client gone, upstream failed)
 * destroys the encoder, which frees zlib's memory; the response is then cut short by whoever
 * disposed, never completed.
 */
import type { ResponseSink } from "../upstream/Forward.js"
import { InternalError, type ProxyError } from "./Errors.js"
import { DownstreamError } from "../upstream/Errors.js"
import type { RequestContext } from "./RequestContext.js"
import type { BodyEncoding, ResponseEncoding } from "./Stage.js"

const latin1 = (b: Buffer): string => b.toString("latin1")

/**
 * Upstream chunks are gathered up to this many bytes before they go to the encoder: each
 * write to a zlib stream is one job on libuv's thread pool, and a 64 KiB body arriving in a
 * dozen socket reads otherwise costs a dozen hand-offs (measured: bench/compress-bench.mjs).
 * Bounded: at most this much is held per response, and the encoder holds its input until its
 * window fills anyway, so nothing reaches the client later than it would have.
 */
export const ENCODER_INPUT_BATCH = 64 * 1024
const toRaw = (s: string): Buffer => Buffer.from(s, "latin1")

export class EncodingSink implements ResponseSink {
  private encoding: BodyEncoding | undefined = undefined
  private bytesIn = 0
  private bytesOut = 0
  private trailers: ReadonlyArray<Buffer | string> | null | undefined = undefined
  /** Upstream bytes not yet written to the encoder (ENCODER_INPUT_BATCH). */
  private batch: Array<Buffer> = []
  private batched = 0
  /** Set once: the encoded body went out whole (undefined), or failed. */
  private outcome: { readonly error: ProxyError | undefined } | undefined = undefined
  private callbacks: Array<(error: ProxyError | undefined) => void> = []
  private readonly onOutput = (chunk: Buffer) => this.output(chunk)
  private readonly onBaseDrain = () => this.encoding?.stream.resume()
  private readonly onEncoded = () => this.encoded()
  private readonly onEncoderError = () => this.fail(new InternalError({ reason: "internal" }))

  constructor(
    private readonly ctx: RequestContext,
    private readonly plan: ResponseEncoding,
    private readonly base: ResponseSink
  ) {}

  start(status: number, raw: Array<Buffer>): boolean {
    const flat = raw.map(latin1)
    const encoding = this.plan.start(this.ctx, status, flat)
    if (!this.base.start(status, flat.map(toRaw))) {
      encoding?.stream.destroy()
      return false
    }
    if (encoding === undefined) return true
    this.encoding = encoding
    this.ctx.compression = { encoding: encoding.coding, bytesIn: 0, bytesOut: 0 }
    const stream = encoding.stream
    stream.on("data", this.onOutput)
    stream.on("end", this.onEncoded)
    stream.on("error", this.onEncoderError)
    return true
  }

  private output(chunk: Buffer): void {
    if (this.outcome !== undefined) return
    this.bytesOut += chunk.length
    this.ctx.compression!.bytesOut = this.bytesOut
    let more: boolean
    try {
      more = this.base.data(chunk)
    } catch {
      return this.fail(new DownstreamError({ status: this.ctx.status || 502, reason: "client_write_failed" }))
    }
    if (more) return
    this.encoding!.stream.pause()
    this.base.onDrain(this.onBaseDrain)
  }

  /** A failure of this sink reaches the exchange as a throw from the next `data`/`end` (Forward.ts: `sinkFailed`). */
  private failed(): boolean {
    if (this.outcome === undefined) return false
    throw new Error("response encoding failed")
  }

  data(chunk: Buffer): boolean {
    const encoding = this.encoding
    if (encoding === undefined) return this.base.data(chunk)
    if (this.failed()) return false
    this.bytesIn += chunk.length
    this.ctx.compression!.bytesIn = this.bytesIn
    this.batch.push(chunk)
    this.batched += chunk.length
    if (this.batched < ENCODER_INPUT_BATCH) return true
    return this.flushBatch(encoding)
  }

  private flushBatch(encoding: BodyEncoding): boolean {
    if (this.batched === 0) return true
    const input = this.batch.length === 1 ? this.batch[0] : Buffer.concat(this.batch, this.batched)
    this.batch = []
    this.batched = 0
    return encoding.stream.write(input)
  }

  onDrain(resume: () => void): void {
    const encoding = this.encoding
    if (encoding === undefined) return this.base.onDrain(resume)
    if (this.outcome !== undefined) return resume()
    encoding.stream.once("drain", resume)
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    const encoding = this.encoding
    if (encoding === undefined) {
      this.base.end(trailers)
      return this.settle(undefined)
    }
    if (this.failed()) return
    this.trailers = trailers
    this.flushBatch(encoding)
    encoding.stream.end()
  }

  private encoded(): void {
    if (this.outcome !== undefined) return
    try {
      this.base.end(this.trailers)
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
    this.encoding?.stream.destroy()
    this.settle(error)
  }

  /** `cb` once the encoded body went to the next sink (undefined) or could not (the error); at once without an encoding. */
  onSettled(cb: (error: ProxyError | undefined) => void): void {
    if (this.outcome !== undefined || this.encoding === undefined) cb(this.outcome?.error)
    else this.callbacks.push(cb)
  }

  /** The response ends here (client gone, upstream failed): the encoder is destroyed, its memory freed. Idempotent. */
  readonly dispose = (): void => {
    if (this.outcome !== undefined || this.encoding === undefined) return
    this.batch = []
    this.encoding.stream.destroy()
    // not completed: nobody waits for it any more (whoever disposed ends the response)
    this.callbacks = []
    this.settle(new DownstreamError({ status: this.ctx.status || 502, reason: "client_write_failed" }))
  }
}
