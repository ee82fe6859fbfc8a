import * as Either from "effect/Either"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { requestHeadersEvent as requestHeadersEventFor } from "./rawAgentHarness.js"
import {
  AgentProtocolError,
  allowResponse,
  MAX_FRAME_LENGTH,
  MessageType
} from "../../src/agents/Protocol.js"
import {
  answerCorrelationId,
  decodeAgentResponse,
  decodeAgentResponseSchema,
  decodeRequestHeaders,
  decodeRequestHeadersSchema,
  decodeEvent,
  decodeHandshakeResponse
} from "../../src/agents/ProtocolDecoders.js"
import {
  encodeFrame,
  type Frame,
  FrameBatch,
  FrameDecoder
} from "../../src/agents/ProtocolFrames.js"

const types = Object.values(MessageType)
const token = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/)
const headerValue = fc.string({ maxLength: 30 }).filter((s) => !/[\r\n\0]/.test(s))
const headerMap = fc.dictionary(token, fc.array(headerValue, { minLength: 1, maxLength: 3 }), { maxKeys: 5 })

const requestHeaders = fc.record({
  correlation_id: fc.string({ minLength: 1, maxLength: 20 }),
  metadata: fc.record({
    correlation_id: fc.string(),
    request_id: fc.string(),
    client_ip: fc.ipV4(),
    client_port: fc.integer({ min: 0, max: 65535 }),
    server_name: fc.option(fc.domain(), { nil: null }),
    protocol: fc.constantFrom("HTTP/1.1", "HTTP/2"),
    tls_version: fc.constant(null),
    tls_cipher: fc.constant(null),
    route_id: fc.option(token, { nil: null }),
    upstream_id: fc.option(token, { nil: null }),
    timestamp: fc.constant("2024-01-01T00:00:00Z")
  }),
  method: fc.constantFrom("GET", "POST", "PUT"),
  uri: fc.webPath(),
  headers: headerMap
})
const bodyChunk = fc.record({
  correlation_id: fc.string({ minLength: 1 }),
  data: fc.base64String(),
  is_last: fc.boolean(),
  chunk_index: fc.nat(1000),
  bytes_received: fc.nat(1 << 20)
})
const responseHeaders = fc.record({ correlation_id: fc.string(), status: fc.integer({ min: 100, max: 599 }), headers: headerMap })

const headerOp = fc.oneof(
  fc.record({ set: fc.record({ name: token, value: headerValue }) }),
  fc.record({ add: fc.record({ name: token, value: headerValue }) }),
  fc.record({ remove: fc.record({ name: token }) })
)
const decision = fc.oneof(
  fc.constant("allow" as const),
  fc.record({
    block: fc.record({
      status: fc.integer({ min: 100, max: 599 }),
      body: fc.option(fc.string(), { nil: null }),
      headers: fc.option(fc.dictionary(token, headerValue, { maxKeys: 3 }), { nil: null })
    })
  }),
  fc.record({ redirect: fc.record({ url: fc.webUrl(), status: fc.integer({ min: 300, max: 399 }) }) }),
  fc.record({ challenge: fc.record({ challenge_type: token, params: fc.dictionary(token, fc.jsonValue()) }) })
)
const agentResponse = fc.record({
  version: fc.constant(2),
  decision,
  request_headers: fc.array(headerOp, { maxLength: 4 }),
  response_headers: fc.array(headerOp, { maxLength: 4 }),
  routing_metadata: fc.dictionary(token, fc.string()),
  audit: fc.record({
    tags: fc.array(token, { maxLength: 3 }),
    rule_ids: fc.array(token, { maxLength: 3 }),
    reason_codes: fc.array(token, { maxLength: 3 }),
    custom: fc.record({ correlation_id: fc.string({ minLength: 1 }) })
  }),
  needs_more: fc.boolean(),
  request_body_mutation: fc.constant(null),
  response_body_mutation: fc.option(fc.record({ data: fc.option(fc.base64String(), { nil: null }), chunk_index: fc.nat(10) }), { nil: null }),
  websocket_decision: fc.constant(null)
})

const splitAt = (buf: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  const out: Array<Buffer> = []
  let prev = 0
  for (const p of points) {
    out.push(buf.subarray(prev, p))
    prev = p
  }
  out.push(buf.subarray(prev))
  return out
}

const decodeAll = (chunks: ReadonlyArray<Buffer>) => {
  const decoder = new FrameDecoder()
  return chunks.flatMap((c) => decoder.push(c))
}

