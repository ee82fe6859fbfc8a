/**
 * Raw HTTP/2 frames for protocol tests (RFC 9113): a frame builder and parser, an HPACK
 * encoder that only writes literal fields without indexing and without Huffman (RFC 7541
 * §6.2.2), and a client over a plain `node:net` socket that writes the preface and whatever
 * frames a test asks for, and collects what the server sends, so a test can wait for a given
 * frame or for the socket to close, each with a deadline.
 *
 * Decoding the server's header blocks is minimal: `statusOf` reads the `:status` field only
 * (first in the block), from the static table or a literal (plain or Huffman-coded digits).
 */
import * as net from "node:net"

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1")

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9
} as const

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20
} as const

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd
} as const

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
  /** RFC 8441 */
  ENABLE_CONNECT_PROTOCOL: 0x8
} as const

export interface Frame {
  readonly type: number
  readonly flags: number
  readonly streamId: number
  readonly payload: Buffer
}

/** One frame: 9-byte header (24-bit length, type, flags, 31-bit stream id) and the payload. */
export const frame = (type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer => {
  const h = Buffer.alloc(9)
  h.writeUIntBE(payload.length, 0, 3)
  h[3] = type
  h[4] = flags
  h.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([h, payload])
}

export const settingsFrame = (values: ReadonlyArray<readonly [number, number]> = []): Buffer => {
  const p = Buffer.alloc(6 * values.length)
  values.forEach(([id, v], i) => {
    p.writeUInt16BE(id, 6 * i)
    p.writeUInt32BE(v >>> 0, 6 * i + 2)
  })
  return frame(FrameType.SETTINGS, 0, 0, p)
}

export const settingsAck = (): Buffer => frame(FrameType.SETTINGS, Flag.ACK, 0)

export const pingFrame = (data: Buffer = Buffer.alloc(8), ack = false): Buffer => frame(FrameType.PING, ack ? Flag.ACK : 0, 0, data)

export const windowUpdate = (streamId: number, increment: number): Buffer => {
  const p = Buffer.alloc(4)
  p.writeUInt32BE(increment >>> 0)
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, p)
}

export const rstStream = (streamId: number, code: number): Buffer => {
  const p = Buffer.alloc(4)
  p.writeUInt32BE(code)
  return frame(FrameType.RST_STREAM, 0, streamId, p)
}

export const dataFrame = (streamId: number, data: Buffer | string, endStream = false): Buffer =>
  frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId, Buffer.isBuffer(data) ? data : Buffer.from(data))

export const headersFrame = (streamId: number, block: Buffer, { endStream = true, endHeaders = true } = {}): Buffer =>
  frame(FrameType.HEADERS, (endStream ? Flag.END_STREAM : 0) | (endHeaders ? Flag.END_HEADERS : 0), streamId, block)

export const continuationFrame = (streamId: number, block: Buffer, endHeaders = false): Buffer =>
  frame(FrameType.CONTINUATION, endHeaders ? Flag.END_HEADERS : 0, streamId, block)

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
export const hpackInt = (value: number, prefixBits: number, first = 0): Buffer => {
  const max = (1 << prefixBits) - 1
  if (value < max) return Buffer.from([first | value])
  const out = [first | max]
  let v = value - max
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80)
    v = Math.floor(v / 128)
  }
  out.push(v)
  return Buffer.from(out)
}

const hpackString = (s: string): Buffer => {
  const b = Buffer.from(s, "latin1")
  return Buffer.concat([hpackInt(b.length, 7, 0x00), b]) // H = 0: never Huffman
}

/** A literal header field without indexing, new name (RFC 7541 §6.2.2): 0x00, name, value. */
export const hpackLiteral = (name: string, value: string): Buffer => Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)])

/** A header block of literal fields, in order (pseudo-headers first). */
export const hpackBlock = (fields: ReadonlyArray<readonly [string, string]>): Buffer => Buffer.concat(fields.map(([n, v]) => hpackLiteral(n, v)))

/** A GET/POST head for `path` on `authority`, with `extra` regular fields. */
export const requestBlock = (
  path: string,
  { method = "GET", authority = "app.example", extra = [] as ReadonlyArray<readonly [string, string]> } = {}
): Buffer =>
  hpackBlock([[":method", method], [":scheme", "http"], [":path", path], [":authority", authority], ...extra])

