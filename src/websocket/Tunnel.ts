/**
 * One WebSocket tunnel after the 101: the client's connection and the upstream's, bytes both
 * ways with back-pressure (a side that does not read pauses the other: at most a socket
 * buffer and one chunk are held per direction), the limits of `limits { websocket-* }`, close
 * relaying, and one summary when it ends (logged and counted by the caller).
 *
 * Two ways to carry frames, one `Flow` per direction (Flow.ts):
 * - relay (no inspection): chunks pass as they came; a `FrameScanner` per direction follows
 *   frame boundaries (counts frames, reads close codes, enforces the framing rules and the
 *   frame size) without copying or holding payloads;
 * - inspection: a `FrameParser` per direction cuts whole frames, each goes to the agents
 *   (`FrameInspector`, one call at a time per tunnel: frames stay in order) and is forwarded
 *   as it came (allow), discarded (drop; a fragment of a message is replaced by an empty one,
 *   so that the message stays well formed), or the tunnel is closed with the agent's code.
 *
 * Closing:
 * - a close frame passes like any frame; a side's FIN is passed on as a FIN once its bytes are
 *   written;
 * - a side that goes away without a close frame (reset, FIN without close): the other side
 *   gets a close frame from the proxy (1001 towards the upstream: the client went away; 1011
 *   towards the client: the upstream went away) when its stream is at a frame boundary;
 * - the proxy's own closes (a broken rule 1002/1007, too big 1009, idle timeout and maximum
 *   lifetime 1001, an agent's close, drain 1001): a close frame each way (masked towards the
 *   upstream), then FIN; sockets still open `CLOSE_GRACE_MS` later are destroyed.
 */
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { randomBytes } from "node:crypto"
import { CloseCode, type FrameLimits } from "./Frame.js"
import { encodeClose } from "./FrameEncode.js"
import type { ParsedFrame } from "./FrameParser.js"
import { Flow } from "./Flow.js"
import type { Direction, EndReason, FrameVerdict, TunnelOptions, TunnelSummary } from "./TunnelOptions.js"

/** How long the sockets get to finish after the proxy closed a tunnel, before they are destroyed. */
export const CLOSE_GRACE_MS = 1000

const noop = (): void => {}

export class Tunnel {
  readonly started = Date.now()
  lastActivity = Date.now()
  /** Bytes came since the last sweep (a flag, not a clock read per chunk). */
  active = false
  closing = false
  private done = false
  private readonly up: Flow
  private readonly down: Flow
  private closeCode: number | undefined = undefined
  private closeReason = ""
  private closedBy: TunnelSummary["closedBy"] | undefined = undefined
  private reason: EndReason | undefined = undefined
  private clientClosed = false
  private upstreamClosed = false
  private graceTimer: NodeJS.Timeout | undefined = undefined
  /** Inspection calls, one at a time (both directions share the agents' correlation id). */
  private readonly lane: Array<() => void> = []
  private laneBusy = false
  private cancelCall: (() => void) | undefined = undefined

  constructor(readonly options: TunnelOptions) {
    const { client, upstream, limits, allowedRsv } = options
    const inspecting = options.inspector !== undefined
    const frameLimits: FrameLimits = {
      maxFrameSize: limits.maxFrameSize,
      maxMessageSize: inspecting ? limits.maxMessageSize : 0,
      allowedRsv: inspecting ? 0 : allowedRsv
    }
    this.up = new Flow(this, client, upstream, "client", frameLimits, inspecting)
    this.down = new Flow(this, upstream, client, "server", frameLimits, inspecting)
    for (const s of [client, upstream] as Array<Duplex & Partial<Pick<Socket, "setTimeout" | "setNoDelay">>>) {
      // a socket's; an HTTP/2 stream has no Nagle to turn off
      s.setTimeout?.(0)
      s.setNoDelay?.(true)
      s.on("error", noop)
    }
    client.on("close", () => this.socketClosed("client"))
    upstream.on("close", () => this.socketClosed("upstream"))
    client.on("end", this.up.onEnd)
    upstream.on("end", this.down.onEnd)
    for (const chunk of options.clientHead) this.up.onData(chunk)
    client.on("data", this.up.onData)
    upstream.on("data", this.down.onData)
    client.resume()
    upstream.resume()
    if (client.destroyed) this.socketClosed("client")
    if (upstream.destroyed) this.socketClosed("upstream")
  }

  /** Frames dropped or closed on, reported at once (relayed ones are counted and reported by `flush`). */
  report(direction: Direction, decision: "drop" | "close", n: number): void {
    this.options.onFrames?.(direction, decision, n)
  }

  /** Reports the frames relayed since the last flush. */
  flush(): void {
    for (const f of [this.up, this.down]) {
      if (f.unreported > 0) {
        this.options.onFrames?.(f.direction, "allow", f.unreported)
        f.unreported = 0
      }
    }
  }

  /** Bytes received so far in each direction (for the registry's periodic metrics). */
  bytes(): { readonly fromClient: number; readonly fromUpstream: number } {
    return { fromClient: this.up.bytesIn, fromUpstream: this.down.bytesIn }
  }

  /** The registry's sweep: idle timeout and maximum lifetime. */
  tick(now: number): void {
    if (this.closing || this.done) return
    if (this.active) {
      this.active = false
      this.lastActivity = now
    }
    const l = this.options.limits
    if (l.maxLifetimeMs > 0 && now - this.started >= l.maxLifetimeMs) return this.proxyClose(CloseCode.GoingAway, "maximum lifetime reached", "max_lifetime")
    if (l.idleTimeoutMs > 0 && now - this.lastActivity >= l.idleTimeoutMs) return this.proxyClose(CloseCode.GoingAway, "idle timeout", "idle_timeout")
  }

