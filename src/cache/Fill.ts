/**
 * The tee at the response sink: the upstream's response streams on to the client chunk by
 * chunk (back-pressure kept: `data` answers what the client's side answers) while a copy is
 * collected for the cache, up to the route's `max-size-bytes` (past it the copy is dropped and
 * the response only streams). Stored only when the body completed (`end`): a response cut short
 * never reaches the store. A 304 to a revalidation refreshes the entry and the client gets the
 * stored response; a 5xx with a usable stale entry is dropped (the stale entry answers).
 */
import type { ServedSink } from "../pipeline/Stage.js"
import type { ResponseSink } from "../upstream/Forward.js"
import type { CacheExchange } from "./Exchange.js"

export class FillSink implements ResponseSink {
  private chunks: Array<Buffer> | undefined = undefined
  private size = 0
  private status = 0
  private raw: ReadonlyArray<Buffer> = []
  /** The client got a stored entry instead of the upstream's answer (a refreshed 304). */
  private replaced = false

  constructor(
    private readonly x: CacheExchange,
    private readonly base: ResponseSink
  ) {}

  start(status: number, raw: Array<Buffer>): boolean {
    const x = this.x
    if (x.revalidating && status === 304 && x.stale !== undefined) {
      const e = x.refreshed(raw)
      x.count("revalidated")
      x.status = `fwd=stale; fwd-status=304; ttl=${x.ttlOf(e)}`
      this.replaced = true
      return x.writeEntry(bufferHeads(this.base), e)
    }
    if (x.staleOnErrorStatus(status)) {
      x.status = `fwd=stale; fwd-status=${status}`
      return false
    }
    this.status = status
    this.raw = raw
    if (x.result === undefined) x.count("miss")
    if (x.decideStore(status, raw)) {
      this.chunks = []
      x.status += "; stored"
    } else x.release(false)
    return this.base.start(status, raw)
  }

  data(chunk: Buffer): boolean {
    if (this.replaced) return true
    if (this.chunks !== undefined) {
      this.size += chunk.length
      if (this.size > this.x.rules.maxSizeBytes) {
        this.chunks = undefined
        this.x.release(false)
      } else this.chunks.push(chunk)
    }
    return this.base.data(chunk)
  }

  onDrain(resume: () => void): void {
    this.base.onDrain(resume)
  }

  end(trailers?: ReadonlyArray<Buffer | string> | null): void {
    if (this.replaced) return this.base.end()
    this.base.end(trailers)
    const chunks = this.chunks
    this.chunks = undefined
    if (chunks !== undefined) this.x.commit(this.status, this.raw, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, this.size))
  }
}

/** A sink of upstream heads (Buffers) taking a stored head (strings). */
const bufferHeads = (base: ResponseSink): ServedSink => ({
  start: (status, head) => base.start(status, head.map((h) => (typeof h === "string" ? Buffer.from(h, "latin1") : h))),
  data: (chunk) => base.data(chunk),
  onDrain: (resume) => base.onDrain(resume),
  end: (trailers) => base.end(trailers)
})

/** Where a background refresh's response goes: nowhere (the fill keeps its copy). */
export const discardingSink: ResponseSink = {
  start: () => true,
  data: () => true,
  onDrain: (resume) => resume(),
  end: () => {}
}
