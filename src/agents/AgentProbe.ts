/**
 * One real handshake with an agent, over its own transport (Unix socket or
 * gRPC), for `sentinel validate`: a socket that accepts connections but
 * speaks another protocol, or an agent that refuses the handshake, fails here
 * rather than on every request.
 */
import { agentEndpoint, type AgentConfig } from "./AgentConfig.js"
import { type AgentCapabilities } from "./Protocol.js"
import type { ClientEvent } from "./Channels.js"
import { unsafeMake as makeUds } from "./Client.js"
import { unsafeMake as makeGrpc } from "./GrpcTransport.js"

export type ProbeResult =
  | { readonly ok: true; readonly capabilities: AgentCapabilities | null }
  | { readonly ok: false; readonly message: string }

export interface ProbeOptions {
  readonly timeoutMs?: number
  readonly proxyId?: string
  readonly proxyVersion?: string
}

/** Connects once, handshakes (with the agent's `config`), closes. Never rejects. */
export const probeAgent = (a: AgentConfig, options: ProbeOptions = {}): Promise<ProbeResult> =>
  new Promise((resolve) => {
    const timeoutMs = options.timeoutMs ?? 3000
    let settled = false
    let client: { readonly close: () => void } | undefined
    const finish = (r: ProbeResult) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      // after this tick: the client is assigned even when the event came from its constructor
      queueMicrotask(() => client?.close())
      resolve(r)
    }
    const timer = setTimeout(
      () => finish({ ok: false, message: `no handshake from ${agentEndpoint(a)} within ${timeoutMs} ms` }),
      timeoutMs
    )
    const onEvent = (e: ClientEvent) => {
      if (e._tag === "Connected") finish({ ok: true, capabilities: e.capabilities })
      else if (e._tag === "ConnectFailed") finish({ ok: false, message: e.reason })
      else if (e._tag === "ProtocolError") finish({ ok: false, message: e.error.message })
    }
    const common = {
      id: a.id,
      connectTimeoutMs: timeoutMs,
      reconnectBaseMs: 60_000,
      reconnectMaxMs: 60_000,
      handshakeConfig: a.config,
      ...(options.proxyId ? { proxyId: options.proxyId } : {}),
      ...(options.proxyVersion ? { proxyVersion: options.proxyVersion } : {}),
      onEvent
    }
    client =
      a.grpc !== undefined
        ? makeGrpc({ ...common, address: a.grpc.address, ...(a.grpc.tls ? { tls: a.grpc.tls } : {}), streams: 1, keepaliveMs: 0 })
        : makeUds({ ...common, socketPath: a.socketPath ?? "", poolSize: 1, pingIntervalMs: 0 })
    if (settled) client.close()
  })
