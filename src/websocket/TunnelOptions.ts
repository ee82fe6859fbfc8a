/** What a tunnel is given (sockets, limits, the agents' inspector) and what it reports (frames, its summary). */
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import type { FrameLimits } from "./Frame.js"
import type { ParsedFrame } from "./FrameParser.js"

export interface TunnelLimits extends Omit<FrameLimits, "allowedRsv"> {
  /** No byte either way for this long closes the tunnel (1001), ms; 0 = never. */
  readonly idleTimeoutMs: number
  /** The tunnel is closed (1001) this long after it opened, ms; 0 = never. */
  readonly maxLifetimeMs: number
}

export type Direction = "client_to_server" | "server_to_client"

export type FrameVerdict =
  | { readonly _tag: "allow" }
  | { readonly _tag: "drop" }
  | { readonly _tag: "close"; readonly code: number; readonly reason: string; readonly why: string }

/** One frame to the agents; `done` once unless the returned cancel (tunnel gone) runs first. */
export interface FrameInspector {
  readonly inspect: (
    frame: ParsedFrame,
    clientToServer: boolean,
    frameIndex: number,
    done: (verdict: FrameVerdict) => void
  ) => () => void
}

/** Why a tunnel ended (`sentinel_websocket_closes_total{reason}`, the access log). */
export type EndReason =
  | "close_handshake"
  | "client_gone"
  | "upstream_gone"
  | "idle_timeout"
  | "max_lifetime"
  | "protocol_error"
  | "too_big"
  | "agent_close"
  | "agent_failure"
  | "going_away"

export interface TunnelSummary {
  readonly durationMs: number
  readonly bytesFromClient: number
  readonly bytesToClient: number
  readonly bytesFromUpstream: number
  readonly bytesToUpstream: number
  readonly framesFromClient: number
  readonly framesFromUpstream: number
  readonly framesDropped: number
  /** The first close frame's code (whoever sent it, the proxy included); undefined = none. */
  readonly closeCode: number | undefined
  readonly closeReason: string
  /** Who sent that close frame, or who went away first. */
  readonly closedBy: "client" | "upstream" | "proxy"
  readonly reason: EndReason
}

export interface TunnelOptions {
  /** The client's connection (HTTP/1.1), or its HTTP/2 stream (RFC 8441: DATA frames, END_STREAM as FIN). */
  readonly client: Duplex
  /** Client bytes read before the tunnel started (after the handshake request). */
  readonly clientHead: ReadonlyArray<Buffer>
  readonly upstream: Socket
  readonly limits: TunnelLimits
  /** RSV bits of the negotiated extensions (0 when inspecting: no extension is negotiated). */
  readonly allowedRsv: number
  readonly inspector?: FrameInspector | undefined
  /** Counts as they accrue (flushed by the registry's sweep and at the end). */
  readonly onFrames?: (direction: Direction, decision: "allow" | "drop" | "close", n: number) => void
  readonly onEnd: (summary: TunnelSummary) => void
}
