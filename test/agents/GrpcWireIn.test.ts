import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { decodeAgentToProxy, encodeAgentToProxy, type AgentToProxy, type PbAgentResponse } from "../../src/agents/GrpcProto.js"
import { decodeAllowAnswer } from "../../src/agents/GrpcWireIn.js"

const text = fc.oneof(fc.string({ maxLength: 20 }), fc.fullUnicodeString({ maxLength: 8 }), fc.constantFrom("__proto__", "constructor", ""), fc.string({ minLength: 130, maxLength: 200 }))
const header = fc.record({ name: text, value: text }, { requiredKeys: [] })
const op = fc.oneof(header.map((set) => ({ set })), header.map((add) => ({ add })), text.map((remove) => ({ remove })), fc.constant({}))
const audit = fc.record(
  {
    tags: fc.array(text, { maxLength: 3 }),
    rule_ids: fc.array(text, { maxLength: 3 }),
    confidence: fc.float({ noDefaultInfinity: false }),
    reason_codes: fc.array(text, { maxLength: 3 }),
    custom: fc.dictionary(text, text, { maxKeys: 4 })
  },
  { requiredKeys: [] }
)
const allowAnswer = fc.record(
  {
    correlation_id: text,
    allow: fc.constant({}),
    request_headers: fc.array(op, { maxLength: 4 }),
    response_headers: fc.array(op, { maxLength: 3 }),
    audit,
    processing_time_ms: fc.oneof(fc.nat(), fc.integer({ min: 0, max: 2 ** 49 - 1 })),
    needs_more: fc.boolean()
  },
  { requiredKeys: [] }
) as fc.Arbitrary<PbAgentResponse>
const otherAnswer = fc.oneof(
  fc.record({ correlation_id: text, block: fc.record({ status: fc.nat(599), body: text }) }),
  fc.record({ correlation_id: text, redirect: fc.record({ url: text, status: fc.nat(399) }) }),
  fc.record({ correlation_id: text, challenge: fc.record({ challenge_type: text, params: fc.dictionary(text, text, { maxKeys: 2 }) }) })
) as fc.Arbitrary<PbAgentResponse>
const otherMessage = fc.oneof(
  fc.record({ health: fc.record({ agent_id: text, state: fc.nat(3), message: text }) }),
  fc.record({ pong: fc.record({ sequence: fc.nat(), timestamp_ms: fc.nat() }) }),
  fc.record({ handshake: fc.record({ protocol_version: fc.nat(3), success: fc.boolean(), error: text }) })
) as fc.Arbitrary<AgentToProxy>

/** protobufjs's decode, or "throws". */
const reference = (bytes: Buffer): AgentToProxy | "throws" => {
  try {
    return decodeAgentToProxy(bytes)
  } catch {
    return "throws"
  }
}

describe("GrpcWireIn: the allow answer decoded by hand in the proxy", () => {
  it("decodes every allow answer (or one without a decision) to the object protobufjs decodes", () => {
    fc.assert(
      fc.property(allowAnswer, (r) => {
        const bytes = encodeAgentToProxy({ response: r })
        const mine = decodeAllowAnswer(bytes)
        expect(mine).toBeDefined()
        expect(mine).toStrictEqual(decodeAgentToProxy(bytes))
      }),
      { numRuns: 2000 }
    )
  })

  it("leaves blocks, redirects, challenges, the other messages and a processing time from 2^49 on to protobufjs", () => {
    expect(decodeAllowAnswer(encodeAgentToProxy({ response: { allow: {}, processing_time_ms: 2 ** 49 } }))).toBeUndefined()
    fc.assert(
      fc.property(fc.oneof(otherAnswer.map((response) => ({ response })), otherMessage), (m) => {
        expect(decodeAllowAnswer(encodeAgentToProxy(m))).toBeUndefined()
      })
    )
  })

  it("bytes changed, cut or with fields appended: undefined, or what protobufjs decodes (never something it would not)", () => {
    const unknownField = fc.tuple(fc.integer({ min: 1, max: 40 }), fc.uint8Array({ maxLength: 6 })).map(([n, b]) =>
      Buffer.concat([Buffer.from([(n << 3) | 2, b.length]), b])
    )
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), value: fc.nat(255) }),
      fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("append" as const), field: unknownField })
    )
    fc.assert(
      fc.property(allowAnswer, fc.array(mutation, { minLength: 1, maxLength: 3 }), (r, ms) => {
        let bytes = encodeAgentToProxy({ response: r })
        for (const m of ms) {
          if (m.kind === "flip" && bytes.length > 0) {
            bytes = Buffer.from(bytes)
            bytes[m.at % bytes.length] = m.value
          } else if (m.kind === "cut") bytes = bytes.subarray(0, m.at % (bytes.length + 1))
          else if (m.kind === "append") bytes = Buffer.concat([bytes, m.field])
        }
        const mine = decodeAllowAnswer(bytes)
        if (mine === undefined) return
        expect(mine).toStrictEqual(reference(bytes))
      }),
      { numRuns: 3000 }
    )
  })

  it("an answer's unknown fields inside the response are protobufjs's to skip (undefined here)", () => {
    const bytes = encodeAgentToProxy({ response: { correlation_id: "c", allow: {} } })
    const withUnknown = Buffer.concat([Buffer.from([0x12, bytes[1] + 3]), bytes.subarray(2), Buffer.from([0xfa, 0x01, 0x00])])
    expect(reference(withUnknown)).toMatchObject({ response: { correlation_id: "c", decision: "allow" } })
    expect(decodeAllowAnswer(withUnknown)).toBeUndefined()
  })
})
