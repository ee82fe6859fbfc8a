/** Whole frames cut from a byte stream, for inspection: payload unmasked, original bytes kept. */
import {
  applyMask, decodeClosePayload, decodeHeader, type FrameHeader, type FrameLimits, isViolation, MAX_HEADER, MessageState, Opcode,
  type Sender, type Violation
} from "./Frame.js"

/** One whole frame cut from the stream (inspection). */
export interface ParsedFrame {
  readonly _tag: "Frame"
  readonly fin: boolean
  readonly rsv: number
  readonly opcode: number
  /** The payload, unmasked. */
  readonly payload: Buffer
  /** The frame's bytes as they came (masked when they were): what is forwarded on allow. */
  readonly raw: Buffer
}

/**
 * Cuts whole frames out of a byte stream, with their payloads (unmasked) and original bytes.
 * `push` bytes, then `next()` until it returns undefined (more bytes needed). After a
 * violation nothing more comes out.
 */
export class FrameParser {
  private chunks: Array<Buffer> = []
  private size = 0
  private broken = false
  readonly state: MessageState

  constructor(
    readonly sender: Sender,
    limits: FrameLimits
  ) {
    this.state = new MessageState(sender, limits)
  }

  /** Bytes held that are not yet a whole frame. */
  get buffered(): number {
    return this.size
  }

  push(chunk: Buffer): void {
    if (this.broken || chunk.length === 0) return
    this.chunks.push(chunk)
    this.size += chunk.length
  }

  private pending: FrameHeader | undefined = undefined

  /** A broken rule: what is held is dropped, and nothing more comes out. */
  private fail(v: Violation): Violation {
    this.broken = true
    this.chunks = []
    this.size = 0
    return v
  }

  private flat(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)]
    return this.chunks[0] ?? Buffer.alloc(0)
  }

  next(): ParsedFrame | Violation | undefined {
    if (this.broken || this.size < 2) return undefined
    let h = this.pending
    if (h === undefined) {
      const head = this.flat().subarray(0, MAX_HEADER)
      const d = decodeHeader(head)
      if (d === undefined) return undefined
      const bad = isViolation(d) ? d : this.state.check(d)
      if (bad !== undefined) return this.fail(bad)
      h = d as FrameHeader
      this.pending = h
    }
    const total = h.headerLength + h.length
    if (this.size < total) return undefined
    const all = this.flat()
    const raw = Buffer.from(all.subarray(0, total))
    const rest = all.subarray(total)
    this.chunks = rest.length > 0 ? [rest] : []
    this.size = rest.length
    this.pending = undefined
    const payload = Buffer.from(raw.subarray(h.headerLength))
    if (h.masked) applyMask(payload, h.mask)
    if (h.opcode === Opcode.Close) {
      const c = decodeClosePayload(payload)
      if (isViolation(c)) return this.fail(c)
    }
    return { _tag: "Frame", fin: h.fin, rsv: h.rsv, opcode: h.opcode, payload, raw }
  }
}
