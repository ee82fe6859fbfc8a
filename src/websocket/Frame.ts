/**
 * RFC 6455 framing, pure: opcodes and close codes, the frame header, masking, a close frame's
 * payload, and the rules every frame is checked against (`MessageState`). Built on it: the
 * streaming header scanner for tunnels that only relay (FrameScanner.ts), the parser that cuts
 * whole frames for inspection (FrameParser.ts), and the encoder of the frames the proxy makes
 * itself (FrameEncode.ts). No message reassembly: agents see frames (Sentinel's events are per
 * frame, with `fin` and `frame_index`).
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

/** The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask. */
export const MAX_HEADER = 14
