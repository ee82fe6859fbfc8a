import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { validateHeadersFilter } from "../../src/config/FilterChecks.js"
import { compileHeaderEdit, defaultHeadersFilterConfig, makeHeadersFilter } from "../../src/filters/Headers.js"
import { applySecurityHeaders, defaultSecurityHeadersConfig } from "../../src/filters/SecurityHeaders.js"
import { headerMap } from "../support/filterRequest.js"

describe("headers filter", () => {
  it("rename, set, add, remove in that order, case-insensitive", () => {
    const edit = compileHeaderEdit({
      ...defaultHeadersFilterConfig,
      rename: [["X-Old", "X-New"]],
      set: [["X-Env", "prod"]],
      add: [["X-Add", "1"]],
      remove: ["server", "X-Gone"]
    })
    const flat = ["x-old", "v", "X-ENV", "dev", "x-env", "dev2", "Server", "nginx", "x-gone", "g", "X-Add", "0"]
    edit(flat)
    expect(headerMap(flat)).toEqual({ "x-new": ["v"], "x-add": ["0", "1"], "x-env": ["prod"] })
  })

  it("phase selects request, response or both", () => {
    const cfg = { ...defaultHeadersFilterConfig, set: [["X-A", "1"]] as const }
    const req = makeHeadersFilter({ ...cfg, phase: "request" })
    const res = makeHeadersFilter({ ...cfg, phase: "response" })
    const both = makeHeadersFilter({ ...cfg, phase: "both" })
    const run = (f: (x: Array<string>) => void) => {
      const x: Array<string> = []
      f(x)
      return x.length
    }
    expect([run(req.onRequest), run(req.onResponse), run(res.onRequest), run(res.onResponse), run(both.onRequest), run(both.onResponse)]).toEqual([2, 0, 0, 2, 2, 2])
  })

  it("validation refuses framing headers, bad names and control characters", () => {
    expect(validateHeadersFilter({ ...defaultHeadersFilterConfig, set: [["Content-Length", "1"]] })).toHaveLength(1)
    expect(validateHeadersFilter({ ...defaultHeadersFilterConfig, add: [["Bad Name", "1"]] })).toHaveLength(1)
    expect(validateHeadersFilter({ ...defaultHeadersFilterConfig, add: [["X", "a\r\nb"]] })).toHaveLength(1)
    expect(validateHeadersFilter({ ...defaultHeadersFilterConfig, rename: [["X-A", "Transfer-Encoding"]] })).toHaveLength(1)
    expect(validateHeadersFilter({ ...defaultHeadersFilterConfig, remove: ["Server"], set: [["X-A", "ok"]] })).toEqual([])
  })

  it("property: after an edit, set names have exactly the set value and removed names are absent", () => {
    const name = fc.constantFrom("x-a", "X-A", "x-b", "X-B", "x-c", "server")
    fc.assert(
      fc.property(
        fc.array(fc.tuple(name, fc.string({ maxLength: 3 })), { maxLength: 10 }),
        fc.array(fc.tuple(name, fc.string({ maxLength: 3 })), { maxLength: 3 }),
        fc.array(name, { maxLength: 3 }),
        (initial, set, remove) => {
          const flat = initial.flat()
          compileHeaderEdit({ ...defaultHeadersFilterConfig, set, remove })(flat)
          const m = headerMap(flat)
          const removed = new Set(remove.map((n) => n.toLowerCase()))
          for (const n of removed) expect(m[n]).toBeUndefined()
          for (const [n] of set) {
            if (removed.has(n.toLowerCase())) continue
            expect(m[n.toLowerCase()]).toEqual(set.filter(([s]) => s.toLowerCase() === n.toLowerCase()).map(([, v]) => v))
          }
        }
      )
    )
  })
})

describe("security-headers preset", () => {
  it("adds the defaults; HSTS only over https", () => {
    const flat: Array<string> = []
    applySecurityHeaders(defaultSecurityHeadersConfig, flat, "https")
    expect(headerMap(flat)).toEqual({
      "strict-transport-security": ["max-age=31536000; includeSubDomains"],
      "x-content-type-options": ["nosniff"],
      "x-frame-options": ["DENY"],
      "referrer-policy": ["strict-origin-when-cross-origin"]
    })
    const plain: Array<string> = []
    applySecurityHeaders(defaultSecurityHeadersConfig, plain, "http")
    expect(headerMap(plain)["strict-transport-security"]).toBeUndefined()
  })

  it("upstream values win unless override; configurable and disableable", () => {
    const flat = ["X-Frame-Options", "SAMEORIGIN"]
    applySecurityHeaders(defaultSecurityHeadersConfig, flat, "http")
    expect(headerMap(flat)["x-frame-options"]).toEqual(["SAMEORIGIN"])
    const over = ["X-Frame-Options", "SAMEORIGIN", "x-frame-options", "ALLOW"]
    applySecurityHeaders({ ...defaultSecurityHeadersConfig, override: true }, over, "http")
    expect(headerMap(over)["x-frame-options"]).toEqual(["DENY"])
    const custom: Array<string> = []
    applySecurityHeaders({ ...defaultSecurityHeadersConfig, frameOptions: null, contentSecurityPolicy: "default-src 'self'" }, custom, "http")
    expect(headerMap(custom)["x-frame-options"]).toBeUndefined()
    expect(headerMap(custom)["content-security-policy"]).toEqual(["default-src 'self'"])
  })
})
