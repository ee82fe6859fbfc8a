/**
 * The gRPC contract, checked from outside: every message the proxy sends on
 * ProcessStream is captured as bytes (a grpc-js server with identity codecs)
 * and decoded by a protobuf decoder written here from the field table of
 * Sentinel's agent_v2.proto (../shared/reference/agent-grpc.md), sharing no
 * code with src/ or the .proto files. Every field must be known, with the
 * right wire type; the answers the capture agent sends are encoded by hand the
 * same way. Also: the one shipped .proto file matches the table, and so does
 * the `sentinel.agent.v2` package the proxy derives from it (src's
 * derivePackage: the same messages, its own method paths).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import { afterEach, describe, expect, it } from "vitest"
import { closeAllEnvs, startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { eventually } from "./rawAgentHarness.js"
import { derivePackage, packageDefinition } from "../../src/agents/GrpcProto.js"

afterEach(async () => {
  await closeAllEnvs()
})

// ---------------------------------------------------------------------------
// The table (number -> name, kind), from the reference

type Kind = "string" | "bytes" | "bool" | "uint32" | "uint64" | "int32" | "float" | "double" | { msg: string } | { map: true }
interface FieldSpec {
  readonly name: string
  readonly kind: Kind
  readonly repeated?: boolean
}
const S = (name: string): FieldSpec => ({ name, kind: "string" })
const U32 = (name: string): FieldSpec => ({ name, kind: "uint32" })
const U64 = (name: string): FieldSpec => ({ name, kind: "uint64" })
const I32 = (name: string): FieldSpec => ({ name, kind: "int32" })
const B = (name: string): FieldSpec => ({ name, kind: "bool" })
const M = (name: string, msg: string, repeated = false): FieldSpec => ({ name, kind: { msg }, repeated })

const schema: Record<string, Record<number, FieldSpec>> = {
  ProxyToAgent: {
    1: M("handshake", "HandshakeRequest"),
    2: M("request_headers", "RequestHeadersEvent"),
    3: M("request_body_chunk", "BodyChunkEvent"),
    4: M("response_headers", "ResponseHeadersEvent"),
    5: M("response_body_chunk", "BodyChunkEvent"),
    6: M("websocket_frame", "WebSocketFrameEvent"),
    7: M("guardrail", "GuardrailInspectEvent"),
    8: M("request_complete", "RequestCompleteEvent"),
    9: M("cancel", "CancelRequest"),
    10: M("configure", "ConfigureEvent"),
    11: M("ping", "Ping")
  },
  HandshakeRequest: { 1: { name: "supported_versions", kind: "uint32", repeated: true }, 2: S("proxy_id"), 3: S("proxy_version"), 4: S("config_json") },
  RequestMetadata: {
    1: S("correlation_id"), 2: S("request_id"), 3: S("client_ip"), 4: U32("client_port"), 5: S("server_name"), 6: S("protocol"),
    7: S("tls_version"), 8: S("route_id"), 9: S("upstream_id"), 10: U64("timestamp_ms"), 11: S("traceparent")
  },
  Header: { 1: S("name"), 2: S("value") },
  RequestHeadersEvent: { 1: M("metadata", "RequestMetadata"), 2: S("method"), 3: S("uri"), 4: S("http_version"), 5: M("headers", "Header", true) },
  ResponseHeadersEvent: { 1: S("correlation_id"), 2: U32("status_code"), 3: M("headers", "Header", true) },
  BodyChunkEvent: {
    1: S("correlation_id"), 2: U32("chunk_index"), 3: { name: "data", kind: "bytes" }, 4: B("is_last"), 5: U64("total_size"),
    6: U64("bytes_transferred"), 7: U64("proxy_buffer_available"), 8: U64("timestamp_ms")
  },
  WebSocketFrameEvent: { 1: S("correlation_id"), 2: B("client_to_server"), 3: I32("frame_type"), 4: { name: "payload", kind: "bytes" } },
  GuardrailInspectEvent: { 1: S("correlation_id"), 2: S("content"), 3: I32("content_type"), 4: S("model"), 5: S("context_json") },
  RequestCompleteEvent: {
    1: S("correlation_id"), 2: U32("status_code"), 3: U64("duration_ms"), 4: U64("bytes_received"), 5: U64("bytes_sent"),
    6: S("upstream"), 7: B("from_cache"), 8: S("error")
  },
  ConfigureEvent: { 1: S("config_json"), 2: S("config_version"), 3: B("is_initial"), 4: U64("timestamp_ms") },
  CancelRequest: { 1: S("correlation_id"), 2: I32("reason"), 3: U64("timestamp_ms"), 4: S("blocking_agent_id"), 5: S("manual_reason") },
  Ping: { 1: U64("sequence"), 2: U64("timestamp_ms") }
}

// ---------------------------------------------------------------------------
// The decoder

class Reader {
  pos = 0
  constructor(readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length
  }
  varint(): bigint {
    let result = 0n
    let shift = 0n
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint")
      const b = this.buf[this.pos++]
      result |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return result
      shift += 7n
      if (shift > 63n) throw new Error("varint too long")
    }
  }
  bytes(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new Error("truncated field")
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
}

type Decoded = Record<string, unknown>

const wireOf = (k: Kind): number =>
  typeof k === "object" ? 2 : k === "string" || k === "bytes" ? 2 : k === "double" ? 1 : k === "float" ? 5 : 0

const scalar = (k: Kind, v: bigint): unknown =>
  k === "bool" ? v !== 0n : k === "int32" ? Number(BigInt.asIntN(32, v)) : Number(v)

/** Decodes `buf` as message `type`; every unknown field or wrong wire type goes to `problems`. */
const decode = (type: string, buf: Buffer, problems: Array<string>, where = type): Decoded => {
  const fields = schema[type]
  if (fields === undefined) throw new Error(`no schema for ${type}`)
  const out: Decoded = {}
  const r = new Reader(buf)
  while (!r.done) {
    const tag = Number(r.varint())
    const num = tag >>> 3
    const wire = tag & 7
    const spec = fields[num]
    let raw: bigint | Buffer
    if (wire === 0) raw = r.varint()
    else if (wire === 2) raw = r.bytes(Number(r.varint()))
    else if (wire === 1) raw = r.bytes(8)
    else if (wire === 5) raw = r.bytes(4)
    else throw new Error(`${where}: wire type ${wire} (groups) not allowed`)
    if (spec === undefined) {
      problems.push(`${where}: unknown field ${num} (wire type ${wire})`)
      continue
    }
    const expected = wireOf(spec.kind)
    const packed = spec.repeated === true && typeof spec.kind === "string" && expected === 0 && wire === 2
    if (wire !== expected && !packed) {
      problems.push(`${where}.${spec.name}: wire type ${wire}, expected ${expected}`)
      continue
    }
    let value: unknown
    if (packed) {
      const inner = new Reader(raw as Buffer)
      const list: Array<unknown> = []
      while (!inner.done) list.push(scalar(spec.kind, inner.varint()))
      value = list
    } else if (typeof spec.kind === "object" && "msg" in spec.kind) {
      value = decode(spec.kind.msg, raw as Buffer, problems, `${where}.${spec.name}`)
    } else if (spec.kind === "string") {
      value = (raw as Buffer).toString("utf8")
    } else if (spec.kind === "bytes") {
      value = Buffer.from(raw as Buffer)
    } else value = scalar(spec.kind, raw as bigint)
    if (spec.repeated) {
      const prev = (out[spec.name] as Array<unknown> | undefined) ?? []
      out[spec.name] = packed ? [...prev, ...(value as Array<unknown>)] : [...prev, value]
    } else out[spec.name] = value
  }
  return out
}

