/**
 * The answer of every request over gRPC decoded by hand in the proxy: an AgentToProxy carrying
 * an AgentResponse that allows (or names no decision), with header ops, audit and the flags,
 * decoded to the same object as `decodeAgentToProxy` (protobufjs's decode and `toObject` with
 * GrpcProto's loader options: present fields only, `oneofs` naming the member set, proto3
 * `optional` fields with their synthetic oneof; a property test holds them equal). Anything
 * else (another member, a block, redirect or challenge, a field this does not know, a wire type
 * other than the .proto's, a HeaderOp with two members, a truncated or oddly long varint) is left
 * to protobufjs: `undefined`, so unknown fields and malformed bytes end as protobufjs has them.
 *
 * Field numbers: proto/zentinel_agent_v2.proto (AgentToProxy.response = 2; AgentResponse
 * correlation_id 1, allow 2, request_headers 10, response_headers 11, audit 12,
 * processing_time_ms 13, needs_more 14; HeaderOp set 1, add 2, remove 3; Header name 1, value 2;
 * AuditMetadata tags 1, rule_ids 2, confidence 3 (float), reason_codes 4, custom 5 (map)).
 */
import type { AgentToProxy } from "./GrpcProto.js"

class Reader {
  pos: number
  bad = false
  constructor(readonly buf: Buffer, start: number, public end: number) {
    this.pos = start
  }
  /** A one-byte tag (every field here has one); 0 when the message is over or the tag is longer. */
  tag(): number {
    const b = this.buf[this.pos++]
    if (b >= 0x80) this.bad = true
    return b
  }
  /** A varint below 2^49 (exact as a number); longer or cut: bad. */
  varint(): number {
    let value = 0
    let mul = 1
    for (let i = 0; i < 7 && this.pos < this.end; i++) {
      const b = this.buf[this.pos++]
      value += (b & 0x7f) * mul
      if (b < 0x80) return value
      mul *= 128
    }
    this.bad = true
    return 0
  }
  /** The end of a length-delimited field that starts here; bad when it runs past its message. */
  sub(): number {
    const n = this.varint()
    if (n > this.end - this.pos) {
      this.bad = true
      return this.pos
    }
    return this.pos + n
  }
  str(): string {
    const end = this.sub()
    if (this.bad) return ""
    const s = this.buf.toString("utf8", this.pos, end)
    this.pos = end
    return s
  }
  /** protobufjs reads a bool as a uint32 (the low 32 bits) and compares it with 0. */
  bool(): boolean {
    return this.varint() % 4294967296 !== 0
  }
}

type Obj = Record<string, unknown>

const header = (r: Reader): Obj => {
  const end = r.sub()
  const outer = r.end
  r.end = end
  const h: Obj = {}
  while (!r.bad && r.pos < end) {
    const t = r.tag()
    if (t === 0x0a) h.name = r.str()
    else if (t === 0x12) h.value = r.str()
    else r.bad = true
  }
  r.end = outer
  return h
}

const headerOp = (r: Reader): Obj => {
  const end = r.sub()
  const outer = r.end
  r.end = end
  const op: Obj = {}
  let member: string | undefined
  while (!r.bad && r.pos < end) {
    const t = r.tag()
    const name = t === 0x0a ? "set" : t === 0x12 ? "add" : t === 0x1a ? "remove" : undefined
    if (name === undefined || (member !== undefined && member !== name)) {
      r.bad = true // an unknown field, or two members of the oneof: protobufjs's
      break
    }
    member = name
    op[name] = name === "remove" ? r.str() : header(r)
  }
  if (member !== undefined) op.operation = member
  r.end = outer
  return op
}

const audit = (r: Reader): Obj => {
  const end = r.sub()
  const outer = r.end
  r.end = end
  const tags: Array<string> = []
  const ruleIds: Array<string> = []
  const reasonCodes: Array<string> = []
  let custom: Record<string, string> | undefined
  let confidence: number | undefined
  while (!r.bad && r.pos < end) {
    const t = r.tag()
    if (t === 0x0a) tags.push(r.str())
    else if (t === 0x12) ruleIds.push(r.str())
    else if (t === 0x22) reasonCodes.push(r.str())
    else if (t === 0x1d) {
      if (end - r.pos < 4) r.bad = true
      else {
        confidence = r.buf.readFloatLE(r.pos)
        r.pos += 4
      }
    } else if (t === 0x2a) {
      const entryEnd = r.sub()
      r.end = entryEnd
      let key = ""
      let value = ""
      while (!r.bad && r.pos < entryEnd) {
        const e = r.tag()
        if (e === 0x0a) key = r.str()
        else if (e === 0x12) value = r.str()
        else r.bad = true
      }
      r.end = end
      custom ??= {}
      // as protobufjs: a plain object, "__proto__" an own property like any other key
      if (key === "__proto__") Object.defineProperty(custom, key, { value, enumerable: true, configurable: true, writable: true })
      else custom[key] = value
    } else r.bad = true
  }
  r.end = outer
  const a: Obj = {}
  if (tags.length > 0) a.tags = tags
  if (ruleIds.length > 0) a.rule_ids = ruleIds
  if (confidence !== undefined) {
    a.confidence = confidence
    a._confidence = "confidence"
  }
  if (reasonCodes.length > 0) a.reason_codes = reasonCodes
  if (custom !== undefined && Object.keys(custom).length > 0) a.custom = custom
  return a
}

/** `decodeAgentToProxy(bytes)` for an allow answer (or one without a decision); undefined for the rest. */
export const decodeAllowAnswer = (bytes: Buffer): AgentToProxy | undefined => {
  if (bytes.length < 2 || bytes[0] !== 0x12) return undefined
  const r = new Reader(bytes, 1, bytes.length)
  const end = r.sub()
  if (r.bad || end !== bytes.length) return undefined // another field after the response
  const response: Obj = {}
  const requestOps: Array<Obj> = []
  const responseOps: Array<Obj> = []
  while (!r.bad && r.pos < end) {
    const t = r.tag()
    if (t === 0x0a) response.correlation_id = r.str()
    else if (t === 0x12) {
      if (r.sub() !== r.pos) return undefined // an AllowDecision with fields: protobufjs's
      response.allow = {}
      response.decision = "allow"
    } else if (t === 0x52) requestOps.push(headerOp(r))
    else if (t === 0x5a) responseOps.push(headerOp(r))
    else if (t === 0x62) {
      response.audit = audit(r)
      response._audit = "audit"
    } else if (t === 0x68) {
      response.processing_time_ms = r.varint()
      response._processing_time_ms = "processing_time_ms"
    } else if (t === 0x70) response.needs_more = r.bool()
    else return undefined
  }
  if (r.bad) return undefined
  if (requestOps.length > 0) response.request_headers = requestOps
  if (responseOps.length > 0) response.response_headers = responseOps
  return { response, message: "response" } as AgentToProxy
}
