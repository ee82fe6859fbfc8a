/**
 * One connection of the Unix-socket pool (Client.ts): its state (handshake, pings, health,
 * flow control), the calls pending on it, its frame decoder, and its writes: the frames of
 * one turn of the event loop batched into one write.
 */
import type * as net from "node:net"
import { PendingCalls } from "./Channels.js"
import { type CancelReason, HealthState, MessageType } from "./Protocol.js"
import { FrameBatch, FrameDecoder } from "./ProtocolFrames.js"

export class Connection {
  state: "connecting" | "ready" | "closed" = "connecting"
  readonly pending = new PendingCalls()
  readonly decoder: FrameDecoder
  paused = false
  health: number = HealthState.Healthy
  handshakeTimer: ReturnType<typeof setTimeout> | undefined
  pingTimer: ReturnType<typeof setInterval> | undefined
  pingSequence = 0
  awaitingPong = false
  answersPings = false
  inboundSincePing = false

  constructor(
    readonly socket: net.Socket,
    maxFrameLength: number
  ) {
    this.decoder = new FrameDecoder(maxFrameLength)
  }

  /** Frames waiting for the end of this turn of the event loop (`flush`). */
  private readonly out = new FrameBatch()
  private flushing: ReturnType<typeof setImmediate> | undefined

  /**
   * Queues a frame (throws a RangeError, queueing nothing, past the frame limit); false when
   * the agent left more than `limit` bytes unread. The frames of one turn of the event loop
   * (every request read in one poll) go out in one write at its end: one syscall and one pass
   * through the stream machinery instead of one per call.
   */
  send(type: MessageType, payload: unknown, limit = Infinity): boolean {
    if (this.state === "closed" || this.socket.destroyed) return true
    this.out.add(type, payload)
    this.flushing ??= setImmediate(flushConnection, this)
    return this.socket.writableLength + this.out.bytes <= limit
  }

  flush(): void {
    this.flushing = undefined
    if (this.out.length === 0) return
    if (this.state === "closed" || this.socket.destroyed) return this.out.clear()
    this.socket.write(this.out.take())
  }

  /** Drops what is queued (the connection is closing). */
  discard(): void {
    if (this.flushing !== undefined) clearImmediate(this.flushing)
    this.flushing = undefined
    this.out.clear()
  }

  sendCancel(correlationId: string, reason: CancelReason): void {
    this.send(MessageType.Cancel, { correlation_id: correlationId, reason, timestamp_ms: Date.now() })
  }
}

const flushConnection = (conn: Connection): void => conn.flush()
