/**
 * One direction of a tunnel: bytes read from one side, checked by a `FrameScanner` (relay) or
 * cut into frames by a `FrameParser` and passed through the agents (inspection), and written
 * to the other side with back-pressure; its FIN is passed on once what came before is written.
 */
import type { Duplex } from "node:stream"
import { randomBytes } from "node:crypto"
import { CloseCode, isViolation, Opcode, type FrameLimits, type Sender } from "./Frame.js"
import { encodeFrame } from "./FrameEncode.js"
import { FrameParser } from "./FrameParser.js"
import { FrameScanner } from "./FrameScanner.js"
import type { Tunnel } from "./Tunnel.js"
import type { Direction } from "./TunnelOptions.js"

/** Bytes of unparsed input held per direction while inspecting before its sender is paused. */
const INSPECT_HIGH_WATER = 64 * 1024

/** One direction: bytes read from `src`, written to `dst`. */
export class Flow {
  bytesIn = 0
  bytesOut = 0
  frames = 0
  dropped = 0
  /** Counted but not yet reported through `onFrames`. */
  unreported = 0
  /** `src` sent its FIN. */
  ended = false
  /** `src` sent a close frame. */
  sentClose = false
  /** The proxy wrote a close frame of its own to `dst`. */
  injected = false
  readonly scanner: FrameScanner | undefined
  readonly parser: FrameParser | undefined
  /** Inspecting: a frame of this direction is with the agents. */
  busy = false
  /** `dst` said full: `src` waits for its drain. */
  blocked = false
  private frameIndex = 0

  constructor(
    readonly tunnel: Tunnel,
    readonly src: Duplex,
    readonly dst: Duplex,
    readonly sender: Sender,
    limits: FrameLimits,
    inspecting: boolean
  ) {
    if (inspecting) this.parser = new FrameParser(sender, limits)
    else this.scanner = new FrameScanner(sender, limits)
  }

  get direction(): Direction {
    return this.sender === "client" ? "client_to_server" : "server_to_client"
  }

  /** What went to `dst` ends at a frame boundary: a frame of the proxy's own may follow. */
  get atBoundary(): boolean {
    return this.scanner === undefined ? true : this.scanner.atBoundary
  }

  readonly onData = (chunk: Buffer): void => {
    const t = this.tunnel
    if (t.closing) return
    t.active = true
    this.bytesIn += chunk.length
    if (this.parser !== undefined) {
      this.parser.push(chunk)
      this.pump()
      if (this.parser.buffered > INSPECT_HIGH_WATER) this.src.pause()
      return
    }
    const r = this.scanner!.scan(chunk)
    this.frames += r.frames
    this.unreported += r.frames
    if (r.close !== undefined && !this.sentClose) {
      this.sentClose = true
      t.noteClose(this, r.close.code, r.close.reason)
    }
    if (r.violation !== undefined) {
      if (r.violation.at > 0) this.write(chunk.subarray(0, r.violation.at))
      t.violation(this, r.violation.code, r.violation.reason, r.violation.clean)
      return
    }
    this.write(chunk)
  }

  write(chunk: Buffer): void {
    this.bytesOut += chunk.length
    if (this.dst.write(chunk)) return
    if (this.blocked) return
    this.blocked = true
    this.src.pause()
    this.dst.once("drain", this.onDrain)
  }

  private readonly onDrain = (): void => {
    this.blocked = false
    if (this.tunnel.closing) return
    if (this.parser !== undefined) {
      this.pump()
      if (this.parser.buffered <= INSPECT_HIGH_WATER && !this.blocked) this.src.resume()
      return
    }
    this.src.resume()
  }

  /** Inspecting: the next whole frames to the agents, one at a time. */
  pump(): void {
    const t = this.tunnel
    const parser = this.parser!
    while (!this.busy && !this.blocked && !t.closing) {
      const next = parser.next()
      if (next === undefined) break
      if (isViolation(next)) return t.violation(this, next.code, next.reason, true)
      const frame = next
      this.frames++
      const index = this.frameIndex++
      this.busy = true
      t.inspect(frame, this.sender === "client", index, (verdict) => {
        this.busy = false
        if (t.closing) return
        if (verdict._tag === "close") {
          t.report(this.direction, "close", 1)
          return t.proxyClose(verdict.code, verdict.reason, verdict.why === "agent_failure" ? "agent_failure" : "agent_close")
        }
        // a close frame always passes: the close handshake is not the agents' to break
        if (verdict._tag === "drop" && frame.opcode !== Opcode.Close) {
          this.dropped++
          t.report(this.direction, "drop", 1)
          // a fragment of a message leaves an empty one in its place: the message stays well formed
          if (frame.opcode === Opcode.Continuation || (!frame.fin && frame.opcode < 0x8)) {
            const mask = this.sender === "client" ? randomBytes(4) : undefined
            this.write(encodeFrame({ opcode: frame.opcode, fin: frame.fin, payload: Buffer.alloc(0), mask }))
          }
        } else {
          if (frame.opcode === Opcode.Close && !this.sentClose) {
            this.sentClose = true
            const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : CloseCode.NoStatus
            t.noteClose(this, code, frame.payload.length > 2 ? frame.payload.subarray(2).toString("utf8") : "")
          }
          this.unreported++
          this.write(frame.raw)
        }
        this.pump()
      })
    }
    if (t.closing || this.busy || this.blocked) return
    if (parser.buffered <= INSPECT_HIGH_WATER && this.src.isPaused()) this.src.resume()
    // every whole frame is through: the FIN follows (a partial frame left at the end is discarded)
    if (this.ended) this.finishEnd()
  }

  /** `src` sent its FIN: pass it on once what it sent before is written. */
  readonly onEnd = (): void => {
    this.ended = true
    // inspecting: frames still with the agents (or waiting for `dst`) go first, `pump` ends it
    if (this.parser !== undefined && (this.busy || this.blocked)) return
    this.finishEnd()
  }

  private endPassed = false
  finishEnd(): void {
    if (this.endPassed) return
    this.endPassed = true
    this.tunnel.sideEnded(this)
  }
}
