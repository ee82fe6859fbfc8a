/**
 * The per-request state every stage reads and writes. Plain mutable data:
 * one object per request, no Effect machinery, cheap to build.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Readable } from "node:stream"
import type { RequestTrace } from "../observability/RequestTrace.js"
import type { ForwardedInfo } from "../http/Forwarded.js"
import type { ValidationResult } from "./validate/RequestHead.js"

/**
 * The request head as the edge validated it: routing, logs and the upstream all use the
 * validated, normalised host and path; `forwarded` (X-Forwarded-* believed only from the
 * listener's `trusted-proxies`) is set for a valid head. A rejected head keeps the raw values
 * in the context for the log.
 */
export interface EdgeHead {
  readonly result: ValidationResult
  readonly forwarded: ForwardedInfo | undefined
}
import type { WebSocketSession } from "../websocket/Session.js"
import type { ResponseSink } from "../upstream/Forward.js"
import type { ServedSink } from "./Stage.js"

/**
 * A feature that sees the upstream's response on its way to the client (the response cache,
 * src/cache/), set by one of the route's request stages.
 */
export interface ResponseTap {
  /** Wraps the sink of each upstream attempt's response (innermost: what the client gets). */
  readonly wrap: (sink: ResponseSink) => ResponseSink
  /**
   * The upstream failed (`error`: the typed error's tag) before any of a response went out:
   * write a replacement into `sink` (a stale entry) and return true, or return false.
   */
  readonly rescue: (error: string, sink: ServedSink) => boolean
  /** The access log's `cache` field: "hit", "miss", "stale", "bypass", ... */
  readonly result: string | undefined
}

export interface RequestContext {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  /** `performance.now()` at arrival. */
  readonly start: number
  readonly traceId: string
  readonly clientIp: string
  readonly method: string
  /** Lower-case host without port, from absolute-form authority or `Host`. */
  readonly host: string
  /** Path without query. */
  readonly path: string
  /** Query without `?`. */
  readonly query: string
  readonly listenerId: string
  readonly scheme: "http" | "https"
  /**
   * The request came over HTTP/2 (node's compat API): no connection-specific headers may be
   * sent (`Connection: close` is a GOAWAY there), and a body may come without a Content-Length.
   */
  readonly http2: boolean
  /**
   * An HTTP/2 WebSocket handshake (RFC 8441 extended CONNECT, `:protocol websocket`): routed,
   * filtered, shown to agents and forwarded as the GET upgrade it stands for (`method` is
   * "GET"); src/websocket/ answers it and tunnels over the stream.
   */
  readonly webSocketOverH2: boolean
  /** The connection's TLS facts (`connectionTls`) on an https listener; undefined over cleartext. */
  readonly tls: ConnectionTls | undefined
  routeId: string
  upstreamId: string
  upstreamAddr: string
  attempts: number
  status: number
  bytesSent: number
  /** Why the proxy answered itself or failed (access log `error`). */
  error: string | undefined
  /** Set when the request body went over `limits { max-body-size }` while streaming. */
  bodyTooLarge: boolean
  /**
   * The client left before its answer was complete (logged as 499). Not set when the listener
   * cut the connection at a deadline: that request is logged with the listener's reason.
   */
  clientGone: boolean
  /**
   * Request headers for the upstream (flat list), built before the request
   * stages run so that they can edit it (header filters, agent mutations).
   */
  upstreamHeaders: Array<string>
  /** Origin-form target sent upstream (url-rewrite may change it). */
  upstreamPath: string
  /** Replaces the streamed client body (e.g. a body buffered for inspection). */
  upstreamBody: Readable | Buffer | null | undefined
  /**
   * The head as the edge validated it; a plain field rather than a WeakMap entry, which the
   * young-generation GC could only drop much later.
   */
  readonly edge: EdgeHead
  /** Extra response headers decided during the request phase (rate-limit, CORS), flat list. */
  responseHeaders: Array<string> | undefined
  /** A WebSocket handshake its route accepted (src/websocket/), and then its tunnel. */
  websocket?: WebSocketSession | undefined
  /** The response's re-encoding (the `compress` filter) when it has one: the access log's `compression`. */
  compression?: { readonly encoding: string; bytesIn: number; bytesOut: number } | undefined
  /** The request's spans; set only when tracing is configured and this request is sampled. */
  trace?: RequestTrace | undefined
  /** The route's response cache for this request (src/cache/), when the route caches. */
  tap?: ResponseTap | undefined
  header(lowerName: string): string | undefined
}

