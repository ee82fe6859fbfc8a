/**
 * The one message the proxy sends per request over gRPC, a ProxyToAgent carrying a
 * RequestHeadersEvent, encoded by hand from the Unix-socket event: the same bytes as
 * `encodeProxyToAgent(proxyToAgentOf(RequestHeaders, event))` (protobufjs; a property test
 * holds them equal), without building the intermediate message objects, protobufjs's
 * `fromObject` copies and its writer's operation list (profile.mjs --agent grpc: ~7 µs per
 * request in the proxy). As protobufjs does, every field present is written, empty strings
 * and zeros included, in field-number order.
 *
 * Field numbers: proto/zentinel_agent_v2.proto (ProxyToAgent.request_headers = 2;
 * RequestHeadersEvent metadata 1, method 2, uri 3, http_version 4, headers 5; RequestMetadata
 * 1-11; Header name 1, value 2). An event this does not encode plainly (a field of another
 * type than the proxy builds, a timestamp that does not parse or is negative) is left to
 * protobufjs: `undefined`.
 */
import type { HeaderMap, RequestHeadersEvent } from "./Protocol.js"

const varintSize = (n: number): number => {
  let size = 1
  while (n >= 0x80) {
    n = Math.floor(n / 128)
    size++
  }
  return size
}

/** Bytes of a length-delimited field of `len` bytes with a one-byte tag. */
const fieldSize = (len: number): number => 1 + varintSize(len) + len

class Out {
  pos = 0
  constructor(readonly buf: Buffer) {}
  byte(b: number): void {
    this.buf[this.pos++] = b
  }
  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 128) | 0x80
      n = Math.floor(n / 128)
    }
    this.buf[this.pos++] = n
  }
  /** A string field: tag, byte length, UTF-8 bytes (a short ASCII string copied here: a call into node costs more). */
  str(tag: number, s: string, bytes: number): void {
    const buf = this.buf
    buf[this.pos++] = tag
    this.varint(bytes)
    if (bytes === s.length && bytes <= SHORT) {
      let p = this.pos
      for (let i = 0; i < bytes; i++) buf[p++] = s.charCodeAt(i)
      this.pos = p
    } else this.pos += buf.write(s, this.pos, bytes, "utf8")
  }
}

/** Strings up to this length are measured and copied in JS. */
const SHORT = 64

/** UTF-8 length of `s`: its length when it is short and ASCII, else node's count. */
const utf8Length = (s: string): number => {
  if (s.length > SHORT) return Buffer.byteLength(s)
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s)
  return s.length
}

const isStr = (v: unknown): v is string => typeof v === "string"
const optional = (v: unknown): v is string | null | undefined => v === null || v === undefined || typeof v === "string"

/** RFC 3339 text -> epoch ms, the last one kept (the events of one millisecond share their text). */
let lastText = ""
let lastMs = 0
const msOf = (text: string): number => {
  if (text === lastText) return lastMs
  const t = Date.parse(text)
  if (!Number.isFinite(t)) return NaN
  lastText = text
  lastMs = t
  return t
}

/** The epoch ms gRPC carries for an event's timestamp (now when it does not parse, as protobufjs's path). */
export const timestampMs = (text: string): number => {
  const t = msOf(text)
  return Number.isNaN(t) ? Date.now() : t
}

/** The ProxyToAgent bytes of a RequestHeaders event, or undefined when protobufjs must encode it. */
export const encodeRequestHeadersMessage = (e: RequestHeadersEvent): Buffer | undefined => {
  const m = e.metadata
  if (typeof m !== "object" || m === null) return undefined
  const { correlation_id, request_id, client_ip, client_port, server_name, protocol, tls_version, route_id, upstream_id, traceparent } = m
  if (!isStr(correlation_id) || !isStr(request_id) || !isStr(client_ip) || !isStr(protocol) || !isStr(e.method) || !isStr(e.uri)) return undefined
  if (!optional(server_name) || !optional(tls_version) || !optional(route_id) || !optional(upstream_id) || !optional(traceparent)) return undefined
  if (!Number.isInteger(client_port) || client_port < 0 || client_port > 0xffffffff) return undefined
  const ts = isStr(m.timestamp) ? msOf(m.timestamp) : NaN
  if (!Number.isSafeInteger(ts) || ts < 0) return undefined
  const headers: HeaderMap = e.headers
  if (typeof headers !== "object" || headers === null) return undefined

  const bCid = utf8Length(correlation_id)
  const bRid = request_id === correlation_id ? bCid : utf8Length(request_id)
  const bIp = utf8Length(client_ip)
  const bProto = utf8Length(protocol)
  const bServer = server_name == null ? -1 : utf8Length(server_name)
  const bTls = tls_version == null ? -1 : utf8Length(tls_version)
  const bRoute = route_id == null ? -1 : utf8Length(route_id)
  const bUp = upstream_id == null ? -1 : utf8Length(upstream_id)
  const bTp = traceparent == null ? -1 : utf8Length(traceparent)
  const opt = (b: number) => (b < 0 ? 0 : fieldSize(b))
  const metaSize =
    fieldSize(bCid) + fieldSize(bRid) + fieldSize(bIp) + 1 + varintSize(client_port) + opt(bServer) + fieldSize(bProto) +
    opt(bTls) + opt(bRoute) + opt(bUp) + 1 + varintSize(ts) + opt(bTp)

  // headers: the sizes of each Header message, kept for the write pass
  const sizes: Array<number> = []
  let headersSize = 0
  for (const name in headers) {
    const values = headers[name]
    if (!Array.isArray(values)) return undefined
    const bName = utf8Length(name)
    for (let i = 0; i < values.length; i++) {
      const v = values[i]
      if (!isStr(v)) return undefined
      const bValue = utf8Length(v)
      const size = fieldSize(bName) + fieldSize(bValue)
      sizes.push(bName, bValue, size)
      headersSize += fieldSize(size)
    }
  }
  const bMethod = utf8Length(e.method)
  const bUri = utf8Length(e.uri)
  const eventSize = fieldSize(metaSize) + fieldSize(bMethod) + fieldSize(bUri) + fieldSize(bProto) + headersSize

  const o = new Out(Buffer.allocUnsafe(fieldSize(eventSize)))
  o.byte(0x12) // ProxyToAgent.request_headers
  o.varint(eventSize)
  o.byte(0x0a) // metadata
  o.varint(metaSize)
  o.str(0x0a, correlation_id, bCid)
  o.str(0x12, request_id, bRid)
  o.str(0x1a, client_ip, bIp)
  o.byte(0x20) // client_port
  o.varint(client_port)
  if (bServer >= 0) o.str(0x2a, server_name!, bServer)
  o.str(0x32, protocol, bProto)
  if (bTls >= 0) o.str(0x3a, tls_version!, bTls)
  if (bRoute >= 0) o.str(0x42, route_id!, bRoute)
  if (bUp >= 0) o.str(0x4a, upstream_id!, bUp)
  o.byte(0x50) // timestamp_ms
  o.varint(ts)
  if (bTp >= 0) o.str(0x5a, traceparent!, bTp)
  o.str(0x12, e.method, bMethod)
  o.str(0x1a, e.uri, bUri)
  o.str(0x22, protocol, bProto) // http_version
  let k = 0
  for (const name in headers) {
    const values = headers[name]
    for (let i = 0; i < values.length; i++) {
      o.byte(0x2a) // headers
      o.varint(sizes[k + 2])
      o.str(0x0a, name, sizes[k])
      o.str(0x12, values[i], sizes[k + 1])
      k += 3
    }
  }
  return o.pos === o.buf.length ? o.buf : undefined
}