// ---------------------------------------------------------------------------
// A hand-written encoder for the answers

const varint = (n: number | bigint): Buffer => {
  let v = BigInt(n)
  const out: Array<number> = []
  do {
    let b = Number(v & 0x7fn)
    v >>= 7n
    if (v > 0n) b |= 0x80
    out.push(b)
  } while (v > 0n)
  return Buffer.from(out)
}
const fieldV = (num: number, v: number | boolean): Buffer => Buffer.concat([varint((num << 3) | 0), varint(typeof v === "boolean" ? Number(v) : v)])
const fieldL = (num: number, body: Buffer | string): Buffer => {
  const b = typeof body === "string" ? Buffer.from(body, "utf8") : body
  return Buffer.concat([varint((num << 3) | 2), varint(b.length), b])
}
/** AgentToProxy{handshake: HandshakeResponse{protocol_version 2, success true}}. */
const handshakeOk = (): Buffer => fieldL(1, Buffer.concat([fieldV(1, 2), fieldV(3, true)]))
/** AgentToProxy{response: AgentResponse{correlation_id, allow{}, audit{tags ["contract"]}}}. */
const allowAnswer = (cid: string): Buffer =>
  fieldL(2, Buffer.concat([fieldL(1, cid), fieldL(2, Buffer.alloc(0)), fieldL(12, fieldL(1, "contract"))]))

