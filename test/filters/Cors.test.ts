import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compileCors, defaultCorsConfig } from "../../src/filters/Cors.js"
import { filterRequest, headerMap } from "../support/filterRequest.js"

const preflight = (origin: string, method = "PUT", headers?: string) =>
  filterRequest({
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": method, ...(headers !== undefined ? { "access-control-request-headers": headers } : {}) }
  })

describe("cors filter", () => {
  it("no Origin: not a CORS request, nothing added", () => {
    expect(compileCors(defaultCorsConfig).check(filterRequest())).toEqual({ _tag: "Continue" })
  })

  it("defaults: any origin gets `*`, preflight answered 204 with methods, max-age", () => {
    const cors = compileCors(defaultCorsConfig)
    const actual = cors.check(filterRequest({ headers: { origin: "https://x.example" } }))
    expect(actual._tag === "Continue" && headerMap(actual.responseHeaders)["access-control-allow-origin"]).toEqual(["*"])
    const pf = cors.check(preflight("https://x.example", "PUT", "X-Token, Content-Type"))
    expect(pf._tag).toBe("Respond")
    if (pf._tag === "Respond") {
      const h = headerMap(pf.headers)
      expect(pf.status).toBe(204)
      expect(h["access-control-allow-origin"]).toEqual(["*"])
      expect(h["access-control-allow-methods"]).toEqual(["GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"])
      expect(h["access-control-allow-headers"]).toEqual(["*"])
      expect(h["access-control-max-age"]).toEqual(["86400"])
    }
  })

  it("exact origins and patterns; others get only Vary: Origin; preflight from others is 403", () => {
    const cors = compileCors({ ...defaultCorsConfig, allowedOrigins: ["https://app.example", "https://*.example.com"], exposeHeaders: ["X-Trace-Id"] })
    const ok = cors.check(filterRequest({ headers: { origin: "https://a.b.example.com" } }))
    expect(ok._tag === "Continue" && headerMap(ok.responseHeaders)).toEqual({
      "access-control-allow-origin": ["https://a.b.example.com"],
      vary: ["Origin"],
      "access-control-expose-headers": ["X-Trace-Id"]
    })
    expect(cors.originAllowed("https://app.example")).toBe(true)
    expect(cors.originAllowed("https://example.com")).toBe(false)
    expect(cors.originAllowed("https://evil.com/.example.com")).toBe(false)
    expect(cors.originAllowed("https://x.example.com.evil.com")).toBe(false)
    expect(cors.originAllowed("null")).toBe(false)
    expect(cors.originAllowed("*")).toBe(false) // found by the property below: `Origin: *` was echoed
    expect(compileCors({ ...defaultCorsConfig, allowedOrigins: ["null"] }).originAllowed("null")).toBe(true)
    const bad = cors.check(filterRequest({ headers: { origin: "https://evil.example" } }))
    expect(bad).toEqual({ _tag: "Continue", responseHeaders: ["Vary", "Origin"] })
    expect(cors.check(preflight("https://evil.example"))).toMatchObject({ _tag: "Respond", status: 403 })
  })

  it("credentials: origin echoed (never `*`), Allow-Credentials true, requested headers echoed", () => {
    const cors = compileCors({ ...defaultCorsConfig, allowCredentials: true })
    const r = cors.check(filterRequest({ headers: { origin: "https://x.example" } }))
    expect(r._tag === "Continue" && headerMap(r.responseHeaders)).toMatchObject({
      "access-control-allow-origin": ["https://x.example"],
      "access-control-allow-credentials": ["true"],
      vary: ["Origin"]
    })
    const pf = cors.check(preflight("https://x.example", "POST", "x-token"))
    expect(pf._tag === "Respond" && headerMap(pf.headers)["access-control-allow-headers"]).toEqual(["x-token"])
  })

  it("preflight: method or header not allowed -> 403", () => {
    const cors = compileCors({ ...defaultCorsConfig, allowedMethods: ["GET"], allowedHeaders: ["x-ok"] })
    expect(cors.check(preflight("https://x", "DELETE"))).toMatchObject({ _tag: "Respond", status: 403 })
    expect(cors.check(preflight("https://x", "GET", "x-ok, x-bad"))).toMatchObject({ _tag: "Respond", status: 403 })
    expect(cors.check(preflight("https://x", "GET", "X-Ok"))).toMatchObject({ _tag: "Respond", status: 204 })
  })

  it("property: with credentials `*` is never the allowed origin, and any allowed answer varies on Origin", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("*", "https://a.example", "https://*.example.com", "null"), { maxLength: 3 }),
        fc.oneof(fc.webUrl(), fc.constantFrom("null", "https://x.example.com", "*")),
        fc.boolean(),
        fc.boolean(),
        (origins, origin, credentials, isPreflight) => {
          const cors = compileCors({ ...defaultCorsConfig, allowedOrigins: origins, allowCredentials: credentials })
          const out = cors.check(isPreflight ? preflight(origin, "GET") : filterRequest({ headers: { origin } }))
          const h = headerMap(out._tag === "Continue" ? out.responseHeaders : out.headers)
          const acao = h["access-control-allow-origin"]
          if (credentials && acao !== undefined) {
            expect(acao).toEqual([origin])
            expect(acao).not.toEqual(["*"])
          }
          if (acao !== undefined && acao[0] !== "*") expect((h.vary ?? []).join(",")).toContain("Origin")
        }
      )
    )
  })
})
