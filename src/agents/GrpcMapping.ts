/**
 * Between the two forms of agent protocol v2: the JSON shapes of the Unix
 * socket protocol (Protocol.ts, what the Manager and the SDK's handlers work
 * with) and the protobuf messages of the gRPC one (GrpcProto.ts). Pure
 * functions, used by the proxy's gRPC transport (events out, answers in) and
 * by the SDK's gRPC server (events in, answers out).
 *
 * What the gRPC messages cannot carry (README "Agents over gRPC"):
 * body mutations, routing metadata, WebSocket decisions, non-string
 * `audit.custom` values (stringified as JSON), `tls_cipher`, the guardrail
 * event's JSON form. An answer's such parts are dropped on the way out by the
 * SDK; the proxy refuses configurations that depend on them.
 */
import * as Either from "effect/Either"
import { isoTimestamp } from "./AgentEvents.js"
import { timestampMs } from "./GrpcWire.js"
import {
  type AgentCapabilities,
  type AgentResponse,
  AgentProtocolError,
  type AgentResponseWire,
  type HeaderMap,
  type HeaderOp,
  MessageType,
  PROTOCOL_VERSION,
  type ProxyEvent,
  type RequestHeadersEvent
} from "./Protocol.js"
import { decodeAgentResponse } from "./ProtocolDecoders.js"
import type {
  PbAgentCapabilities,
  PbAgentResponse,
  PbBodyChunkEvent,
  PbHeader,
  PbHeaderOp,
  PbRequestHeadersEvent,
  PbRequestMetadata,
  ProxyToAgent
} from "./GrpcProto.js"

// ---------------------------------------------------------------------------
// Proxy side: events out

const headersOf = (map: HeaderMap): Array<PbHeader> => {
  const out: Array<PbHeader> = []
  for (const name in map) {
    const values = map[name]
    for (let i = 0; i < values.length; i++) out.push({ name, value: values[i] })
  }
  return out
}

const present = <K extends string>(key: K, v: string | null | undefined): { [P in K]?: string } =>
  (v === null || v === undefined ? {} : { [key]: v }) as { [P in K]?: string }

const requestHeaders = (e: RequestHeadersEvent): PbRequestHeadersEvent => {
  const m = e.metadata
  // optional fields assigned when present (no spread of a computed-key object per field: hot path)
  const metadata: { -readonly [K in keyof PbRequestMetadata]: PbRequestMetadata[K] } = {
    correlation_id: m.correlation_id,
    request_id: m.request_id,
    client_ip: m.client_ip,
    client_port: m.client_port,
    protocol: m.protocol,
    timestamp_ms: timestampMs(m.timestamp)
  }
  if (m.server_name != null) metadata.server_name = m.server_name
  if (m.tls_version != null) metadata.tls_version = m.tls_version
  if (m.route_id != null) metadata.route_id = m.route_id
  if (m.upstream_id != null) metadata.upstream_id = m.upstream_id
  if (m.traceparent != null) metadata.traceparent = m.traceparent
  return { metadata, method: e.method, uri: e.uri, http_version: m.protocol, headers: headersOf(e.headers) }
}

