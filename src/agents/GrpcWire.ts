/**
 * The messages of every request over gRPC encoded by hand (the SDK's allow answer is at the
 * end). The one message the proxy sends per request, a ProxyToAgent carrying a
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
import type { PbAgentResponse, PbHeader, PbHeaderOp } from "./GrpcProto.js"
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
export const encodeRequestHeadersMessage = (e: RequestHeadersEvent): Buffer | undefined => encodeRequestHeaders(e, 0)

/** The same message framed for gRPC (`[0][length u32 BE][message]`), encoded in place: no copy. */
export const encodeRequestHeadersFrame = (e: RequestHeadersEvent): Buffer | undefined => encodeRequestHeaders(e, 5)

const encodeRequestHeaders = (e: RequestHeadersEvent, prefix: 0 | 5): Buffer | undefined => {
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

  // headers: the sizes of each Header message, kept for the write pass; the names listed once (the
  // map has a null prototype, so V8 keeps it as a dictionary: each for-in over it collects its keys anew)
  const names = Object.keys(headers)
  const lists: Array<ReadonlyArray<string>> = []
  const sizes: Array<number> = []
  let headersSize = 0
  for (let n = 0; n < names.length; n++) {
    const name = names[n]
    const values = headers[name]
    if (!Array.isArray(values)) return undefined
    lists.push(values)
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

  const size = fieldSize(eventSize)
  const o = new Out(Buffer.allocUnsafe(prefix + size))
  if (prefix === 5) {
    o.byte(0) // not compressed
    o.buf.writeUInt32BE(size, 1)
    o.pos = 5
  }
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
  for (let n = 0; n < names.length; n++) {
    const name = names[n]
    const values = lists[n]
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

// ---------------------------------------------------------------------------
// Agent side (SDK): the answer

const opSize = (op: PbHeaderOp): number => {
  if (op.set != null) return fieldSize(headerSize(op.set))
  if (op.add != null) return fieldSize(headerSize(op.add))
  return fieldSize(utf8Length(op.remove as string))
}
const headerSize = (h: PbHeader): number => fieldSize(utf8Length(h.name as string)) + fieldSize(utf8Length(h.value as string))
const plainOps = (ops: ReadonlyArray<PbHeaderOp> | undefined): boolean => {
  if (ops === undefined) return true
  for (const op of ops) {
    // exactly one member of the oneof, of the types pbOps makes
    if ((op.set != null ? 1 : 0) + (op.add != null ? 1 : 0) + (op.remove != null ? 1 : 0) !== 1) return false
    const h = op.set ?? op.add
    if (h != null ? !isStr(h.name) || !isStr(h.value) : !isStr(op.remove)) return false
  }
  return true
}
const strings = (xs: ReadonlyArray<string> | undefined): boolean => xs === undefined || xs.every(isStr)

/**
 * The AgentToProxy bytes of an allow answer as `pbAgentResponseOf` makes it (header ops, audit
 * tags, ids, reason codes and custom strings), the bytes protobufjs writes for it (property
 * test); undefined for anything else (a block, a redirect, a challenge, a confidence), which
 * protobufjs encodes.
 */
export const encodeAllowAnswer = (r: PbAgentResponse): Buffer | undefined => {
  if (r.allow == null || r.block != null || r.redirect != null || r.challenge != null || r.processing_time_ms != null) return undefined
  if (!isStr(r.correlation_id) || !plainOps(r.request_headers) || !plainOps(r.response_headers)) return undefined
  const a = r.audit
  if (a != null && (a.confidence != null || !strings(a.tags) || !strings(a.rule_ids) || !strings(a.reason_codes))) return undefined
  const custom = a?.custom
  if (custom != null) for (const k in custom) if (!isStr(custom[k])) return undefined
  const list = (xs: ReadonlyArray<string> | undefined) => {
    let n = 0
    for (const x of xs ?? []) n += fieldSize(utf8Length(x))
    return n
  }
  let opsSize = 0
  for (const op of r.request_headers ?? []) opsSize += fieldSize(opSize(op))
  for (const op of r.response_headers ?? []) opsSize += fieldSize(opSize(op))
  let auditSize = 0
  if (a != null) {
    auditSize = list(a.tags) + list(a.rule_ids) + list(a.reason_codes)
    for (const k in custom) auditSize += fieldSize(fieldSize(utf8Length(k)) + fieldSize(utf8Length(custom[k])))
  }
  const bCid = utf8Length(r.correlation_id)
  const size = fieldSize(bCid) + 2 + opsSize + (a != null ? fieldSize(auditSize) : 0) + (r.needs_more != null ? 2 : 0)
  const o = new Out(Buffer.allocUnsafe(fieldSize(size)))
  o.byte(0x12) // AgentToProxy.response
  o.varint(size)
  o.str(0x0a, r.correlation_id, bCid)
  o.byte(0x12) // allow {}
  o.byte(0)
  const ops = (tag: number, xs: ReadonlyArray<PbHeaderOp> | undefined) => {
    for (const op of xs ?? []) {
      o.byte(tag)
      o.varint(opSize(op))
      const h = op.set ?? op.add
      if (h == null) {
        o.str(0x1a, op.remove as string, utf8Length(op.remove as string))
        continue
      }
      o.byte(op.set != null ? 0x0a : 0x12)
      o.varint(headerSize(h))
      o.str(0x0a, h.name as string, utf8Length(h.name as string))
      o.str(0x12, h.value as string, utf8Length(h.value as string))
    }
  }
  ops(0x52, r.request_headers) // 10
  ops(0x5a, r.response_headers) // 11
  if (a != null) {
    o.byte(0x62) // 12 audit
    o.varint(auditSize)
    for (const x of a.tags ?? []) o.str(0x0a, x, utf8Length(x))
    for (const x of a.rule_ids ?? []) o.str(0x12, x, utf8Length(x))
    for (const x of a.reason_codes ?? []) o.str(0x22, x, utf8Length(x))
    for (const k in custom) {
      const v = custom[k]
      o.byte(0x2a)
      o.varint(fieldSize(utf8Length(k)) + fieldSize(utf8Length(v)))
      o.str(0x0a, k, utf8Length(k))
      o.str(0x12, v, utf8Length(v))
    }
  }
  if (r.needs_more != null) {
    o.byte(0x70) // 14
    o.byte(r.needs_more ? 1 : 0)
  }
  return o.pos === o.buf.length ? o.buf : undefined
}
