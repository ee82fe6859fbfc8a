/**
 * The gRPC transport of an agent: the same `AgentClient` interface as the
 * Unix-socket pool (Client.ts), so the Manager and AgentRuntime (concurrency
 * cap, circuit breaker, failure modes, metrics) treat both alike.
 *
 * - One HTTP/2 connection per agent (node:http2, GrpcHttp2.ts), with
 *   keepalive pings (`ping-interval-ms`), message limits of 10 MiB each way,
 *   TLS / mTLS when configured; each stream reconnects with its own backoff
 *   (`reconnect-base-ms` doubling up to `reconnect-max-ms`).
 * - On it, `pool-size` ProcessStream calls (Sentinel opens 4 connections of
 *   one stream each; an agent built on Sentinel's SDK handles one message at
 *   a time per stream, so the streams are its parallelism). Each stream
 *   starts with the handshake; then events go out as ProxyToAgent and
 *   answers come back as AgentResponse, matched by `correlation_id`.
 * - A stream that ends or fails (agent killed, restarting, unreachable)
 *   fails every call in flight on it at once (`AgentUnavailable`, resolved by
 *   the failure mode) and is reopened with exponential backoff and jitter.
 * - Each call owns its deadline (the agent's or the filter's `timeout-ms`);
 *   on timeout or when the client leaves, a CancelRequest goes to the agent.
 * - Package: `zentinel.agent.v2` first; an agent answering UNIMPLEMENTED is
 *   asked again under `sentinel.agent.v2` (and the other way round), and
 *   the package that answered is kept.
 * - The agent's `config { }` goes in the handshake's `config_json` and, once
 *   the handshake succeeded, as a ConfigureEvent (`is_initial`), not answered.
 *
 * The streams (handshake, package fallback, what the agent sends, drop and reconnect) are
 * GrpcStreams.ts; this file is the calls on them (pick a stream, encode, deadline, cancel).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import {
  type AgentCallError,
  type AgentClient,
  type AgentClientStatus,
  callOf,
  type CancelCall,
  type Done,
  pickChannel,
  PickMiss,
  pickMissError,
  trackCall
} from "./Channels.js"
import { proxyToAgentOf } from "./GrpcMapping.js"
import { frameOf } from "./GrpcHttp2.js"
import { type GrpcClientConfig, GrpcStreams, Stream } from "./GrpcStreams.js"
import { encodeRequestHeadersFrame } from "./GrpcWire.js"
import { encodeProxyToAgent, type GrpcPackage, type ProxyToAgent } from "./GrpcProto.js"
import {
  type AgentCapabilities,
  AgentProtocolError,
  type CancelReason,
  MessageType,
  type RequestHeadersEvent
} from "./Protocol.js"

class GrpcPool extends GrpcStreams implements AgentClient {
  private rr = 0

  // -- calls ------------------------------------------------------------------

  private readonly streamAt = (i: number): Stream | undefined => this.slots[i].stream

  private pick(correlationId: string): Stream | AgentCallError {
    const got = pickChannel(this.slots.length, this.streamAt, this.rr++ % this.slots.length, correlationId)
    if (!(got instanceof PickMiss)) return got
    return pickMissError(got, correlationId, {
      agent: this.id,
      closed: this.closed,
      lastRejection: this.lastRejection,
      notConnected: `no gRPC stream to ${this.config.address}${this.lastError ? `: ${this.lastError}` : ""}`
    })
  }

  private sendCancel(s: Stream, correlationId: string, reason: CancelReason): void {
    s.send(frameOf(encodeProxyToAgent({ cancel: { correlation_id: correlationId, reason, timestamp_ms: Date.now() } })))
  }

  /** An event's ProxyToAgent message, framed (RequestHeaders, the one of every request, encoded by hand: GrpcWire.ts). */
  private encode(type: MessageType, event: { readonly correlation_id: string }): Buffer | AgentProtocolError {
    if (type === MessageType.RequestHeaders) {
      const frame = encodeRequestHeadersFrame(event as RequestHeadersEvent)
      if (frame !== undefined) return frame
    }
    const message = proxyToAgentOf(type, event)
    if (message instanceof AgentProtocolError) return new AgentProtocolError({ reason: message.reason, message: message.message, agent: this.id })
    try {
      return frameOf(encodeProxyToAgent(message as ProxyToAgent))
    } catch (e) {
      return new AgentProtocolError({ reason: "malformed", message: `cannot encode the event: ${String(e)}`, agent: this.id })
    }
  }

  readonly start = (
    type: MessageType,
    event: { readonly correlation_id: string },
    timeoutMs: number,
    done: Done
  ): CancelCall => {
    const correlationId = event.correlation_id
    const picked = this.pick(correlationId)
    if (!(picked instanceof Stream)) {
      done(Either.left(picked))
      return noop
    }
    const frame = this.encode(type, event)
    if (frame instanceof AgentProtocolError) {
      done(Either.left(frame))
      return noop
    }
    const bytes = frame.length - 5
    if (bytes > this.maxMessageBytes) {
      // over the limit the agent would fail the whole stream: fail this call only
      done(
        Either.left(
          new AgentProtocolError({
            reason: "oversize",
            message: `event of ${bytes} bytes exceeds the gRPC message limit of ${this.maxMessageBytes}`,
            agent: this.id
          })
        )
      )
      return noop
    }
    const s = picked
    const cancel = trackCall(this.id, s, correlationId, timeoutMs, done, (reason) => this.sendCancel(s, correlationId, reason))
    s.send(frame)
    return cancel
  }

  readonly call = callOf(this.start)

  readonly status = (): AgentClientStatus => {
    let ready = 0
    let connecting = 0
    let pending = 0
    let sockets = 0
    let timers = 0
    for (const slot of this.slots) {
      if (slot.retryTimer) timers++
      const s = slot.stream
      if (s === undefined) continue
      if (s.state !== "closed") sockets++
      if (s.state === "ready") ready++
      else if (s.state === "connecting") connecting++
      if (s.handshakeTimer) timers++
      pending += s.pending.size
      for (const call of s.pending.values()) if (call.timer) timers++
    }
    return { ready, connecting, pending, sockets, timers, lastError: this.lastError }
  }

  readonly capabilities = (): AgentCapabilities | null => this.caps

  /** The package the agent answered under (or the one tried next). */
  readonly servedPackage = (): GrpcPackage => this.pkg

  readonly close = (): void => {
    if (this.closed) return
    this.closed = true
    for (const slot of this.slots) {
      if (slot.retryTimer) clearTimeout(slot.retryTimer)
      slot.retryTimer = undefined
      if (slot.stream) this.drop(slot, slot.stream, "agent pool closed", undefined)
      slot.stream = undefined
    }
    this.channel?.close()
  }
}

const noop: CancelCall = () => {}

export type GrpcAgentClient = AgentClient & {
  readonly close: () => void
  readonly servedPackage: () => GrpcPackage
}

/** Opens the channel and its streams; closing the scope fails pending calls and closes the channel. */
export const make = (config: GrpcClientConfig): Effect.Effect<GrpcAgentClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => new GrpcPool(config).open()),
    (pool) => Effect.sync(() => pool.close())
  )

/** Unscoped variant (`close` must be called). */
export const unsafeMake = (config: GrpcClientConfig): GrpcAgentClient => new GrpcPool(config).open()