/** Frames out of a byte stream: complete frames and what is left over. */
export const parseFrames = (buf: Buffer): { frames: Array<Frame>; rest: Buffer } => {
  const frames: Array<Frame> = []
  let off = 0
  while (buf.length - off >= 9) {
    const len = buf.readUIntBE(off, 3)
    if (buf.length - off < 9 + len) break
    frames.push({
      type: buf[off + 3],
      flags: buf[off + 4],
      streamId: buf.readUInt32BE(off + 5) & 0x7fffffff,
      payload: buf.subarray(off + 9, off + 9 + len)
    })
    off += 9 + len
  }
  return { frames, rest: buf.subarray(off) }
}

export const parseSettings = (payload: Buffer): Map<number, number> => {
  const m = new Map<number, number>()
  for (let i = 0; i + 6 <= payload.length; i += 6) m.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2))
  return m
}

export const goawayOf = (f: Frame): { lastStreamId: number; code: number; debug: string } => ({
  lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff,
  code: f.payload.readUInt32BE(4),
  debug: f.payload.subarray(8).toString("latin1")
})

export const rstCodeOf = (f: Frame): number => f.payload.readUInt32BE(0)

// HPACK static table (RFC 7541 Appendix A), :status entries
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 }
// Huffman codes of the digits (RFC 7541 Appendix B): enough for a :status value
const HUFFMAN_DIGITS: ReadonlyArray<readonly [string, string]> = [
  ["00000", "0"], ["00001", "1"], ["00010", "2"], ["011001", "3"], ["011010", "4"],
  ["011011", "5"], ["011100", "6"], ["011101", "7"], ["011110", "8"], ["011111", "9"]
]

const readInt = (b: Buffer, off: number, prefixBits: number): [number, number] => {
  const max = (1 << prefixBits) - 1
  let v = b[off] & max
  off++
  if (v < max) return [v, off]
  let m = 0
  for (;;) {
    const byte = b[off++]
    v += (byte & 0x7f) * 2 ** m
    m += 7
    if ((byte & 0x80) === 0) return [v, off]
  }
}

const decodeDigits = (bytes: Buffer): string | undefined => {
  let bits = ""
  for (const byte of bytes) bits += byte.toString(2).padStart(8, "0")
  let out = ""
  while (bits.length > 0) {
    const hit = HUFFMAN_DIGITS.find(([code]) => bits.startsWith(code))
    if (hit === undefined) return /^1{0,7}$/.test(bits) ? out : undefined // EOS padding
    out += hit[1]
    bits = bits.slice(hit[0].length)
  }
  return out
}

/**
 * The `:status` of a response header block, when it is its first field and is either a
 * static-table entry or a literal with the `:status` name (index 8..14); undefined otherwise.
 */
export const statusOf = (block: Buffer): number | undefined => {
  let off = 0
  // dynamic table size updates may come first
  while (off < block.length && (block[off] & 0xe0) === 0x20) off = readInt(block, off, 5)[1]
  if (off >= block.length) return undefined
  const b = block[off]
  if (b & 0x80) return STATIC_STATUS[readInt(block, off, 7)[0]]
  const prefix = (b & 0xc0) === 0x40 ? 6 : 4
  const [nameIndex, at] = readInt(block, off, prefix)
  if (nameIndex < 8 || nameIndex > 14) return undefined
  const huffman = (block[at] & 0x80) !== 0
  const [len, start] = readInt(block, at, 7)
  const raw = block.subarray(start, start + len)
  const text = huffman ? decodeDigits(raw) : raw.toString("latin1")
  return text === undefined ? undefined : Number(text)
}

export interface RawH2 {
  readonly socket: net.Socket
  /** Every frame received so far, in order. */
  readonly frames: Array<Frame>
  /** Bytes written so far (by `send`). */
  readonly sent: () => number
  readonly closed: () => boolean
  /** Writes `bufs`; false once the socket is gone. Resolves when they were handed to the kernel or buffered. */
  readonly send: (...bufs: Array<Buffer>) => boolean
  /** The first frame (already received or to come) that matches, within `timeoutMs`. */
  readonly waitFor: (match: (f: Frame) => boolean, what: string, timeoutMs?: number) => Promise<Frame>
  /** Resolves when the socket closed (either side), within `timeoutMs`. */
  readonly waitClose: (timeoutMs?: number) => Promise<void>
  /** The GOAWAY frame received, if any. */
  readonly goaway: () => { lastStreamId: number; code: number; debug: string } | undefined
  readonly destroy: () => void
}

