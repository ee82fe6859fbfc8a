/**
 * Header handling on the hot path against naive reference implementations: the length
 * prefilter of `nameMatcher`, the single-token shortcut of `connectionTokens` and the
 * compiled policies must decide exactly what lower-casing every name would.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { compileHeaderOps, connectionTokens, isHopByHop, nameMatcher, removeHeaders, stripHopByHop, HOP_BY_HOP } from "../../src/pipeline/Headers.js"

const known = ["connection", "keep-alive", "te", "x-served-by", "content-length", "server", "date", "x-a", "set-cookie"]
/** Header names: known ones in random case, or random tokens (some of the same lengths). */
const arbName = fc.oneof(
  fc.constantFrom(...known).chain((n) =>
    fc.array(fc.boolean(), { minLength: n.length, maxLength: n.length }).map((up) => [...n].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(""))
  ),
  fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/)
)
const arbFlat = fc.array(fc.tuple(arbName, fc.stringMatching(/^[ -~]{0,12}$/)), { maxLength: 12 }).map((pairs) => pairs.flat())

const naiveRemove = (flat: ReadonlyArray<string>, names: ReadonlySet<string>) => {
  const out: Array<string> = []
  for (let i = 0; i < flat.length; i += 2) if (!names.has(flat[i].toLowerCase())) out.push(flat[i], flat[i + 1])
  return out
}

describe("Headers", () => {
  it("nameMatcher decides as a lower-cased set lookup", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...known), { maxLength: 4 }), arbName, (names, name) => {
        const set = new Set(names)
        expect(nameMatcher(set)(name)).toBe(set.has(name.toLowerCase()))
        expect(isHopByHop(name)).toBe(HOP_BY_HOP.has(name.toLowerCase()))
      })
    )
  })

  it("connectionTokens: the listed names except close and keep-alive, lower-cased", () => {
    const arbValue = fc.array(fc.oneof(arbName, fc.constantFrom("close", "Keep-Alive", " ", "")), { maxLength: 4 }).map((ts) => ts.join(","))
    fc.assert(
      fc.property(arbValue, (value) => {
        const expected = new Set(
          value
            .split(",")
            .map((t) => t.trim().toLowerCase())
            .filter((t) => t !== "" && t !== "close" && t !== "keep-alive")
        )
        const got = connectionTokens(value)
        expect(got === undefined ? [] : [...got].sort()).toEqual([...expected].sort())
      })
    )
  })

  it("stripHopByHop drops hop-by-hop headers and those Connection names", () => {
    fc.assert(
      fc.property(arbFlat, (flat) => {
        const named = new Set<string>()
        for (let i = 0; i < flat.length; i += 2) {
          if (flat[i].toLowerCase() === "connection") for (const t of connectionTokens(flat[i + 1]) ?? []) named.add(t)
        }
        expect(stripHopByHop(flat)).toEqual(naiveRemove(flat, new Set([...HOP_BY_HOP, ...named])))
      })
    )
  })

  it("a compiled policy renames, sets, adds and removes as the naive reading of the block", () => {
    const arbOps = fc.record({
      rename: fc.array(fc.tuple(fc.constantFrom(...known), fc.constantFrom("X-Renamed", "x-other")), { maxLength: 2 }),
      set: fc.array(fc.tuple(fc.constantFrom("X-Served-By", "server", "X-A"), fc.constantFrom("v1", "v2")), { maxLength: 2 }),
      add: fc.array(fc.tuple(fc.constantFrom("x-a", "Via"), fc.constantFrom("a1", "a2")), { maxLength: 2 }),
      remove: fc.array(fc.constantFrom("Server", "date", "x-a"), { maxLength: 2 })
    })
    fc.assert(
      fc.property(arbOps, arbFlat, (ops, flat) => {
        const expected = [...flat]
        const renames = new Map(ops.rename.map(([from, to]) => [from.toLowerCase(), to]))
        for (let i = 0; i < expected.length; i += 2) expected[i] = renames.get(expected[i].toLowerCase()) ?? expected[i]
        let out = naiveRemove(expected, new Set(ops.set.map(([n]) => n.toLowerCase())))
        for (const [n, v] of [...ops.set, ...ops.add]) out.push(n, v)
        out = naiveRemove(out, new Set(ops.remove.map((n) => n.toLowerCase())))
        const policy = compileHeaderOps(ops)
        const got = [...flat]
        policy?.(got)
        expect(got).toEqual(policy === undefined ? flat : out)
      })
    )
  })

  it("removeHeaders takes a set or a matcher alike", () => {
    fc.assert(
      fc.property(arbFlat, fc.array(fc.constantFrom(...known), { maxLength: 3 }), (flat, names) => {
        const set = new Set(names)
        const a = [...flat]
        const b = [...flat]
        removeHeaders(a, set)
        removeHeaders(b, nameMatcher(set))
        expect(a).toEqual(naiveRemove(flat, set))
        expect(b).toEqual(a)
      })
    )
  })
})