/** An event as the proxy builds it (UDS JSON) -> a ProxyToAgent; an error for what gRPC cannot carry. */
export const proxyToAgentOf = (type: MessageType, event: any): ProxyToAgent | AgentProtocolError => {
  switch (type) {
    case MessageType.RequestHeaders:
      return { request_headers: requestHeaders(event as RequestHeadersEvent) }
    case MessageType.RequestBodyChunk:
    case MessageType.ResponseBodyChunk: {
      const data: Buffer = event.raw instanceof Uint8Array ? event.raw : Buffer.from(event.data ?? "", "base64")
      const chunk = {
        correlation_id: event.correlation_id,
        chunk_index: event.chunk_index ?? 0,
        data,
        is_last: event.is_last === true,
        ...(typeof event.total_size === "number" ? { total_size: event.total_size } : {}),
        bytes_transferred: (type === MessageType.RequestBodyChunk ? event.bytes_received : event.bytes_sent) ?? data.length,
        proxy_buffer_available: 0,
        timestamp_ms: Date.now()
      }
      return type === MessageType.RequestBodyChunk ? { request_body_chunk: chunk } : { response_body_chunk: chunk }
    }
    case MessageType.ResponseHeaders:
      return {
        response_headers: { correlation_id: event.correlation_id, status_code: event.status, headers: headersOf(event.headers) }
      }
    case MessageType.RequestComplete:
      return {
        request_complete: {
          correlation_id: event.correlation_id,
          status_code: event.status,
          duration_ms: Math.max(0, Math.round(event.duration_ms ?? 0)),
          bytes_received: event.request_body_size ?? 0,
          bytes_sent: event.response_body_size ?? 0,
          from_cache: false,
          ...present("error", event.error)
        }
      }
    case MessageType.Configure:
      return {
        configure: {
          config_json: JSON.stringify(event.config ?? {}),
          ...present("config_version", event.config_version),
          is_initial: event.is_initial === true,
          timestamp_ms: Date.now()
        }
      }
    case MessageType.WebSocketFrame:
    case MessageType.GuardrailInspect:
    default:
      return new AgentProtocolError({
        reason: "unexpected",
        message: `${type === MessageType.WebSocketFrame ? "WebSocket frames" : type === MessageType.GuardrailInspect ? "guardrail inspection" : `message type ${type}`} cannot be sent to a gRPC agent (its answer has no place in the gRPC messages)`
      })
  }
}

// ---------------------------------------------------------------------------
// Proxy side: answers in

const opsOf = (ops: ReadonlyArray<PbHeaderOp> | undefined): Array<unknown> => {
  const out: Array<unknown> = []
  if (ops === undefined) return out
  for (const op of ops) {
    if (op.set !== undefined && op.set !== null) out.push({ set: { name: op.set.name ?? "", value: op.set.value ?? "" } })
    else if (op.add !== undefined && op.add !== null) out.push({ add: { name: op.add.name ?? "", value: op.add.value ?? "" } })
    else if (typeof op.remove === "string") out.push({ remove: { name: op.remove } })
    // an empty op is skipped (as Sentinel)
  }
  return out
}

/**
 * The UDS wire form of a gRPC answer, validated by the same decoder as a Unix-socket answer
 * (a bad header name or status is a failure, never an allow). Absent decision = allow;
 * block status 0 (unset) = 403, redirect status 0 = 302.
 */
export const agentResponseOf = (pb: PbAgentResponse): Either.Either<AgentResponse, AgentProtocolError> => {
  let decision: unknown = "allow"
  if (pb.block !== undefined && pb.block !== null) {
    const b = pb.block
    let headers: Record<string, string> | null = null
    if (b.headers !== undefined && b.headers.length > 0) {
      headers = Object.create(null) as Record<string, string>
      for (const h of b.headers) headers[h.name ?? ""] = h.value ?? ""
      headers = { ...headers }
    }
    decision = { block: { status: b.status || 403, body: b.body ?? null, headers } }
  } else if (pb.redirect !== undefined && pb.redirect !== null) {
    decision = { redirect: { url: pb.redirect.url ?? "", status: pb.redirect.status || 302 } }
  } else if (pb.challenge !== undefined && pb.challenge !== null) {
    decision = { challenge: { challenge_type: pb.challenge.challenge_type ?? "", params: { ...pb.challenge.params } } }
  }
  const a = pb.audit
  const wire: Record<string, unknown> = {
    version: PROTOCOL_VERSION,
    decision,
    request_headers: opsOf(pb.request_headers),
    response_headers: opsOf(pb.response_headers),
    needs_more: pb.needs_more === true
  }
  if (a !== undefined && a !== null) {
    wire.audit = {
      tags: a.tags ?? [],
      rule_ids: a.rule_ids ?? [],
      reason_codes: a.reason_codes ?? [],
      ...(typeof a.confidence === "number" ? { confidence: a.confidence } : {}),
      custom: { ...a.custom }
    }
  }
  return decodeAgentResponse(wire)
}

