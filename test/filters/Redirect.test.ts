import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { applyPathModifier } from "../../src/filters/PathModifier.js"
import { validateRedirect, validateTimeoutFilter } from "../../src/config/FilterChecks.js"
import { defaultRedirectConfig, redirect } from "../../src/filters/Redirect.js"
import { effectiveTimeouts } from "../../src/filters/Timeout.js"
import { urlRewrite } from "../../src/filters/UrlRewrite.js"
import { filterRequest, headerMap } from "../support/filterRequest.js"

const location = (o: ReturnType<typeof redirect>) => (o._tag === "Respond" ? headerMap(o.headers).location?.[0] : undefined)

describe("path modifiers", () => {
  const cases: ReadonlyArray<[string, string, string, string]> = [
    // [matched prefix, replacement, path, expected]
    ["/foo", "/bar", "/foo/x", "/bar/x"],
    ["/foo", "/bar", "/foo", "/bar"],
    ["/foo/", "/bar", "/foo/x/y", "/bar/x/y"],
    ["/foo", "/", "/foo/x", "/x"],
    ["/foo", "/", "/foo", "/"],
    ["/foo", "/bar", "/foobar", "/foobar"], // not at a segment boundary
    ["/", "/v2", "/x", "/v2/x"]
  ]
  for (const [prefix, repl, path, expected] of cases) {
    it(`prefix ${prefix} -> ${repl}: ${path} => ${expected}`, () => {
      expect(applyPathModifier({ _tag: "ReplacePrefixMatch", prefix: repl }, path, prefix)).toBe(expected)
    })
  }
  it("property: result always starts with a single '/' component when the replacement does", () => {
    fc.assert(
      fc.property(fc.webPath(), fc.webPath(), fc.webPath(), (p, prefix, repl) => {
        const out = applyPathModifier({ _tag: "ReplacePrefixMatch", prefix: "/" + repl.replace(/^\/+/, "") }, "/" + p.replace(/^\/+/, ""), "/" + prefix.replace(/^\/+/, ""))
        expect(out.startsWith("/")).toBe(true)
        expect(out.startsWith("//")).toBe(false)
      })
    )
  })
})

describe("redirect filter", () => {
  it("302 by default, keeps scheme/host/port/path/query", () => {
    const o = redirect(defaultRedirectConfig, filterRequest({ path: "/a", query: "q=1" }), 8080)
    expect(o).toMatchObject({ _tag: "Respond", status: 302 })
    expect(location(o)).toBe("http://a.example:8080/a?q=1")
  })

  it("http -> https drops the old port; explicit port kept unless default", () => {
    const cfg = { ...defaultRedirectConfig, statusCode: 301 as const, scheme: "https" as const }
    expect(location(redirect(cfg, filterRequest({ path: "/x" }), 8080))).toBe("https://a.example/x")
    expect(location(redirect({ ...cfg, port: 8443 }, filterRequest({ path: "/x" })))).toBe("https://a.example:8443/x")
    expect(location(redirect({ ...cfg, port: 443 }, filterRequest({ path: "/x" })))).toBe("https://a.example/x")
  })

  it("hostname and path replacement", () => {
    const cfg = { ...defaultRedirectConfig, hostname: "new.example", path: { _tag: "ReplacePrefixMatch" as const, prefix: "/v2" } }
    expect(location(redirect(cfg, filterRequest({ path: "/v1/users" }), null, "/v1"))).toBe("http://new.example/v2/users")
    const full = { ...defaultRedirectConfig, path: { _tag: "ReplaceFullPath" as const, path: "/maintenance" } }
    expect(location(redirect(full, filterRequest({ path: "/any" })))).toBe("http://a.example/maintenance")
  })

  it("validation rejects values that would corrupt Location", () => {
    expect(validateRedirect({ ...defaultRedirectConfig, hostname: "evil.com/x" })).toHaveLength(1)
    expect(validateRedirect({ ...defaultRedirectConfig, port: 70000 })).toHaveLength(1)
    expect(validateRedirect({ ...defaultRedirectConfig, path: { _tag: "ReplaceFullPath", path: "//evil.com" } })).toEqual([])
    expect(validateRedirect({ ...defaultRedirectConfig, path: { _tag: "ReplaceFullPath", path: "x\r\n" } })).toHaveLength(1)
  })
})

describe("url-rewrite filter", () => {
  it("rewrites host and path for the upstream only", () => {
    const o = urlRewrite({ hostname: "internal", path: { _tag: "ReplacePrefixMatch", prefix: "/" } }, filterRequest({ path: "/api/users" }), "/api")
    expect(o).toEqual({ _tag: "Continue", rewrite: { host: "internal", path: "/users" } })
    expect(urlRewrite({ hostname: null, path: null }, filterRequest())).toEqual({ _tag: "Continue", rewrite: {} })
  })
})

describe("timeout filter", () => {
  it("later filters override the base values that they set", () => {
    const base = { requestMs: 60_000, upstreamMs: 30_000, connectMs: 5_000 }
    expect(
      effectiveTimeouts(base, [
        { requestTimeoutSecs: 10, upstreamTimeoutSecs: null, connectTimeoutSecs: 1 },
        { requestTimeoutSecs: null, upstreamTimeoutSecs: 2, connectTimeoutSecs: null }
      ])
    ).toEqual({ requestMs: 10_000, upstreamMs: 2_000, connectMs: 1_000 })
    expect(validateTimeoutFilter({ requestTimeoutSecs: 0, upstreamTimeoutSecs: -1, connectTimeoutSecs: 1 })).toHaveLength(2)
  })
})
