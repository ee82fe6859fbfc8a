/**
 * The frames of agent protocol v2 over Unix domain sockets, byte for byte as
 * Sentinel's: `[u32 BE L][u8 type][L-1 bytes of UTF-8 JSON]`, `L` counting the
 * type byte. The encoders, the batch of one write (FrameBatch) and the
 * incremental decoder (FrameDecoder), which never throws: a broken frame is an
 * `AgentProtocolError`. Used by both sides: the proxy's Client and the agent SDK.
 */
import { AgentProtocolError, isMessageType, MAX_FRAME_LENGTH, type MessageType, messageTypeName } from "./Protocol.js"

// ---------------------------------------------------------------------------
// Framing

/** One decoded frame. `payload` is the parsed JSON object. */
export interface Frame {
  readonly _tag: "Frame"
  readonly type: MessageType
  readonly payload: Record<string, unknown>
}

/**
 * Encodes one frame from already-serialised payload bytes.
 * Throws a RangeError past `MAX_FRAME_LENGTH` (callers bound bodies well below it).
 */
export const encodeFrameBytes = (type: MessageType, payload: Uint8Array): Buffer => {
  const length = payload.length + 1
  if (length > MAX_FRAME_LENGTH) throw new RangeError(`agent frame of ${length} bytes exceeds ${MAX_FRAME_LENGTH}`)
  const out = Buffer.allocUnsafe(4 + length)
  out.writeUInt32BE(length, 0)
  out[4] = type
  out.set(payload, 5)
  return out
}

/**
 * Encodes one frame: `payload` is serialised with `JSON.stringify`.
 * Throws a RangeError past `MAX_FRAME_LENGTH`.
 */
export const encodeFrame = (type: MessageType, payload: unknown): Buffer => {
  const json = JSON.stringify(payload ?? null)
  const size = payloadBytes(json)
  const out = Buffer.allocUnsafe(5 + size)
  writeFrame(out, 0, type, json, size)
  return out
}

/** The UTF-8 size of a JSON payload; a RangeError when its frame would exceed `MAX_FRAME_LENGTH`. */
const payloadBytes = (json: string): number => {
  const size = Buffer.byteLength(json)
  if (size + 1 > MAX_FRAME_LENGTH) throw new RangeError(`agent frame of ${size + 1} bytes exceeds ${MAX_FRAME_LENGTH}`)
  return size
}

/** Writes one frame (length prefix, type byte, `size` bytes of JSON) into `out` at `at`. */
const writeFrame = (out: Buffer, at: number, type: MessageType, json: string, size: number): void => {
  out.writeUInt32BE(size + 1, at)
  out[at + 4] = type
  out.write(json, at + 5, size, "utf8")
}

/**
 * Frames queued for one write: each payload serialised when it is queued (so an oversize
 * one is refused then), all of them written into one buffer by `take`. One allocation and
 * one copy per batch instead of a buffer per frame and a concatenation.
 */
export class FrameBatch {
  private types: Array<MessageType> = []
  private jsons: Array<string> = []
  private sizes: Array<number> = []
  /** Bytes `take` will return (length prefixes and type bytes included). */
  bytes = 0

  get length(): number {
    return this.types.length
  }

  /** Queues one frame; throws a RangeError past `MAX_FRAME_LENGTH` (then nothing is queued). */
  add(type: MessageType, payload: unknown): void {
    const json = JSON.stringify(payload ?? null)
    const size = payloadBytes(json)
    this.types.push(type)
    this.jsons.push(json)
    this.sizes.push(size)
    this.bytes += 5 + size
  }

  /** The queued frames, in order, as one buffer; the batch is empty afterwards. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.bytes)
    let at = 0
    for (let i = 0; i < this.types.length; i++) {
      const size = this.sizes[i]
      writeFrame(out, at, this.types[i], this.jsons[i], size)
      at += 5 + size
    }
    this.clear()
    return out
  }

  clear(): void {
    this.types = []
    this.jsons = []
    this.sizes = []
    this.bytes = 0
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * Incremental frame decoder. Feed it socket chunks of any size with `push`;
 * it returns every complete frame, in order. On the first protocol error it
 * returns that error (after the frames before it) and stays failed: every
 * later `push` returns nothing. A frame is held in memory only once; chunks
 * are joined when the frame is complete, not on every push.
 */
export class FrameDecoder {
  private chunks: Array<Buffer> = []
  private size = 0
  private failure: AgentProtocolError | undefined

  constructor(private readonly maxFrameLength: number = MAX_FRAME_LENGTH) {}

  /** The error that stopped this decoder, if any. */
  get error(): AgentProtocolError | undefined {
    return this.failure
  }

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.size
  }

  push(chunk: Uint8Array): Array<Frame | AgentProtocolError> {
    const out: Array<Frame | AgentProtocolError> = []
    if (this.failure !== undefined || chunk.length === 0) return out
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length))
    this.size += chunk.length
    for (;;) {
      if (this.size < 4) return out
      this.coalesce(Math.min(this.size, 5))
      const head = this.chunks[0]
      const length = head.readUInt32BE(0)
      if (length === 0) return this.fail(out, "zero-length", "agent frame with L = 0")
      if (length > this.maxFrameLength) {
        return this.fail(out, "oversize", `agent frame of ${length} bytes exceeds ${this.maxFrameLength}`)
      }
      if (this.size < 5) return out
      const type = head[4]
      if (!isMessageType(type)) return this.fail(out, "unknown-type", `unknown agent message type ${messageTypeName(type)}`)
      if (this.size < 4 + length) return out
      this.coalesce(4 + length)
      const first = this.chunks[0]
      const payload = first.subarray(5, 4 + length)
      if (first.length === 4 + length) this.chunks.shift()
      else this.chunks[0] = first.subarray(4 + length)
      this.size -= 4 + length
      let value: unknown
      try {
        value = JSON.parse(utf8.decode(payload))
      } catch (e) {
        return this.fail(out, "bad-json", `agent ${messageTypeName(type)} payload is not UTF-8 JSON: ${String(e)}`)
      }
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return this.fail(out, "bad-json", `agent ${messageTypeName(type)} payload is not a JSON object`)
      }
      out.push({ _tag: "Frame", type, payload: value as Record<string, unknown> })
    }
  }

  /** Makes `chunks[0]` hold at least `n` bytes (n <= size), joining only the chunks needed. */
  private coalesce(n: number): void {
    if (this.chunks[0].length >= n) return
    let count = 0
    let total = 0
    while (total < n) total += this.chunks[count++].length
    const joined = Buffer.concat(this.chunks.slice(0, count), total)
    this.chunks.splice(0, count, joined)
  }

  private fail(
    out: Array<Frame | AgentProtocolError>,
    reason: AgentProtocolError["reason"],
    message: string
  ): Array<Frame | AgentProtocolError> {
    this.failure = new AgentProtocolError({ reason, message })
    this.chunks = []
    this.size = 0
    out.push(this.failure)
    return out
  }
}
