/**
 * A WebSocket handshake its route accepted, carried on the request context from the route's
 * check to the end of its tunnel: the client's key (for the upstream's 101), whether an
 * extension offer went upstream, the tunnel slot it holds, and the tunnel's summary. The
 * request's access line waits for the tunnel (nginx logs a WebSocket request when it ends):
 * one line per tunnel, with its duration, bytes, frames and close code.
 */
import type { TunnelSummary } from "./TunnelOptions.js"

export class WebSocketSession {
  /** The upstream's 101 was accepted: a tunnel holds the slot (and ends the session). */
  tunnelStarted = false
  summary: TunnelSummary | undefined = undefined
  private pendingLog: (() => void) | undefined = undefined
  private released = false

  constructor(
    /** The client's `Sec-WebSocket-Key`. */
    readonly key: string,
    /** A `Sec-WebSocket-Extensions` offer went upstream (not when inspecting: it is removed). */
    readonly extensionsOffered: boolean,
    /** Gives the tunnel slot back (once). */
    private readonly releaseSlot: () => void
  ) {}

  /** Gives the tunnel slot back; later calls do nothing. */
  release(): void {
    if (this.released) return
    this.released = true
    this.releaseSlot()
  }

  /**
   * The request's access line: true when `write` will be called once the tunnel ends (the
   * caller must not write it now), false when there is no tunnel to wait for.
   */
  deferLog(write: () => void): boolean {
    if (!this.tunnelStarted || this.summary !== undefined) return false
    this.pendingLog = write
    return true
  }

  /** The tunnel ended. */
  ended(summary: TunnelSummary): void {
    this.summary = summary
    this.release()
    const log = this.pendingLog
    this.pendingLog = undefined
    log?.()
  }
}
