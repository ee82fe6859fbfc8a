/** Frame boundaries over a relayed byte stream: counted, checked, close codes read, no payload kept. */
import {
  applyMask, decodeClosePayload, decodeHeader, type FrameHeader, type FrameLimits, isViolation, MAX_HEADER, MessageState, Opcode,
  type Sender, type Violation
} from "./Frame.js"

/** What the scanner saw in one chunk. */
export interface ScanResult {
  /** Frames whose last byte was in this chunk. */
  frames: number
  /** Close frames completed in this chunk: the first one's code and reason. */
  close: { readonly code: number; readonly reason: string } | undefined
  /**
   * A rule broken: the bytes before `at` (in this chunk) may pass, the rest must not. `clean`:
   * what passed ends at a frame boundary (the offending frame started in this chunk), so a
   * frame of the proxy's own may follow.
   */
  violation: (Violation & { readonly at: number; readonly clean: boolean }) | undefined
}

/**
 * Follows frame boundaries over a byte stream without keeping payloads (except a close
 * frame's, at most 125 bytes): O(1) memory, no copy of the data. For tunnels that relay
 * bytes as they come; `atBoundary` says whether a frame of the proxy's own may be written
 * to this stream's destination now.
 */
export class FrameScanner {
  private readonly header = Buffer.alloc(MAX_HEADER)
  private headerHave = 0
  /** Payload bytes of the current frame still to come; -1 = reading a header. */
  private remaining = -1
  private current: FrameHeader | undefined = undefined
  private closeParts: Array<Buffer> | undefined = undefined
  /** Where the current frame started in the chunk being scanned; -1 = in an earlier chunk. */
  private frameStart = -1
  private broken = false
  readonly state: MessageState
  /** Frames completed so far. */
  frames = 0

  constructor(
    readonly sender: Sender,
    limits: FrameLimits
  ) {
    this.state = new MessageState(sender, limits)
  }

  /** No frame is partly read: whatever was handed on ends at a frame boundary. */
  get atBoundary(): boolean {
    return this.remaining === -1 && this.headerHave === 0
  }

  scan(chunk: Buffer): ScanResult {
    const out: ScanResult = { frames: 0, close: undefined, violation: undefined }
    if (this.broken) return out
    this.frameStart = -1
    let i = 0
    const n = chunk.length
    while (i < n) {
      if (this.remaining === -1) {
        let h: FrameHeader | Violation | undefined
        let start: number
        if (this.headerHave === 0) {
          // the usual case: the whole header is in this chunk, read in place
          start = i
          h = decodeHeader(chunk, i, n)
          if (h === undefined) {
            chunk.copy(this.header, 0, i, n)
            this.headerHave = n - i
            i = n
            continue
          }
        } else {
          // a header split across chunks: collected in the scratch buffer
          start = i - this.headerHave
          const take = Math.min(MAX_HEADER - this.headerHave, n - i)
          chunk.copy(this.header, this.headerHave, i, i + take)
          const have = this.headerHave + take
          h = decodeHeader(this.header, 0, have)
          if (h === undefined) {
            this.headerHave = have
            i += take
            continue
          }
        }
        const bad = isViolation(h) ? h : this.state.check(h)
        if (bad !== undefined) {
          this.broken = true
          out.violation = { ...bad, at: Math.max(0, start), clean: start >= 0 }
          return out
        }
        const fh = h as FrameHeader
        this.frameStart = start
        // the bytes of this chunk that belonged to the header
        i += fh.headerLength - this.headerHave
        this.headerHave = 0
        this.current = fh
        this.remaining = fh.length
        if (fh.opcode === Opcode.Close) this.closeParts = []
      }
      const take = Math.min(this.remaining, n - i)
      if (this.closeParts !== undefined && take > 0) this.closeParts.push(chunk.subarray(i, i + take))
      i += take
      this.remaining -= take
      if (this.remaining === 0) {
        const fh = this.current!
        this.remaining = -1
        this.current = undefined
        this.frames++
        out.frames++
        if (this.closeParts !== undefined) {
          const payload = Buffer.concat(this.closeParts)
          this.closeParts = undefined
          if (fh.masked) applyMask(payload, fh.mask)
          const c = decodeClosePayload(payload)
          if (isViolation(c)) {
            this.broken = true
            // the bad close frame does not pass (unless it began in an earlier chunk, already handed on)
            out.violation = { ...c, at: Math.max(0, this.frameStart), clean: this.frameStart >= 0 }
            return out
          }
          out.close ??= c
        }
      }
    }
    return out
  }
}