// ---------------------------------------------------------------------------
// Agent side (SDK): events in

/**
 * `{ lower-case name: [values] }` as JSON.parse makes it from a Unix-socket event: own
 * properties only, so a header named `constructor` or `__proto__` (any client can send one) is
 * a header like another, never a lookup into Object.prototype (which threw, and the agent
 * with it).
 */
const headerMapOf = (headers: ReadonlyArray<PbHeader> | undefined): HeaderMap => {
  const out: Record<string, Array<string>> = {}
  if (headers === undefined) return out
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]
    const name = (h.name ?? "").toLowerCase()
    const value = h.value ?? ""
    if (Object.hasOwn(out, name)) out[name].push(value)
    else if (name === "__proto__") Object.defineProperty(out, name, { value: [value], enumerable: true, writable: true, configurable: true })
    else out[name] = [value]
  }
  return out
}

const b64 = (d: Uint8Array | undefined): string =>
  d === undefined ? "" : Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString("base64")

/** A BodyChunkEvent of either body -> its UDS shape (`bytes_transferred` is `bytes_received` or `bytes_sent`). */
const bodyChunkOf = <K extends "bytes_received" | "bytes_sent">(c: PbBodyChunkEvent, bytes: K) =>
  ({
    correlation_id: c.correlation_id ?? "",
    data: b64(c.data),
    is_last: c.is_last === true,
    total_size: c.total_size ?? null,
    chunk_index: c.chunk_index ?? 0,
    [bytes]: c.bytes_transferred ?? 0
  }) as { correlation_id: string; data: string; is_last: boolean; total_size: number | null; chunk_index: number } & Record<K, number>

