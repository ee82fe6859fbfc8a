/**
 * RFC 6455 framing, pure: a streaming header scanner for tunnels that only relay (frames are
 * counted, checked and their close codes read, the bytes pass through untouched and uncopied),
 * a parser that cuts whole frames for inspection, and the encoder of the frames the proxy
 * makes itself (close frames). No message reassembly: agents see frames (Sentinel's events
 * are per frame, with `fin` and `frame_index`).
 *
 * Checked on every frame (RFC 6455 §5.2-5.5), a violation closes the tunnel with 1002
 * (protocol error) or 1009 (too big):
 * - masking: frames from the client must be masked, frames from the server must not;
 * - RSV bits: only when an extension was negotiated (none is, when inspecting);
 * - opcodes: 0x0-0x2 and 0x8-0xA only;
 * - control frames: at most 125 bytes of payload, never fragmented; a close payload is empty
 *   or a valid code (1000-1014 less 1004-1006, or 3000-4999) and UTF-8 reason;
 * - fragmentation: a continuation only inside a fragmented message, no new data frame inside one;
 * - lengths: the 64-bit form has its top bit clear, and the shortest form is used (§5.2: "the
 *   minimal number of bytes MUST be used");
 * - a frame's payload over `maxFrameSize` (1009), a fragmented message over `maxMessageSize`
 *   (1009; 0 = unbounded).
 */

export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa
} as const

/** Sentinel's names of opcodes, as sent in `websocket_frame` events. */
export const opcodeName = (op: number): string => {
  switch (op) {
    case Opcode.Continuation:
      return "continuation"
    case Opcode.Text:
      return "text"
    case Opcode.Binary:
      return "binary"
    case Opcode.Close:
      return "close"
    case Opcode.Ping:
      return "ping"
    case Opcode.Pong:
      return "pong"
    default:
      return "reserved"
  }
}

/** Close codes (RFC 6455 §7.4.1). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  Unsupported: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  TooBig: 1009,
  InternalError: 1011
} as const

/** A close code an endpoint may send in a close frame. */
export const isValidCloseCode = (code: number): boolean =>
  (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)

/** Who sent the frames being read: the client masks, the server must not. */
export type Sender = "client" | "server"

export interface FrameLimits {
  /** Largest payload of one frame, bytes. */
  readonly maxFrameSize: number
  /** Largest total payload of one (fragmented) message, bytes; 0 = no bound. */
  readonly maxMessageSize: number
  /** RSV bits a frame may carry (bit mask of 0x40, 0x20, 0x10): those of negotiated extensions; 0 = none. */
  readonly allowedRsv: number
}

export interface FrameHeader {
  readonly fin: boolean
  /** RSV1..3 as in the first byte (0x70 mask). */
  readonly rsv: number
  readonly opcode: number
  readonly masked: boolean
  readonly length: number
  /** Bytes of the header, mask key included (2-14). */
  readonly headerLength: number
  /** The masking key as a big-endian 32-bit number (0 when not `masked`). */
  readonly mask: number
}

/** A rule broken: close the tunnel with `code`. */
export interface Violation {
  readonly _tag: "Violation"
  readonly code: number
  readonly reason: string
}

const violation = (code: number, reason: string): Violation => ({ _tag: "Violation", code, reason })

/**
 * Decodes a header at `buf[off..end)`: the header, undefined when more bytes are needed, or a
 * violation of the length encoding. No allocation but the header object (the mask is a number).
 */
export const decodeHeader = (buf: Buffer, off = 0, end = buf.length): FrameHeader | Violation | undefined => {
  const avail = end - off
  if (avail < 2) return undefined
  const b0 = buf[off]
  const b1 = buf[off + 1]
  const masked = (b1 & 0x80) !== 0
  let length = b1 & 0x7f
  let at = 2
  if (length === 126) {
    if (avail < 4) return undefined
    length = buf.readUInt16BE(off + 2)
    at = 4
    if (length < 126) return violation(CloseCode.ProtocolError, "non-minimal length encoding")
  } else if (length === 127) {
    if (avail < 10) return undefined
    const high = buf.readUInt32BE(off + 2)
    if (high & 0x80000000) return violation(CloseCode.ProtocolError, "64-bit length with its top bit set")
    // lengths past 2^53 cannot be represented (and are far over any limit): too big
    if (high > 0x1fffff) return violation(CloseCode.TooBig, "frame too large")
    length = high * 0x100000000 + buf.readUInt32BE(off + 6)
    at = 10
    if (length <= 0xffff) return violation(CloseCode.ProtocolError, "non-minimal length encoding")
  }
  let mask = 0
  if (masked) {
    if (avail < at + 4) return undefined
    mask = buf.readUInt32BE(off + at)
    at += 4
  }
  return { fin: (b0 & 0x80) !== 0, rsv: b0 & 0x70, opcode: b0 & 0x0f, masked, length, headerLength: at, mask }
}

/** Whether a decoded value is a violation. */
export const isViolation = (u: unknown): u is Violation => typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Violation"

/**
 * Fragmentation state of one direction: whether a fragmented message is in progress and how
 * much of it has arrived. The rules that depend on the frames before this one.
 */
export class MessageState {
  inMessage = false
  messageBytes = 0

  constructor(
    private readonly sender: Sender,
    private readonly limits: FrameLimits
  ) {}