// ---------------------------------------------------------------------------
// The capture agent

interface Captured {
  readonly bytes: Buffer
  readonly problems: Array<string>
  readonly decoded: Decoded
}

const startCapture = async (opts: { holdCid?: (m: Decoded) => boolean } = {}) => {
  const captured: Array<Captured> = []
  const identity = (b: Buffer) => b
  const server = new grpc.Server()
  const def = {
    ProcessStream: {
      path: "/zentinel.agent.v2.AgentServiceV2/ProcessStream",
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity
    }
  } as unknown as grpc.ServiceDefinition
  server.addService(def, {
    ProcessStream: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on("data", (bytes: Buffer) => {
        const problems: Array<string> = []
        let decoded: Decoded
        try {
          decoded = decode("ProxyToAgent", bytes, problems)
        } catch (e) {
          problems.push(`undecodable: ${String(e)}`)
          decoded = {}
        }
        captured.push({ bytes, problems, decoded })
        if (Object.keys(decoded).length !== 1) problems.push(`a ProxyToAgent with ${Object.keys(decoded).length} members`)
        if (decoded.handshake) return call.write(handshakeOk())
        const ev = Object.values(decoded)[0] as Decoded | undefined
        if (ev === undefined || decoded.cancel || decoded.configure || decoded.ping) return
        const cid = (decoded.request_headers ? (ev.metadata as Decoded).correlation_id : ev.correlation_id) as string
        if (opts.holdCid?.(decoded)) return
        call.write(allowAnswer(cid))
      })
      call.on("end", () => call.end())
      call.on("error", () => {})
    }
  })
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p)))
  )
  return { port, captured, close: () => server.forceShutdown() }
}