describe("Protocol framing", () => {
  it("encodes L as type byte + payload, big-endian, with the type byte after it", () => {
    const frame = encodeFrame(MessageType.Ping, { sequence: 1, timestamp_ms: 2 })
    const json = Buffer.from(JSON.stringify({ sequence: 1, timestamp_ms: 2 }))
    expect(frame.readUInt32BE(0)).toBe(json.length + 1)
    expect(frame[4]).toBe(0x41)
    expect(frame.subarray(5).equals(json)).toBe(true)
  })

  it("round-trips any sequence of frames under any chunking", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...types), fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }))), {
          minLength: 1,
          maxLength: 8
        }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (messages, cuts) => {
          const wire = Buffer.concat(messages.map(([t, p]) => encodeFrame(t, p)))
          const out = decodeAll(splitAt(wire, cuts))
          expect(out.length).toBe(messages.length)
          out.forEach((f, i) => {
            expect(f._tag).toBe("Frame")
            expect((f as Frame).type).toBe(messages[i][0])
            expect((f as Frame).payload).toEqual(JSON.parse(JSON.stringify(messages[i][1])))
          })
        }
      ),
      { numRuns: 200 }
    )
  })

  it("a FrameBatch writes exactly the bytes of its frames encoded one by one, in order, and is empty after take", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...types), fc.dictionary(fc.fullUnicodeString(), fc.jsonValue({ maxDepth: 2 }))), {
          minLength: 1,
          maxLength: 8
        }),
        (messages) => {
          const batch = new FrameBatch()
          for (const [t, p] of messages) batch.add(t, p)
          const expected = Buffer.concat(messages.map(([t, p]) => encodeFrame(t, p)))
          expect(batch.bytes).toBe(expected.length)
          expect(batch.take().equals(expected)).toBe(true)
          expect(batch.length).toBe(0)
          expect(batch.bytes).toBe(0)
        }
      ),
      { numRuns: 200 }
    )
  })

  it("a FrameBatch refuses a frame past the limit and keeps what it had", () => {
    const batch = new FrameBatch()
    batch.add(MessageType.Ping, { sequence: 1 })
    const before = batch.bytes
    expect(() => batch.add(MessageType.RequestBodyChunk, { data: "x".repeat(MAX_FRAME_LENGTH) })).toThrow(RangeError)
    expect(batch.length).toBe(1)
    expect(batch.bytes).toBe(before)
    expect(batch.take().equals(encodeFrame(MessageType.Ping, { sequence: 1 }))).toBe(true)
  })

  it("never throws on random bytes and random chunking; stops after the first error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
        const out = decodeAll(splitAt(Buffer.from(bytes), cuts))
        const errors = out.filter((x) => x._tag === "AgentProtocolError")
        expect(errors.length).toBeLessThanOrEqual(1)
        if (errors.length === 1) expect(out[out.length - 1]).toBe(errors[0])
      }),
      { numRuns: 500 }
    )
  })

  const header = (length: number, type: number) => {
    const b = Buffer.alloc(5)
    b.writeUInt32BE(length, 0)
    b[4] = type
    return b
  }
  const reasonOf = (chunks: ReadonlyArray<Buffer>) => {
    const out = decodeAll(chunks)
    const last = out[out.length - 1]
    return last?._tag === "AgentProtocolError" ? (last as AgentProtocolError).reason : undefined
  }

  it("L = 0 is a protocol error", () => expect(reasonOf([Buffer.alloc(4)])).toBe("zero-length"))
  it("L > 16 MiB is a protocol error as soon as the length is read", () =>
    expect(reasonOf([header(MAX_FRAME_LENGTH + 1, 0x20).subarray(0, 4)])).toBe("oversize"))
  it("L = 16 MiB exactly is accepted (waits for the payload)", () =>
    expect(decodeAll([header(MAX_FRAME_LENGTH, 0x20)])).toEqual([]))
  it("an unknown type byte is a protocol error", () => expect(reasonOf([header(3, 0x99)])).toBe("unknown-type"))
  it("a payload that is not JSON is a protocol error", () =>
    expect(reasonOf([header(4, 0x20), Buffer.from("{x}")])).toBe("bad-json"))
  it("a payload that is JSON but not an object is a protocol error", () =>
    expect(reasonOf([header(3, 0x20), Buffer.from("[]")])).toBe("bad-json"))
  it("invalid UTF-8 is a protocol error", () =>
    expect(reasonOf([header(4, 0x20), Buffer.from([0x22, 0xff, 0x22])])).toBe("bad-json"))
  it("an empty payload is a protocol error", () => expect(reasonOf([header(1, 0x41)])).toBe("bad-json"))
})