/** Split `url` (origin-form or absolute-form) into authority, path and query. */
export const splitTarget = (url: string): { authority: string | undefined; path: string; query: string } => {
  let authority: string | undefined
  let rest = url
  if (url.charCodeAt(0) !== 47 /* / */) {
    const scheme = url.indexOf("://")
    if (scheme !== -1) {
      const slash = url.indexOf("/", scheme + 3)
      const end = slash === -1 ? url.length : slash
      const q = url.indexOf("?", scheme + 3)
      const stop = q !== -1 && q < end ? q : end
      authority = url.slice(scheme + 3, stop)
      const at = authority.lastIndexOf("@")
      if (at !== -1) authority = authority.slice(at + 1)
      rest = url.slice(stop) || "/"
      if (rest.charCodeAt(0) === 63 /* ? */) rest = "/" + rest
    }
  }
  const q = rest.indexOf("?")
  return q === -1
    ? { authority, path: rest, query: "" }
    : { authority, path: rest.slice(0, q), query: rest.slice(q + 1) }
}

/** The verified client certificate of an mTLS connection. */
export interface ClientCertificate {
  readonly subject: string
  readonly issuer: string
  readonly serial: string
  /** SHA-256 fingerprint, colon-separated hex (as node prints it). */
  readonly fingerprint256: string
}

/** What a TLS connection tells about itself (agents' request metadata, the access log, mTLS headers). */
export interface ConnectionTls {
  /** SNI server name the client asked for, or null. */
  readonly servername: string | null
  /** "TLSv1.3", ... */
  readonly version: string | null
  /** IANA name of the cipher suite. */
  readonly cipher: string | null
  /** Only when the client presented a certificate that verified against the listener's `ca-file`. */
  readonly clientCert: ClientCertificate | undefined
}

interface TlsSocketView {
  readonly encrypted?: boolean
  readonly servername?: string | false | null
  readonly authorized?: boolean
  getProtocol?(): string | null
  getCipher?(): { readonly standardName?: string; readonly name?: string } | undefined
  getPeerCertificate?(): { subject?: Record<string, string | string[]>; issuer?: Record<string, string | string[]>; serialNumber?: string; fingerprint256?: string } | null
}

const kTls = Symbol("sentinel.connectionTls")

/** An X.509 name as one line, `CN=a,O=b` (the order node gives). */
const nameLine = (n: Record<string, string | string[]> | undefined): string =>
  n === undefined ? "" : Object.entries(n).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`).join(",")

/**
 * The TLS facts of the connection `req` came on, read once per connection (kept on the socket);
 * undefined over cleartext. Works for HTTP/1.1 (the TLS socket) and HTTP/2 (node's socket proxy).
 */
export const connectionTls = (req: IncomingMessage): ConnectionTls | undefined => {
  const socket = req.socket as unknown as (TlsSocketView & { [kTls]?: ConnectionTls }) | null
  if (socket === null || socket === undefined || socket.encrypted !== true) return undefined
  const cached = socket[kTls]
  if (cached !== undefined) return cached
  let clientCert: ClientCertificate | undefined
  if (socket.authorized === true) {
    const peer = socket.getPeerCertificate?.()
    if (peer !== null && peer !== undefined && peer.fingerprint256 !== undefined) {
      clientCert = { subject: nameLine(peer.subject), issuer: nameLine(peer.issuer), serial: peer.serialNumber ?? "", fingerprint256: peer.fingerprint256 }
    }
  }
  const cipher = socket.getCipher?.()
  const facts: ConnectionTls = {
    servername: typeof socket.servername === "string" ? socket.servername : null,
    version: socket.getProtocol?.() ?? null,
    cipher: cipher?.standardName ?? cipher?.name ?? null,
    clientCert
  }
  socket[kTls] = facts
  return facts
}