describe("gRPC contract: what the proxy sends, decoded independently", () => {
  it("handshake, configure, every request phase and cancel: all fields known, values as the request", async () => {
    const held = new Set<string>()
    const agent = await startCapture({
      holdCid: (m) => {
        const rh = m.request_headers as Decoded | undefined
        const hdrs = (rh?.headers as Array<Decoded> | undefined) ?? []
        if (hdrs.some((h) => h.name === "x-hold")) {
          held.add(((rh!.metadata as Decoded).correlation_id) as string)
          return true
        }
        return false
      }
    })
    try {
      const env = await startAgentEnv(() => ({
        agents: [{
          id: "g",
          grpc: { address: `http://127.0.0.1:${agent.port}` },
          events: ["request_headers", "request_body", "response_headers", "response_body", "request_complete"],
          failureMode: "closed",
          timeoutMs: 300,
          poolSize: 1,
          config: { mode: "strict", level: 3 }
        } as never],
        filters: [{ id: "fg", type: "agent", agent: "g" }],
        routes: [upstreamRoute("r", "/", { filters: ["fg"] })]
      }))
      await env.agentsReady()
      const { request } = await import("../support/proxy.js")
      const reply = await request(env.proxy.port, {
        method: "POST",
        path: "/submit?x=1",
        headers: { "content-type": "text/plain", "x-multi": "a" },
        body: Buffer.from("hello body")
      })
      expect(reply.status).toBe(200)
      const cid = reply.headers["x-request-id"] as string
      // a held answer times out: the proxy sends a Cancel
      const timedOut = await env.get("/held", { "x-hold": "1" })
      expect(timedOut.status).toBe(504)
      await eventually(() => agent.captured.some((c) => c.decoded.cancel !== undefined), 5000, "cancel")
      await eventually(() => agent.captured.some((c) => c.decoded.request_complete !== undefined), 5000, "request_complete")

      const problems = agent.captured.flatMap((c) => c.problems)
      expect(problems).toEqual([])
      const kinds = new Set(agent.captured.map((c) => Object.keys(c.decoded)[0]))
      for (const k of ["handshake", "configure", "request_headers", "request_body_chunk", "response_headers", "response_body_chunk", "request_complete", "cancel"]) {
        expect({ k, seen: kinds.has(k) }).toEqual({ k, seen: true })
      }
      const one = <T = Decoded>(k: string, pred: (d: Decoded) => boolean = () => true): T =>
        agent.captured.map((c) => c.decoded[k] as Decoded | undefined).find((d) => d !== undefined && pred(d)) as T

      expect(one("handshake")).toEqual({ supported_versions: [2], proxy_id: "sentinel-ts", proxy_version: expect.any(String), config_json: '{"mode":"strict","level":3}' })
      expect(one<Decoded>("configure")).toMatchObject({ config_json: '{"mode":"strict","level":3}', is_initial: true, timestamp_ms: expect.any(Number) })

      const rh = one<Decoded>("request_headers", (d) => (d.metadata as Decoded).correlation_id === cid)
      expect(rh).toMatchObject({ method: "POST", uri: "/submit?x=1", http_version: "HTTP/1.1" })
      expect(rh.metadata).toMatchObject({ correlation_id: cid, request_id: cid, client_ip: "127.0.0.1", protocol: "HTTP/1.1", route_id: "r", upstream_id: "origin" })
      expect((rh.metadata as Decoded).timestamp_ms as number).toBeGreaterThan(Date.now() - 60_000)
      expect(rh.headers).toContainEqual({ name: "x-multi", value: "a" })
      expect(rh.headers).toContainEqual({ name: "content-type", value: "text/plain" })

      const body = one<Decoded>("request_body_chunk", (d) => d.correlation_id === cid)
      expect(body).toMatchObject({ correlation_id: cid, is_last: true, total_size: 10, bytes_transferred: 10 })
      expect((body.data as Buffer).toString()).toBe("hello body")

      const rs = one<Decoded>("response_headers", (d) => d.correlation_id === cid)
      expect(rs).toMatchObject({ correlation_id: cid, status_code: 200 })
      expect(rs.headers).toContainEqual({ name: "content-type", value: "application/json" })

      const rb = one<Decoded>("response_body_chunk", (d) => d.correlation_id === cid)
      expect(rb).toMatchObject({ correlation_id: cid, is_last: true })
      expect(JSON.parse((rb.data as Buffer).toString()).url).toBe("/submit?x=1")

      const done = one<Decoded>("request_complete", (d) => d.correlation_id === cid)
      expect(done).toMatchObject({ correlation_id: cid, status_code: 200, bytes_received: 10 })

      const cancel = one<Decoded>("cancel")
      expect(held.has(cancel.correlation_id as string)).toBe(true)
      expect(cancel).toMatchObject({ reason: 2, timestamp_ms: expect.any(Number) })
    } finally {
      agent.close()
    }
  })
})

