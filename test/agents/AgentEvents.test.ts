import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { isoTimestamp, requestHeadersEvent } from "../../src/agents/AgentEvents.js"
import { pbAgentResponseOf, proxyEventOf, proxyToAgentOf } from "../../src/agents/GrpcMapping.js"
import {
  decodeAgentToProxy,
  decodeProxyToAgent,
  encodeAgentToProxy,
  encodeProxyToAgent,
  type PbAgentResponse,
  type ProxyToAgent
} from "../../src/agents/GrpcProto.js"
import { frameOf } from "../../src/agents/GrpcHttp2.js"
import { encodeAllowAnswer, encodeRequestHeadersFrame, encodeRequestHeadersMessage } from "../../src/agents/GrpcWire.js"
import { allow, block } from "../../src/agents/sdk/Decision.js"
import { MessageType, type RequestHeadersEvent } from "../../src/agents/Protocol.js"

/** Epoch ms from 1970 to 2100, often repeated (the cache's case) and often not. */
const instants = fc.array(fc.oneof(fc.integer({ min: 0, max: 4102444800000 }), fc.constantFrom(1765000000000, 1765000000001)), { maxLength: 30 })

const facts = (ms: number, traceparent: string | undefined) => ({
  traceId: "t-1",
  method: "GET",
  uri: "/a?b=1",
  rawHeaders: ["Host", "example.test", "X-A", "1", "x-a", "2"],
  clientIp: "127.0.0.1",
  clientPort: 4242,
  protocol: "HTTP/1.1",
  routeId: "r",
  startedAt: ms,
  ...(traceparent !== undefined ? { traceparent } : {})
})

describe("agent events", () => {
  it("isoTimestamp is toISOString for every instant, repeated or not", () => {
    fc.assert(fc.property(instants, (xs) => {
      for (const ms of xs) expect(isoTimestamp(ms)).toBe(new Date(ms).toISOString())
    }))
  })

  it("a RequestHeaders event carries its instant, and traceparent only when there is one", () => {
    fc.assert(fc.property(instants, fc.option(fc.constantFrom("", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), { nil: undefined }), (xs, tp) => {
      for (const ms of xs) {
        const e = requestHeadersEvent(facts(ms, tp))
        expect(e.metadata.timestamp).toBe(new Date(ms).toISOString())
        expect("traceparent" in e.metadata).toBe(tp !== undefined && tp !== "")
        expect(e.headers).toEqual({ host: ["example.test"], "x-a": ["1", "2"] })
      }
    }))
  })

  it("over gRPC, each event's timestamp arrives at the agent as sent (ms precision), in any order", () => {
    fc.assert(fc.property(instants, (xs) => {
      for (const ms of xs) {
        const e = requestHeadersEvent(facts(ms, undefined))
        const pb = proxyToAgentOf(MessageType.RequestHeaders, e) as ProxyToAgent
        expect(pb.request_headers?.metadata?.timestamp_ms).toBe(ms)
        const back = proxyEventOf(decodeProxyToAgent(encodeProxyToAgent(pb)))
        expect((back?.event as RequestHeadersEvent).metadata.timestamp).toBe(e.metadata.timestamp)
      }
    }))
  })
})

