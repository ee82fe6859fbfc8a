import * as Either from "effect/Either"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { firstUnprintable, formatIssue } from "../../src/config/ConfigIssue.js"
import { decodeKdl, maxNesting } from "../../src/config/Kdl.js"
import { encodeKdl } from "../../src/config/KdlEncode.js"
import { decodeConfig, encodeConfig } from "../../src/config/Schema.js"
import { arbitraryConfig } from "../support/configArbitrary.js"

const kdlish = fc.string({
  unit: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom("listeners", "listener", "upstream", "route", "routes", "matches", "target", "address", "weight=", "include", "system", "limits", "policies", "set", "rename", "filters", "filter", "type", "agents", "agent", "unix-socket", "config", "health-check", "load-balancing", "static-files", "retry-policy", "tracing", "backend", "circuit-breaker", "\"sticky\"", "\"agent\"", "\"headers\"", "admin #true") },
    { weight: 3, arbitrary: fc.constantFrom("{", "}", ";", "\n", " ", "\"", "=", "#true", "#null", "/-", "//", "/*", "*/", "\\", "r#\"", "\"#", "(", ")") },
    { weight: 2, arbitrary: fc.constantFrom("\"127.0.0.1:80\"", "\"/\"", "1", "-1", "1e400", "9007199254740993", "0x1F", "1.5", "\"${X}\"", "\"a\"") },
    { weight: 1, arbitrary: fc.char() }
  ),
  maxLength: 80
})

/** Every issue must carry a usable position. */
const wellFormed = (r: ReturnType<typeof decodeKdl>) => {
  for (const i of [...r.errors, ...r.warnings]) {
    expect(i.line).toBeGreaterThanOrEqual(1)
    expect(i.col).toBeGreaterThanOrEqual(1)
    expect(i.message.length).toBeGreaterThan(0)
  }
  expect(r.config === undefined).toBe(r.errors.length > 0)
}

describe("KDL decoder properties", () => {
  it("generated configs are valid for the schema (the arbitrary is sound)", () => {
    fc.assert(fc.property(arbitraryConfig, (c) => {
      expect(Either.isRight(decodeConfig(encodeConfig(c)))).toBe(true)
    }), { numRuns: 30 })
  })

  it("any valid config written as KDL decodes back to the same config", () => {
    fc.assert(fc.property(arbitraryConfig, (c) => {
      // the arbitrary's worker-threads go up to 64: 4 per core of a 16-core machine, whatever this one has
      const r = decodeKdl(encodeKdl(c), { file: "gen.kdl", cores: 16 })
      expect(r.errors).toEqual([])
      expect(r.config).toEqual(c)
    }), { numRuns: 100 })
  })

  it("random KDL-ish text never throws; it yields a config or located errors", () => {
    fc.assert(fc.property(kdlish, (text) => {
      wellFormed(decodeKdl(text, { file: "f.kdl", env: {} }))
    }), { numRuns: 500 })
  })

  it("regression: parser errors reported at column 0 are clamped to 1 (found by the property above)", () => {
    const r = decodeKdl(`r#""#`, { file: "f.kdl" })
    expect(r.errors.length).toBeGreaterThan(0)
    wellFormed(r)
  })

  it("an id with any control, format or separator character is refused, and the error prints escaped", () => {
    const printable = fc.string({ unit: fc.oneof(fc.char(), fc.constantFrom("é", "☃", "-")), maxLength: 6 })
    const bad = fc.oneof(
      fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }), fc.integer({ min: 0x200b, max: 0x200f }),
      fc.integer({ min: 0x202a, max: 0x202e }), fc.integer({ min: 0x2066, max: 0x2069 }),
      fc.constantFrom(0x00ad, 0x061c, 0x2028, 0x2029, 0x2060, 0xfeff, 0xe0001)
    )
    // as a KDL escape (the document stays valid KDL v2) or raw (then read as v1 or refused as KDL)
    const kdlChar = (cp: number, raw: boolean) => (raw ? String.fromCodePoint(cp) : `\\u{${cp.toString(16)}}`)
    const quote = (s: string) => s.replace(/[\\"]/g, "\\$&")
    fc.assert(fc.property(printable, bad, printable, fc.boolean(), fc.constantFrom("listener", "upstream", "route"), (pre, cp, post, raw, kind) => {
      const id = `"${quote(pre)}${kdlChar(cp, raw)}${quote(post)}"`
      const doc = kind === "listener"
        ? `listeners { listener ${id} { address "127.0.0.1:1"; }; }`
        : `listeners { listener "m" { address "127.0.0.1:1"; }; }\n${kind}s { ${kind} ${id} { ${kind === "upstream" ? `target "h:1"` : `builtin-handler "status"`}; }; }`
      const r = decodeKdl(doc, { file: "f.kdl", env: {} })
      wellFormed(r)
      expect(r.errors.length).toBeGreaterThan(0)
      for (const i of r.errors) expect(firstUnprintable(formatIssue(i))).toBeUndefined()
    }), { numRuns: 300 })
  })

  it("nesting is refused exactly beyond the limit, whatever strings and comments with braces lie between", () => {
    const filler = fc.constantFrom("", " \"{\"", " \"}}\\\"{\"", " #\"{\"#", " ##\"\"#{\"##", " /* { /* } */ { */", " \\ // {{\n", " /-{ }", " \\\n")
    fc.assert(fc.property(fc.integer({ min: 1, max: 3 * maxNesting }), fc.array(filler, { maxLength: 8 }), (depth, fill) => {
      let doc = ""
      for (let d = 0; d < depth; d++) doc += `a${fill[d % Math.max(1, fill.length)] ?? ""} {\n`
      doc += "}\n".repeat(depth)
      const r = decodeKdl(doc, { file: "f.kdl", env: {} })
      wellFormed(r)
      if (depth > maxNesting) expect(r.errors.map((e) => e.message)).toEqual([`nesting deeper than ${maxNesting} levels of { } blocks`])
      // the document is valid KDL: only its content is wrong
      else expect(r.errors.map((e) => e.message)).toEqual(["unknown node `a` at the top level", expect.stringContaining("no listener defined")])
    }), { numRuns: 200 })
  })

  it("random mutations of valid documents never throw", () => {
    const mutation = fc.record({
      at: fc.nat(),
      del: fc.nat({ max: 8 }),
      insert: fc.oneof(kdlish, fc.constantFrom("", "x", "-", "0", "#false", "{ }", "\"", "\n}"))
    })
    fc.assert(fc.property(arbitraryConfig, fc.array(mutation, { minLength: 1, maxLength: 4 }), (c, muts) => {
      let text = encodeKdl(c)
      for (const m of muts) {
        const at = m.at % (text.length + 1)
        text = text.slice(0, at) + m.insert + text.slice(at + m.del)
      }
      wellFormed(decodeKdl(text, { file: "m.kdl", env: {} }))
    }), { numRuns: 100 })
  })
})
