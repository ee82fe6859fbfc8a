/**
 * Builders of the events the proxy sends, from what the pipeline has at hand
 * (flat header lists, the trace id). Plain functions (hot path).
 */
import { headerMapOf } from "./AgentHeaders.js"
import type { RequestCompleteEvent, RequestHeadersEvent, ResponseHeadersEvent } from "./Protocol.js"

export interface RequestFacts {
  /** The trace id: correlation id and request id of the event. */
  readonly traceId: string
  readonly method: string
  /** Path + query, as received. */
  readonly uri: string
  /** Flat `[name, value, ...]` list (node's `rawHeaders`). */
  readonly rawHeaders: ReadonlyArray<string>
  readonly clientIp: string
  readonly clientPort: number
  /** SNI or Host. */
  readonly serverName?: string | null
  /** "HTTP/1.1", "HTTP/2" */
  readonly protocol: string
  readonly tlsVersion?: string | null
  readonly tlsCipher?: string | null
  readonly routeId?: string | null
  readonly upstreamId?: string | null
  readonly traceparent?: string | null
  /** Epoch ms of the request start; default now. */
  readonly startedAt?: number
}

let lastMs = NaN
let lastIso = ""
/** RFC 3339 text of an epoch ms; the requests of one millisecond share it (formatting is ~0.5 µs). */
export const isoTimestamp = (ms: number): string => {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString()
    lastMs = ms
  }
  return lastIso
}

export const requestHeadersEvent = (r: RequestFacts): RequestHeadersEvent => {
  const metadata: { -readonly [K in keyof RequestHeadersEvent["metadata"]]: RequestHeadersEvent["metadata"][K] } = {
    correlation_id: r.traceId,
    request_id: r.traceId,
    client_ip: r.clientIp,
    client_port: r.clientPort,
    server_name: r.serverName ?? null,
    protocol: r.protocol,
    tls_version: r.tlsVersion ?? null,
    tls_cipher: r.tlsCipher ?? null,
    route_id: r.routeId ?? null,
    upstream_id: r.upstreamId ?? null,
    timestamp: isoTimestamp(r.startedAt ?? Date.now())
  }
  if (r.traceparent) metadata.traceparent = r.traceparent
  return { correlation_id: r.traceId, metadata, method: r.method, uri: r.uri, headers: headerMapOf(r.rawHeaders) }
}

export const responseHeadersEvent = (
  traceId: string,
  status: number,
  rawHeaders: ReadonlyArray<string>
): ResponseHeadersEvent => ({ correlation_id: traceId, status, headers: headerMapOf(rawHeaders) })

export const requestCompleteEvent = (r: {
  readonly traceId: string
  readonly status: number
  readonly durationMs: number
  readonly requestBodySize: number
  readonly responseBodySize: number
  readonly upstreamAttempts: number
  readonly error?: string
}): RequestCompleteEvent => ({
  correlation_id: r.traceId,
  status: r.status,
  duration_ms: r.durationMs,
  request_body_size: r.requestBodySize,
  response_body_size: r.responseBodySize,
  upstream_attempts: r.upstreamAttempts,
  ...(r.error !== undefined ? { error: r.error } : {})
})