describe("GrpcWire: the RequestHeaders message encoded by hand", () => {
  const text = fc.oneof(fc.string({ maxLength: 40 }), fc.fullUnicodeString({ maxLength: 20 }), fc.string({ minLength: 100, maxLength: 300 }))
  const opt = fc.option(text, { nil: undefined }).chain((v) => fc.constantFrom(v, null))
  const event = fc.record({
    correlation_id: text,
    request_id: text,
    client_ip: text,
    client_port: fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constant(0xffffffff)),
    server_name: opt,
    protocol: text,
    tls_version: opt,
    tls_cipher: opt,
    route_id: opt,
    upstream_id: opt,
    timestamp: fc.integer({ min: 0, max: 4102444800000 }).map((ms) => new Date(ms).toISOString()),
    traceparent: fc.option(text, { nil: undefined }),
    method: text,
    uri: text,
    headers: fc.dictionary(fc.string({ maxLength: 20 }).map((s) => s.toLowerCase()), fc.array(text, { minLength: 1, maxLength: 3 }), { maxKeys: 8 })
  }).map(({ method, uri, headers, correlation_id, ...m }): RequestHeadersEvent => {
    const metadata: Record<string, unknown> = { correlation_id, ...m }
    if (m.traceparent === undefined) delete metadata.traceparent
    return { correlation_id, metadata: metadata as RequestHeadersEvent["metadata"], method, uri, headers }
  })

  it("writes the bytes protobufjs writes for the same event, and the same framed for gRPC", () => {
    fc.assert(
      fc.property(event, (e) => {
        const mine = encodeRequestHeadersMessage(e)
        const theirs = encodeProxyToAgent(proxyToAgentOf(MessageType.RequestHeaders, e) as ProxyToAgent)
        expect(mine).toBeDefined()
        expect(mine!.equals(theirs)).toBe(true)
        expect(encodeRequestHeadersFrame(e)!.equals(frameOf(theirs))).toBe(true)
      }),
      { numRuns: 1000 }
    )
  })

  it("leaves to protobufjs what it does not encode plainly", () => {
    const e = requestHeadersEvent(facts(1765000000000, undefined))
    const odd = (patch: Record<string, unknown>) => ({ ...e, metadata: { ...e.metadata, ...patch } }) as unknown as RequestHeadersEvent
    expect(encodeRequestHeadersMessage(odd({ timestamp: "not a time" }))).toBeUndefined()
    expect(encodeRequestHeadersMessage(odd({ timestamp: "1969-12-31T23:59:59.000Z" }))).toBeUndefined()
    expect(encodeRequestHeadersMessage(odd({ client_port: -1 }))).toBeUndefined()
    expect(encodeRequestHeadersMessage(odd({ route_id: 7 }))).toBeUndefined()
    expect(encodeRequestHeadersFrame(odd({ route_id: 7 }))).toBeUndefined()
    expect(encodeRequestHeadersMessage({ ...e, headers: { a: "b" } } as unknown as RequestHeadersEvent)).toBeUndefined()
  })
})

describe("GrpcWire: the SDK's allow answer encoded by hand", () => {
  const text = fc.oneof(fc.string({ maxLength: 30 }), fc.fullUnicodeString({ maxLength: 10 }), fc.string({ minLength: 100, maxLength: 200 }))
  const header = fc.record({ name: text, value: text })
  const op = fc.oneof(header.map((set) => ({ set })), header.map((add) => ({ add })), text.map((remove) => ({ remove })))
  const answer = fc.record({
    correlation_id: text,
    allow: fc.constant({}),
    request_headers: fc.array(op, { maxLength: 4 }),
    response_headers: fc.array(op, { maxLength: 3 }),
    audit: fc.option(fc.record({
      tags: fc.array(text, { maxLength: 3 }),
      rule_ids: fc.array(text, { maxLength: 3 }),
      reason_codes: fc.array(text, { maxLength: 3 }),
      custom: fc.dictionary(text, text, { maxKeys: 4 })
    }), { nil: undefined }),
    needs_more: fc.boolean()
  }) as fc.Arbitrary<PbAgentResponse>

  it("writes the bytes protobufjs writes for the same answer", () => {
    fc.assert(
      fc.property(answer, (r) => {
        const mine = encodeAllowAnswer(r)
        expect(mine).toBeDefined()
        expect(mine!.equals(encodeAgentToProxy({ response: r }))).toBe(true)
      }),
      { numRuns: 1000 }
    )
  })

  it("leaves every other answer to protobufjs", () => {
    const base: PbAgentResponse = { correlation_id: "c", allow: {}, request_headers: [], response_headers: [], needs_more: false }
    expect(encodeAllowAnswer(base)).toBeDefined()
    for (const r of [
      { ...base, allow: undefined, block: { status: 403 } },
      { ...base, allow: undefined, redirect: { url: "/x", status: 302 } },
      { ...base, audit: { tags: [], confidence: 0.5 } },
      { ...base, request_headers: [{ set: { name: "a", value: "b" }, remove: "c" }] },
      { ...base, request_headers: [{}] }
    ]) expect(encodeAllowAnswer(r as PbAgentResponse)).toBeUndefined()
  })

  it("SDK answers of every decision reach a proxy-side decoder as the same answer (hand or protobufjs)", () => {
    for (const d of [allow().setRequestHeader("x-a", "1").withAudit({ tags: ["t"], custom: { k: "v" } }), block(451, { body: "no" }), allow().withAudit({ confidence: 0.25 })]) {
      const r = pbAgentResponseOf(d.toWire("cid"), "cid")
      const bytes = encodeAllowAnswer(r) ?? encodeAgentToProxy({ response: r })
      expect(decodeAgentToProxy(bytes).response).toEqual(decodeAgentToProxy(encodeAgentToProxy({ response: r })).response)
    }
  })
})
