import { Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { decodeKdl } from "../../src/config/Kdl.js"
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