/** A ProxyToAgent event -> the UDS-shaped event the SDK's handlers take; undefined for control messages. */
export const proxyEventOf = (m: ProxyToAgent): ProxyEvent | undefined => {
  if (m.request_headers) {
    const e = m.request_headers
    const md = e.metadata ?? {}
    const cid = md.correlation_id ?? ""
    return {
      type: MessageType.RequestHeaders,
      event: {
        correlation_id: cid,
        metadata: {
          correlation_id: cid,
          request_id: md.request_id ?? "",
          client_ip: md.client_ip ?? "",
          client_port: md.client_port ?? 0,
          server_name: md.server_name ?? null,
          protocol: md.protocol ?? e.http_version ?? "HTTP/1.1",
          tls_version: md.tls_version ?? null,
          tls_cipher: null,
          route_id: md.route_id ?? null,
          upstream_id: md.upstream_id ?? null,
          timestamp: isoTimestamp(md.timestamp_ms ?? Date.now()),
          traceparent: md.traceparent ?? null
        },
        method: e.method ?? "",
        uri: e.uri ?? "",
        headers: headerMapOf(e.headers)
      }
    }
  }
  if (m.request_body_chunk) return { type: MessageType.RequestBodyChunk, event: bodyChunkOf(m.request_body_chunk, "bytes_received") }
  if (m.response_body_chunk) return { type: MessageType.ResponseBodyChunk, event: bodyChunkOf(m.response_body_chunk, "bytes_sent") }
  if (m.response_headers) {
    const r = m.response_headers
    return {
      type: MessageType.ResponseHeaders,
      event: { correlation_id: r.correlation_id ?? "", status: r.status_code ?? 0, headers: headerMapOf(r.headers) }
    }
  }
  if (m.request_complete) {
    const r = m.request_complete
    return {
      type: MessageType.RequestComplete,
      event: {
        correlation_id: r.correlation_id ?? "",
        status: r.status_code ?? 0,
        duration_ms: r.duration_ms ?? 0,
        request_body_size: r.bytes_received ?? 0,
        response_body_size: r.bytes_sent ?? 0,
        upstream_attempts: 0,
        error: r.error ?? null
      }
    }
  }
  if (m.websocket_frame) {
    const w = m.websocket_frame
    return {
      type: MessageType.WebSocketFrame,
      event: {
        correlation_id: w.correlation_id ?? "",
        opcode: w.frame_type ?? 0,
        data: b64(w.payload),
        client_to_server: w.client_to_server === true,
        frame_index: 0,
        fin: true,
        route_id: null,
        client_ip: ""
      }
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------
// Agent side (SDK): answers out

const pbOps = (ops: ReadonlyArray<HeaderOp> | null | undefined): Array<PbHeaderOp> =>
  (ops ?? []).map((op) =>
    "set" in op ? { set: { name: op.set.name, value: op.set.value } } : "add" in op ? { add: { name: op.add.name, value: op.add.value } } : { remove: op.remove.name }
  )

/** A decision's UDS wire form -> the gRPC AgentResponse for `correlationId` (drops what gRPC cannot carry). */
export const pbAgentResponseOf = (wire: AgentResponseWire, correlationId: string): PbAgentResponse => {
  const d = wire.decision
  const decision: Partial<PbAgentResponse> =
    d === "allow"
      ? { allow: {} }
      : "block" in d
        ? {
            block: {
              status: d.block.status ?? 403,
              ...(d.block.body !== null && d.block.body !== undefined ? { body: d.block.body } : {}),
              headers: Object.entries(d.block.headers ?? {}).map(([name, value]) => ({ name, value }))
            }
          }
        : "redirect" in d
          ? { redirect: { url: d.redirect.url, status: d.redirect.status ?? 302 } }
          : {
              challenge: {
                challenge_type: d.challenge.challenge_type,
                params: Object.fromEntries(
                  Object.entries(d.challenge.params ?? {}).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])
                )
              }
            }
  const a = wire.audit
  const custom: Record<string, string> = {}
  for (const [k, v] of Object.entries(a?.custom ?? {})) {
    if (k === "correlation_id") continue // carried by AgentResponse.correlation_id
    custom[k] = typeof v === "string" ? v : JSON.stringify(v)
  }
  return {
    correlation_id: correlationId,
    ...decision,
    request_headers: pbOps(wire.request_headers),
    response_headers: pbOps(wire.response_headers),
    audit: {
      tags: [...(a?.tags ?? [])],
      rule_ids: [...(a?.rule_ids ?? [])],
      reason_codes: [...(a?.reason_codes ?? [])],
      ...(typeof a?.confidence === "number" ? { confidence: a.confidence } : {}),
      custom
    },
    needs_more: wire.needs_more === true
  }
}

/** The capabilities of a gRPC handshake in the UDS shape the rest of the proxy reads. */
export const capabilitiesOf = (c: PbAgentCapabilities | undefined): AgentCapabilities | null => {
  if (c === undefined || c === null) return null
  const f = c.features ?? {}
  const l = c.limits ?? {}
  return {
    agent_id: c.agent_id ?? "",
    name: c.name ?? "",
    version: c.version ?? "",
    supported_events: [...(c.supported_events ?? [])],
    features: {
      streaming_body: f.streaming_body === true,
      websocket: f.websocket === true,
      guardrails: f.guardrails === true,
      config_push: f.config_push === true,
      metrics_export: f.metrics_export === true,
      concurrent_requests: f.concurrent_requests ?? 0,
      cancellation: f.cancellation === true,
      flow_control: f.flow_control === true,
      health_reporting: f.health_reporting === true
    },
    limits: {
      max_body_size: l.max_body_size ?? 0,
      max_concurrency: l.max_concurrency ?? 0,
      preferred_chunk_size: l.preferred_chunk_size ?? 0
    }
  }
}
