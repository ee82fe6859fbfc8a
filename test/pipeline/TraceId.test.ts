/** Trace ids: generated ids are short, base58, unique and time-ordered; client ids are reused only when sane. */
import { describe, expect, it } from "@effect/vitest"
import { incomingTraceId, tinyflake } from "../../src/pipeline/TraceId.js"

describe("trace ids", () => {
  it("tinyflake: 11 base58 characters, unique within a burst, sortable by time prefix", () => {
    const ids = Array.from({ length: 1000 }, tinyflake)
    for (const id of ids) expect(id).toMatch(/^[1-9A-HJ-NP-Za-km-z]{11}$/)
    expect(new Set(ids).size).toBe(ids.length)
    const prefixes = ids.map((id) => id.slice(0, 7))
    expect([...prefixes].sort()).toEqual(prefixes)
  })

  it("tinyflake: the first 7 characters are the current millisecond in base58, the last 4 a counter and random bits", () => {
    const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    const decode = (s: string) => [...s].reduce((n, c) => n * 58 + alphabet.indexOf(c), 0)
    for (let i = 0; i < 200; i++) {
      const before = Date.now()
      const id = tinyflake()
      const after = Date.now()
      const ms = decode(id.slice(0, 7))
      expect(ms).toBeGreaterThanOrEqual(before)
      expect(ms).toBeLessThanOrEqual(after)
      expect(decode(id.slice(7))).toBeLessThan(1024 * 8192)
    }
  })

  it("reuses X-Request-Id / X-Correlation-Id / X-Trace-Id in that order, and rejects unsafe values", () => {
    const h = (m: Record<string, string>) => (n: string) => m[n]
    expect(incomingTraceId(h({ "x-request-id": "abc-1", "x-trace-id": "t" }))).toBe("abc-1")
    expect(incomingTraceId(h({ "x-correlation-id": "c:2" }))).toBe("c:2")
    expect(incomingTraceId(h({ "x-request-id": "bad\nvalue", "x-trace-id": "ok" }))).toBe("ok")
    expect(incomingTraceId(h({ "x-request-id": "x".repeat(129) }))).toBeUndefined()
  })
})