describe("Protocol schemas", () => {
  it("round-trips random events through the wire and the event decoders", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          requestHeaders.map((e) => [MessageType.RequestHeaders, e] as const),
          bodyChunk.map((e) => [MessageType.RequestBodyChunk, e] as const),
          responseHeaders.map((e) => [MessageType.ResponseHeaders, e] as const)
        ),
        ([type, event]) => {
          const [frame] = decodeAll([encodeFrame(type, event)]) as Array<Frame>
          const decoded = decodeEvent(frame)
          expect(Either.isRight(decoded)).toBe(true)
          if (Either.isRight(decoded)) {
            expect(decoded.right.type).toBe(type)
            expect(decoded.right.event).toEqual(event)
          }
        }
      ),
      { numRuns: 200 }
    )
  })

  it("round-trips random agent responses", () => {
    fc.assert(
      fc.property(agentResponse, (response) => {
        const [frame] = decodeAll([encodeFrame(MessageType.AgentResponse, response)]) as Array<Frame>
        expect(answerCorrelationId(frame.payload)).toBe(response.audit.custom.correlation_id)
        const decoded = decodeAgentResponse(frame.payload)
        expect(Either.getOrThrow(decoded)).toEqual(JSON.parse(JSON.stringify(response)))
      }),
      { numRuns: 200 }
    )
  })

  it("the fast path for plain allows decodes exactly as the schema (and never accepts what it rejects)", () => {
    const maybeNull = <T>(a: fc.Arbitrary<T>) => fc.oneof(a, fc.constant(null))
    // header ops the fast path must leave to the schema, or decide exactly as it does
    const oddHeaderOp = fc.oneof(
      fc.record({ set: fc.record({ name: fc.constantFrom("bad name", "", "X:Y", "ok"), value: fc.constantFrom("a\r\nb", "x\u0000", "fine", 3) }) }),
      fc.record({ add: fc.record({ name: token, value: headerValue, extra: fc.string() }, { requiredKeys: ["name"] }) }),
      fc.record({ remove: fc.record({ name: token, value: headerValue }) }),
      fc.record({ set: fc.record({ name: token, value: headerValue }), remove: fc.record({ name: token }) }),
      fc.constantFrom({}, { set: null }, { other: { name: "x" } }, [], "set")
    )
    const allowish = fc.record(
      {
        version: fc.oneof(fc.constant(2), fc.integer(), fc.double(), fc.constant("2")),
        decision: fc.oneof(fc.constant("allow"), fc.constant("block"), fc.constant({ block: {} })),
        request_headers: maybeNull(fc.oneof(fc.constant([]), fc.array(fc.oneof(headerOp, oddHeaderOp), { maxLength: 3 }), fc.constant([1]))),
        response_headers: maybeNull(fc.oneof(fc.constant([]), fc.array(fc.oneof(headerOp, oddHeaderOp), { maxLength: 2 }))),
        routing_metadata: maybeNull(fc.oneof(fc.constant({}), fc.dictionary(token, fc.string(), { maxKeys: 1 }))),
        needs_more: maybeNull(fc.oneof(fc.boolean(), fc.constant("no"))),
        request_body_mutation: maybeNull(fc.constant({ data: null, chunk_index: 0 })),
        websocket_decision: fc.constant(null),
        audit: maybeNull(
          fc.record(
            {
              tags: maybeNull(fc.oneof(fc.array(token, { maxLength: 2 }), fc.constant([1]))),
              rule_ids: maybeNull(fc.array(token, { maxLength: 2 })),
              reason_codes: maybeNull(fc.array(token, { maxLength: 2 })),
              confidence: maybeNull(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constant("high"))),
              custom: maybeNull(fc.oneof(fc.record({ correlation_id: fc.string() }), fc.constant([]))),
              extra: fc.string()
            },
            { requiredKeys: [] }
          )
        ),
        other: fc.string()
      },
      { requiredKeys: [] }
    )
    fc.assert(
      fc.property(allowish, (input) => {
        const fast = decodeAgentResponse(input)
        const schema = decodeAgentResponseSchema(input)
        expect(Either.isRight(fast)).toBe(Either.isRight(schema))
        if (Either.isRight(fast) && Either.isRight(schema)) expect(fast.right).toEqual(schema.right)
      }),
      { numRuns: 1000 }
    )
  })

  it("RequestHeaders: the fast decoder agrees with the schema (same events, same refusals)", () => {
    const maybe = <A>(a: fc.Arbitrary<A>) => fc.oneof(a, fc.constant(null), fc.integer(), fc.constant(undefined))
    const text = fc.oneof(fc.string(), fc.constantFrom("__proto__", "constructor", "x-a"))
    const metadata = fc.record(
      {
        correlation_id: maybe(fc.string()),
        request_id: maybe(fc.string()),
        client_ip: maybe(fc.string()),
        client_port: fc.oneof(fc.nat(), fc.integer({ min: -5, max: -1 }), fc.double(), fc.constant(2 ** 60), fc.string()),
        server_name: maybe(fc.string()),
        protocol: maybe(fc.string()),
        tls_version: maybe(fc.string()),
        tls_cipher: maybe(fc.string()),
        route_id: maybe(fc.string()),
        upstream_id: maybe(fc.string()),
        timestamp: maybe(fc.string()),
        traceparent: maybe(fc.string()),
        extra: fc.string()
      },
      { requiredKeys: ["correlation_id", "request_id", "client_ip", "client_port", "protocol", "timestamp"] }
    )
    const headers = fc.oneof(
      fc.dictionary(text, fc.array(fc.string(), { maxLength: 3 })),
      fc.dictionary(text, fc.oneof(fc.array(fc.oneof(fc.string(), fc.integer())), fc.string(), fc.constant(null))),
      fc.constant([]),
      fc.constant(null)
    )
    const event = fc.record(
      { correlation_id: maybe(fc.string()), metadata: fc.oneof(metadata, fc.constant(null), fc.string()), method: maybe(fc.string()), uri: maybe(fc.string()), headers, other: fc.string() },
      { requiredKeys: ["correlation_id", "metadata", "method", "uri", "headers"] }
    )
    // JSON round trip: what an agent gets is parsed JSON (own `__proto__` keys included)
    fc.assert(
      fc.property(event, (e) => {
        const input = JSON.parse(JSON.stringify(e)) as unknown
        const fast = decodeRequestHeaders(input)
        const schema = decodeRequestHeadersSchema(input)
        expect(Either.isRight(fast)).toBe(Either.isRight(schema))
        if (Either.isRight(fast) && Either.isRight(schema)) expect(fast.right).toEqual(schema.right)
      }),
      { numRuns: 2000 }
    )
    const good = JSON.parse(JSON.stringify(requestHeadersEventFor({ "x-a": ["1", "2"] }, "c-1"))) as unknown
    expect(Either.getOrThrow(decodeRequestHeaders(good))).toEqual(Either.getOrThrow(decodeRequestHeadersSchema(good)))
  })

  it("fills defaults for a minimal allow", () => {
    const decoded = Either.getOrThrow(decodeAgentResponse(allowResponse("abc")))
    expect(decoded.decision).toBe("allow")
    expect(decoded.request_headers).toEqual([])
    expect(decoded.audit.custom.correlation_id).toBe("abc")
  })

  it.each([
    ["no decision", { version: 2 }],
    ["unknown decision", { version: 2, decision: "maybe" }],
    ["block status out of range", { version: 2, decision: { block: { status: 42 } } }],
    ["header value with CRLF", { version: 2, decision: "allow", request_headers: [{ set: { name: "x", value: "a\r\nb: c" } }] }],
    ["header name with space", { version: 2, decision: "allow", request_headers: [{ set: { name: "x y", value: "1" } }] }],
    ["unknown header op", { version: 2, decision: "allow", request_headers: [{ rename: { name: "x" } }] }],
    ["version not a number", { version: "2", decision: "allow" }]
  ])("rejects a malformed answer (%s) as a failure", (_name, payload) => {
    const decoded = decodeAgentResponse(payload)
    expect(Either.isLeft(decoded)).toBe(true)
    if (Either.isLeft(decoded)) expect(decoded.left.reason).toBe("malformed")
  })

  it("random JSON objects never decode to an allow unless they say allow", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })), (obj) => {
        const decoded = decodeAgentResponse(obj)
        if (Either.isRight(decoded) && decoded.right.decision === "allow") expect(obj.decision).toBe("allow")
      }),
      { numRuns: 300 }
    )
  })

  it("accepts a Sentinel-shaped handshake response and a minimal one", () => {
    const full = {
      protocol_version: 2,
      success: true,
      error: null,
      encoding: "json",
      capabilities: {
        agent_id: "waf",
        name: "waf",
        version: "1",
        supported_events: [1, 2],
        features: { streaming_body: false, concurrent_requests: 100 },
        limits: { max_body_size: 1048576, max_concurrency: 100, preferred_chunk_size: 65536 }
      }
    }
    expect(Either.getOrThrow(decodeHandshakeResponse(full)).capabilities?.agent_id).toBe("waf")
    expect(Either.getOrThrow(decodeHandshakeResponse({ protocol_version: 2, success: true })).capabilities).toBeNull()
    expect(Either.isLeft(decodeHandshakeResponse({ success: true }))).toBe(true)
  })
})