/**
 * A raw connection to `port` on 127.0.0.1. With `preface` (default) it writes the client
 * preface and an empty SETTINGS frame at once, and acknowledges the server's SETTINGS
 * (`ackSettings`, default true). PINGs are never answered (the server answers ours).
 */
export const connectRaw = (
  port: number,
  { preface = true, ackSettings = true, settings = [] as ReadonlyArray<readonly [number, number]> } = {}
): Promise<RawH2> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, noDelay: true })
    const frames: Array<Frame> = []
    let pending: Buffer = Buffer.alloc(0)
    let isClosed = false
    let sent = 0
    const waiters = new Set<() => void>()
    const notify = () => {
      for (const w of [...waiters]) w()
    }
    socket.on("data", (chunk: Buffer) => {
      const { frames: got, rest } = parseFrames(pending.length === 0 ? chunk : Buffer.concat([pending, chunk]))
      pending = Buffer.from(rest)
      for (const f of got) {
        frames.push(f)
        if (ackSettings && f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0 && !isClosed) socket.write(settingsAck())
      }
      if (got.length > 0) notify()
    })
    socket.on("error", () => undefined)
    socket.on("close", () => {
      isClosed = true
      notify()
    })
    const send = (...bufs: Array<Buffer>): boolean => {
      if (isClosed || socket.destroyed) return false
      for (const b of bufs) {
        sent += b.length
        socket.write(b)
      }
      return true
    }
    const waitFor = (match: (f: Frame) => boolean, what: string, timeoutMs = 2000): Promise<Frame> =>
      new Promise((res, rej) => {
        let seen = 0
        const check = () => {
          for (; seen < frames.length; seen++) {
            if (match(frames[seen])) {
              done()
              return res(frames[seen])
            }
          }
          if (isClosed) {
            done()
            rej(new Error(`connection closed before ${what}; frames: ${describe(frames)}`))
          }
        }
        const timer = setTimeout(() => {
          done()
          rej(new Error(`timed out waiting for ${what}; frames: ${describe(frames)}`))
        }, timeoutMs)
        const done = () => {
          clearTimeout(timer)
          waiters.delete(check)
        }
        waiters.add(check)
        check()
      })
    const waitClose = (timeoutMs = 2000): Promise<void> =>
      new Promise((res, rej) => {
        if (isClosed) return res()
        const timer = setTimeout(() => {
          waiters.delete(check)
          rej(new Error(`timed out waiting for the connection to close; frames: ${describe(frames)}`))
        }, timeoutMs)
        const check = () => {
          if (!isClosed) return
          clearTimeout(timer)
          waiters.delete(check)
          res()
        }
        waiters.add(check)
      })
    socket.once("connect", () => {
      if (preface) send(PREFACE, settingsFrame(settings))
      resolve({
        socket,
        frames,
        sent: () => sent,
        closed: () => isClosed,
        send,
        waitFor,
        waitClose,
        goaway: () => {
          const g = frames.find((f) => f.type === FrameType.GOAWAY)
          return g === undefined ? undefined : goawayOf(g)
        },
        destroy: () => socket.destroy()
      })
    })
    socket.once("error", reject)
  })

const TYPE_NAMES = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k]))

/** A short description of frames, for failure messages. */
export const describe = (frames: ReadonlyArray<Frame>): string =>
  frames
    .slice(0, 40)
    .map((f) => {
      const name = TYPE_NAMES[f.type] ?? `0x${f.type.toString(16)}`
      const extra =
        f.type === FrameType.GOAWAY ? `(${goawayOf(f).code})` : f.type === FrameType.RST_STREAM ? `(${rstCodeOf(f)})` : ""
      return `${name}[${f.streamId}${f.flags ? ` f=${f.flags}` : ""}]${extra}`
    })
    .join(" ") + (frames.length > 40 ? ` …(${frames.length})` : "")

/** The server's first SETTINGS (not the ACK). */
export const serverSettings = async (c: RawH2): Promise<Map<number, number>> =>
  parseSettings((await c.waitFor((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0, "the server's SETTINGS")).payload)

export const isGoaway = (f: Frame): boolean => f.type === FrameType.GOAWAY

export const isRst = (streamId: number) => (f: Frame): boolean => f.type === FrameType.RST_STREAM && f.streamId === streamId

export const isResponse = (streamId: number) => (f: Frame): boolean => f.type === FrameType.HEADERS && f.streamId === streamId