  /** The rules a header must satisfy (before its payload is read); updates the state. */
  check(h: FrameHeader): Violation | undefined {
    if (this.sender === "client" && !h.masked) return violation(CloseCode.ProtocolError, "unmasked frame from the client")
    if (this.sender === "server" && h.masked) return violation(CloseCode.ProtocolError, "masked frame from the server")
    if ((h.rsv & ~this.limits.allowedRsv) !== 0) return violation(CloseCode.ProtocolError, "reserved bits set without a negotiated extension")
    const op = h.opcode
    if (op >= 0x8) {
      if (op > Opcode.Pong) return violation(CloseCode.ProtocolError, `reserved control opcode 0x${op.toString(16)}`)
      if (!h.fin) return violation(CloseCode.ProtocolError, "fragmented control frame")
      if (h.length > 125) return violation(CloseCode.ProtocolError, "control frame over 125 bytes")
      if (h.rsv !== 0) return violation(CloseCode.ProtocolError, "reserved bits on a control frame")
      return undefined
    }
    if (op > Opcode.Binary) return violation(CloseCode.ProtocolError, `reserved data opcode 0x${op.toString(16)}`)
    if (op === Opcode.Continuation) {
      if (!this.inMessage) return violation(CloseCode.ProtocolError, "continuation frame outside a fragmented message")
    } else {
      if (this.inMessage) return violation(CloseCode.ProtocolError, "new data frame inside a fragmented message")
      this.messageBytes = 0
    }
    if (h.length > this.limits.maxFrameSize) return violation(CloseCode.TooBig, "frame too large")
    this.messageBytes += h.length
    if (this.limits.maxMessageSize > 0 && this.messageBytes > this.limits.maxMessageSize) {
      return violation(CloseCode.TooBig, "message too large")
    }
    this.inMessage = !h.fin
    return undefined
  }
}

/** Unmasks (or masks: the same XOR) `data` in place with a 4-byte key (bytes, or a big-endian 32-bit number). */
export const applyMask = (data: Buffer, mask: Buffer | number): void => {
  const k = typeof mask === "number" ? [mask >>> 24, (mask >>> 16) & 255, (mask >>> 8) & 255, mask & 255] : mask
  for (let i = 0; i < data.length; i++) data[i] ^= k[i & 3]
}

/** Code and reason of a close frame's (unmasked) payload, or a violation. Empty payload: 1005 (no status). */
export const decodeClosePayload = (payload: Buffer): { readonly code: number; readonly reason: string } | Violation => {
  if (payload.length === 0) return { code: CloseCode.NoStatus, reason: "" }
  if (payload.length === 1) return violation(CloseCode.ProtocolError, "close payload of one byte")
  const code = payload.readUInt16BE(0)
  if (!isValidCloseCode(code)) return violation(CloseCode.ProtocolError, `invalid close code ${code}`)
  const rest = payload.subarray(2)
  let reason: string
  try {
    reason = new TextDecoder("utf-8", { fatal: true }).decode(rest)
  } catch {
    return violation(CloseCode.InvalidPayload, "close reason is not UTF-8")
  }
  return { code, reason }
}

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

const MAX_HEADER = 14

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
      if (bad !== undefined) {
        this.broken = true
        this.chunks = []
        this.size = 0
        return bad
      }
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
      if (isViolation(c)) {
        this.broken = true
        this.chunks = []
        this.size = 0
        return c
      }
    }
    return { _tag: "Frame", fin: h.fin, rsv: h.rsv, opcode: h.opcode, payload, raw }
  }
}

/** Encodes one frame; `mask` (4 bytes) masks it (frames the proxy sends to the upstream). */
export const encodeFrame = (opts: {
  readonly fin?: boolean
  readonly rsv?: number
  readonly opcode: number
  readonly payload: Buffer
  readonly mask?: Buffer | undefined
}): Buffer => {
  const { payload, mask } = opts
  const len = payload.length
  const lenBytes = len < 126 ? 0 : len <= 0xffff ? 2 : 8
  const headerLength = 2 + lenBytes + (mask !== undefined ? 4 : 0)
  const out = Buffer.alloc(headerLength + len)
  out[0] = ((opts.fin ?? true) ? 0x80 : 0) | ((opts.rsv ?? 0) & 0x70) | (opts.opcode & 0x0f)
  out[1] = (mask !== undefined ? 0x80 : 0) | (lenBytes === 0 ? len : lenBytes === 2 ? 126 : 127)
  if (lenBytes === 2) out.writeUInt16BE(len, 2)
  else if (lenBytes === 8) {
    out.writeUInt32BE(Math.floor(len / 0x100000000), 2)
    out.writeUInt32BE(len >>> 0, 6)
  }
  let at = 2 + lenBytes
  if (mask !== undefined) {
    mask.copy(out, at)
    at += 4
  }
  payload.copy(out, at)
  if (mask !== undefined) applyMask(out.subarray(at), mask)
  return out
}

/** The payload of a close frame: code and a reason cut to fit 125 bytes (on a character boundary). */
export const closePayload = (code: number, reason = ""): Buffer => {
  let r = Buffer.from(reason, "utf8")
  if (r.length > 123) {
    let end = 123
    // do not cut a multi-byte character
    while (end > 0 && (r[end] & 0xc0) === 0x80) end--
    r = r.subarray(0, end)
  }
  const out = Buffer.alloc(2 + r.length)
  out.writeUInt16BE(code, 0)
  r.copy(out, 2)
  return out
}

/** A close frame; masked when `mask` is given (towards the upstream). */
export const encodeClose = (code: number, reason = "", mask?: Buffer): Buffer =>
  encodeFrame({ opcode: Opcode.Close, payload: closePayload(code, reason), mask })
