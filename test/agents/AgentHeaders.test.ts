import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { applyHeaderOps, headerMapOf } from "../../src/agents/AgentHeaders.js"
import type { HeaderOp } from "../../src/agents/Protocol.js"

const name = fc.constantFrom("x-a", "X-A", "x-b", "content-length", "transfer-encoding", "host")
const value = fc.string({ maxLength: 5 })
const flat = fc.array(fc.tuple(name, value), { maxLength: 6 }).map((pairs) => pairs.flat())
const op: fc.Arbitrary<HeaderOp> = fc.oneof(
  fc.record({ set: fc.record({ name, value }) }),
  fc.record({ add: fc.record({ name, value }) }),
  fc.record({ remove: fc.record({ name }) })
)

describe("AgentHeaders", () => {
  it("builds the event map with lower-case names and values in order", () => {
    expect(headerMapOf(["Host", "a", "X-A", "1", "x-a", "2"])).toEqual({ host: ["a"], "x-a": ["1", "2"] })
  })

  it("keeps names that are properties of Object.prototype as plain headers (no prototype to reach)", () => {
    const map = headerMapOf(["__proto__", "a", "Constructor", "b", "toString", "c", "hasOwnProperty", "d", "__proto__", "e"])
    expect(JSON.parse(JSON.stringify(map))).toEqual({ ["__proto__"]: ["a", "e"], constructor: ["b"], tostring: ["c"], hasownproperty: ["d"] })
    expect(Object.keys(map)).toEqual(["__proto__", "constructor", "tostring", "hasownproperty"])
    expect((map as Record<string, unknown>)["valueOf"]).toBeUndefined()
  })

  it("property: the map holds every name once, lower-cased, with its values in order", () => {
    const pair = fc.tuple(fc.oneof(fc.constantFrom("__proto__", "constructor", "toString", "Host", "X-A", "x-a"), fc.string({ maxLength: 8 })), fc.string({ maxLength: 8 }))
    fc.assert(
      fc.property(fc.array(pair, { maxLength: 12 }), (pairs) => {
        const expected = new Map<string, Array<string>>()
        for (const [n, v] of pairs) {
          const k = n.toLowerCase()
          expected.set(k, [...(expected.get(k) ?? []), v])
        }
        const map = headerMapOf(pairs.flat())
        // (a JSON object's order is not meaningful; integer-like names come first in JS)
        expect(Object.keys(map).sort()).toEqual([...expected.keys()].sort())
        for (const [k, vs] of expected) expect(Object.getOwnPropertyDescriptor(map, k)?.value).toEqual(vs)
      })
    )
  })

  it("set replaces every value, add appends, remove deletes (case-insensitive)", () => {
    const out = applyHeaderOps(["X-A", "1", "x-a", "2", "x-b", "3"], [
      { set: { name: "x-a", value: "9" } },
      { add: { name: "x-b", value: "4" } },
      { remove: { name: "X-B" } },
      { add: { name: "x-c", value: "5" } }
    ])
    expect(out).toEqual(["x-a", "9", "x-c", "5"])
  })

  it("never touches framing headers, whatever the ops", () => {
    fc.assert(
      fc.property(flat, fc.array(op, { maxLength: 6 }), (headers, ops) => {
        const framing = (l: ReadonlyArray<string>) =>
          l.flatMap((n, i) => (i % 2 === 0 && /^(content-length|transfer-encoding)$/i.test(n) ? [n, l[i + 1]] : []))
        const out = applyHeaderOps(headers, ops)
        expect(framing(out)).toEqual(framing(headers))
        expect(out.length % 2).toBe(0)
      })
    )
  })

  it("after set, the name has exactly that one value", () => {
    fc.assert(
      fc.property(flat, value, (headers, v) => {
        const out = applyHeaderOps(headers, [{ set: { name: "x-a", value: v } }])
        expect(headerMapOf(out)["x-a"]).toEqual([v])
      })
    )
  })
})