describe("the shipped .proto file, and the package derived from it", () => {
  const protoDir = path.resolve(__dirname, "../../proto")

  it("is one file, of package zentinel.agent.v2", () => {
    expect(fs.readdirSync(protoDir)).toEqual(["zentinel_agent_v2.proto"])
    const lines = fs.readFileSync(path.join(protoDir, "zentinel_agent_v2.proto"), "utf8").split("\n")
    expect(lines.filter((l) => l.startsWith("package "))).toEqual(["package zentinel.agent.v2;"])
  })

  it("is loaded under both packages: the same message types, each package's own method paths", () => {
    const def = packageDefinition()
    for (const msg of ["ProxyToAgent", "AgentToProxy", "RequestHeadersEvent", "AgentResponse"]) {
      expect(def[`sentinel.agent.v2.${msg}`]).toBe(def[`zentinel.agent.v2.${msg}`])
    }
    for (const pkg of ["zentinel", "sentinel"]) {
      const svc = def[`${pkg}.agent.v2.AgentServiceV2`] as Record<string, { path: string }>
      expect(Object.values(svc).map((m) => m.path).sort()).toEqual(
        ["ControlStream", "ProcessEvent", "ProcessStream"].map((m) => `/${pkg}.agent.v2.AgentServiceV2/${m}`)
      )
    }
    expect(Object.keys(def).filter((k) => !/^(zentinel|sentinel)\.agent\.v2\./.test(k))).toEqual([])
  })

  it("declare the messages of the table with the same numbers, names and types, and the service's three methods", () => {
    const typeName: Record<string, string> = {
      TYPE_STRING: "string", TYPE_BYTES: "bytes", TYPE_BOOL: "bool", TYPE_UINT32: "uint32", TYPE_UINT64: "uint64",
      TYPE_INT32: "int32", TYPE_FLOAT: "float", TYPE_DOUBLE: "double"
    }
    // the file read here, as a client in another language would; sentinel.agent.v2 as the proxy and the SDK derive it
    const file = protoLoader.loadSync(path.join(protoDir, "zentinel_agent_v2.proto"), { keepCase: true })
    for (const pkg of ["zentinel", "sentinel"]) {
      const def = derivePackage(file, "zentinel.agent.v2", `${pkg}.agent.v2`)
      for (const [msg, fields] of Object.entries(schema)) {
        const t = (def[`${pkg}.agent.v2.${msg}`] as { type: { field: Array<{ name: string; number: number; type: string; typeName: string; label: string }> } }).type
        const got = Object.fromEntries(t.field.map((f) => [f.number, {
          name: f.name,
          kind: f.type === "TYPE_MESSAGE" ? { msg: f.typeName.split(".").pop() } : typeName[f.type],
          repeated: f.label === "LABEL_REPEATED"
        }]))
        const want = Object.fromEntries(Object.entries(fields).map(([n, f]) => [n, { name: f.name, kind: f.kind, repeated: f.repeated === true }]))
        expect({ msg, fields: got }).toEqual({ msg, fields: want })
      }
      const svc = def[`${pkg}.agent.v2.AgentServiceV2`] as Record<string, { path: string; requestStream: boolean; responseStream: boolean }>
      expect(Object.fromEntries(Object.entries(svc).map(([k, m]) => [k, [m.path, m.requestStream, m.responseStream]]))).toEqual({
        ProcessStream: [`/${pkg}.agent.v2.AgentServiceV2/ProcessStream`, true, true],
        ControlStream: [`/${pkg}.agent.v2.AgentServiceV2/ControlStream`, true, true],
        ProcessEvent: [`/${pkg}.agent.v2.AgentServiceV2/ProcessEvent`, false, false]
      })
    }
  })
})
