/** The frames the proxy writes itself: close frames, and the empty fragment left for a dropped one. */
import { applyMask, Opcode } from "./Frame.js"

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