  inspect(frame: ParsedFrame, clientToServer: boolean, index: number, done: (v: FrameVerdict) => void): void {
    const run = () => {
      this.laneBusy = true
      let settled = false
      this.cancelCall = this.options.inspector!.inspect(frame, clientToServer, index, (v) => {
        if (settled) return
        settled = true
        this.cancelCall = undefined
        this.laneBusy = false
        done(v)
        const next = this.lane.shift()
        if (next !== undefined && !this.closing) next()
      })
    }
    if (this.laneBusy) this.lane.push(run)
    else run()
  }

  /** A side sent a close frame (first one decides the summary's code). */
  noteClose(flow: Flow, code: number, reason: string): void {
    if (this.closeCode !== undefined) return
    this.closeCode = code
    this.closeReason = reason
    this.closedBy = flow.sender === "client" ? "client" : "upstream"
  }

  violation(flow: Flow, code: number, reason: string, clean: boolean): void {
    // the offending side's stream to the other side is cut: a close frame there only if it is clean
    if (!clean) flow.injected = true
    this.proxyClose(code, reason, code === CloseCode.TooBig ? "too_big" : "protocol_error")
  }

  /**
   * The proxy closes the tunnel: a close frame to each side whose stream is at a frame
   * boundary (masked towards the upstream), then FIN; destroyed after the grace period.
   */
  proxyClose(code: number, reason: string, why: EndReason): void {
    if (this.closing || this.done) return
    this.closing = true
    this.reason ??= why
    if (this.closeCode === undefined) {
      this.closeCode = code
      this.closeReason = reason
      this.closedBy = "proxy"
    }
    this.cancelCall?.()
    this.cancelCall = undefined
    this.lane.length = 0
    const { client, upstream } = this.options
    // keep reading (and discarding, `closing`): the peers' close frames and FINs end the sockets
    client.resume()
    upstream.resume()
    this.sendClose(this.down, client, code, reason, undefined)
    this.sendClose(this.up, upstream, code, reason, randomBytes(4))
    this.armGrace()
  }

  private sendClose(flow: Flow, dst: Duplex, code: number, reason: string, mask: Buffer | undefined): void {
    if (!dst.destroyed && dst.writable && !flow.injected && flow.atBoundary) {
      flow.injected = true
      const frame = encodeClose(code, reason, mask)
      flow.bytesOut += frame.length
      dst.write(frame)
    }
    if (!dst.destroyed) dst.end()
  }

  private armGrace(): void {
    if (this.graceTimer !== undefined) return
    this.graceTimer = setTimeout(() => {
      this.options.client.destroy()
      this.options.upstream.destroy()
    }, CLOSE_GRACE_MS)
    this.graceTimer.unref()
  }

  /** A side's FIN (after its pending frames): passed on, with a close frame first if it never sent one. */
  sideEnded(flow: Flow): void {
    if (this.closing) return
    if (!flow.sentClose) return this.goneWithoutClose(flow)
    this.reason ??= "close_handshake"
    if (!flow.dst.destroyed) flow.dst.end()
    // the close handshake is done or under way: the other side has the grace period to finish
    this.armGrace()
  }

  /** `flow`'s sender left without a close frame: the other side is told, then its stream ends. */
  private goneWithoutClose(flow: Flow): void {
    const fromClient = flow.sender === "client"
    this.reason ??= fromClient ? "client_gone" : "upstream_gone"
    if (this.closeCode === undefined) {
      this.closedBy = fromClient ? "client" : "upstream"
    }
    const code = fromClient ? CloseCode.GoingAway : CloseCode.InternalError
    const text = fromClient ? "client went away" : "upstream went away"
    this.sendClose(flow, flow.dst, code, text, fromClient ? randomBytes(4) : undefined)
    flow.dst.resume()
    this.armGrace()
  }

  private socketClosed(side: "client" | "upstream"): void {
    if (side === "client") {
      if (this.clientClosed) return
      this.clientClosed = true
    } else {
      if (this.upstreamClosed) return
      this.upstreamClosed = true
    }
    const flow = side === "client" ? this.up : this.down
    if (!flow.ended && !this.closing && !this.done) {
      // a reset, or closed without its FIN reaching us
      flow.ended = true
      this.cancelCall?.()
      this.goneWithoutClose(flow)
    }
    if (this.clientClosed && this.upstreamClosed) this.finish()
  }

  private finish(): void {
    if (this.done) return
    this.done = true
    this.closing = true
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer)
    this.cancelCall?.()
    this.flush()
    this.options.onEnd({
      durationMs: Date.now() - this.started,
      bytesFromClient: this.up.bytesIn,
      bytesToClient: this.down.bytesOut,
      bytesFromUpstream: this.down.bytesIn,
      bytesToUpstream: this.up.bytesOut,
      framesFromClient: this.up.frames,
      framesFromUpstream: this.down.frames,
      framesDropped: this.up.dropped + this.down.dropped,
      closeCode: this.closeCode,
      closeReason: this.closeReason,
      closedBy: this.closedBy ?? "client",
      reason: this.reason ?? "client_gone"
    })
  }

  /** Drain, reload or shutdown: 1001 both ways. */
  goAway(): void {
    this.proxyClose(CloseCode.GoingAway, "server going away", "going_away")
  }

  get ended(): boolean {
    return this.done
  }
}

