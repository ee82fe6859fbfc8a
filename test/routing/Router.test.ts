/**
 * Route matching: Sentinel's semantics as examples, and properties against a
 * brute-force oracle.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import type { RouteConfig, RouteMatch } from "../../src/config/Schema.js"
import { compileRoute, makeRouter, normalizeHost, prefixMatches, type MatchInput } from "../../src/routing/Router.js"

const noHeaders = { method: "GET", host: "", query: "", header: () => undefined }
const input = (over: Partial<MatchInput> & { path: string }): MatchInput => ({ ...noHeaders, ...over })

const route = (id: string, matches: Array<RouteMatch>, priority = 50): RouteConfig =>
  ({
    id,
    priority,
    matches,
    upstream: "u",
    policies: { requestHeaders: { rename: [], set: [], add: [], remove: [] }, responseHeaders: { rename: [], set: [], add: [], remove: [] } }
  }) as unknown as RouteConfig

describe("Router examples", () => {
  it("path-prefix matches on segment boundaries", () => {
    expect(prefixMatches("/v2", "/v2")).toBe(true)
    expect(prefixMatches("/v2", "/v2/users")).toBe(true)
    expect(prefixMatches("/v2", "/v2x")).toBe(false)
    expect(prefixMatches("/v2/", "/v2/x")).toBe(true)
    expect(prefixMatches("/", "/anything")).toBe(true)
  })

  it("strips ports and lower-cases hosts, including IPv6 literals", () => {
    expect(normalizeHost("Example.COM:8080")).toBe("example.com")
    expect(normalizeHost("[::1]:80")).toBe("[::1]")
    expect(normalizeHost(undefined)).toBe("")
  })

  it("orders by priority, then specificity: exact > regex > longer prefix > shorter prefix", () => {
    const r = makeRouter([
      route("root", [{ _tag: "PathPrefix", prefix: "/" }]),
      route("api", [{ _tag: "PathPrefix", prefix: "/api" }]),
      route("regex", [{ _tag: "PathRegex", pattern: "^/api/v[0-9]+/users$" }]),
      route("exact", [{ _tag: "Path", path: "/api/v1/users" }]),
      route("urgent", [{ _tag: "PathPrefix", prefix: "/api/urgent" }], 1000)
    ])
    expect(r.match(input({ path: "/api/v1/users" }))?.id).toBe("exact")
    expect(r.match(input({ path: "/api/v2/users" }))?.id).toBe("regex")
    expect(r.match(input({ path: "/api/other" }))?.id).toBe("api")
    expect(r.match(input({ path: "/apix" }))?.id).toBe("root")
    expect(r.match(input({ path: "/api/urgent/x" }))?.id).toBe("urgent")
  })

  it("ANDs conditions and ORs hosts; wildcard hosts need a label before the suffix", () => {
    const r = makeRouter([
      route("hosts", [
        { _tag: "Host", host: "a.example.com" },
        { _tag: "Host", host: "*.test.io" },
        { _tag: "PathPrefix", prefix: "/x" },
        { _tag: "Method", methods: ["GET", "HEAD"] },
        { _tag: "Header", name: "X-Env", value: "prod" },
        { _tag: "QueryParam", name: "debug" }
      ])
    ])
    const ok = input({
      path: "/x/1",
      host: "a.example.com",
      query: "debug=1",
      header: (n) => (n === "x-env" ? "prod" : undefined)
    })
    expect(r.match(ok)?.id).toBe("hosts")
    expect(r.match({ ...ok, host: "b.test.io" })?.id).toBe("hosts")
    expect(r.match({ ...ok, host: "test.io" })).toBeUndefined()
    expect(r.match({ ...ok, method: "POST" })).toBeUndefined()
    expect(r.match({ ...ok, query: "" })).toBeUndefined()
    expect(r.match({ ...ok, header: () => "dev" })).toBeUndefined()
    expect(r.match({ ...ok, path: "/y" })).toBeUndefined()
  })

  it("keeps document order among equal routes", () => {
    const r = makeRouter([route("first", [{ _tag: "PathPrefix", prefix: "/a" }]), route("second", [{ _tag: "PathPrefix", prefix: "/a" }])])
    expect(r.match(input({ path: "/a" }))?.id).toBe("first")
  })
})

const segment = fc.constantFrom("a", "b", "api", "v1", "v2", "x")
const pathArb = fc.array(segment, { minLength: 0, maxLength: 4 }).map((s) => "/" + s.join("/"))
const hostArb = fc.constantFrom("", "a.com", "b.a.com", "c.org")
const matchArb: fc.Arbitrary<RouteMatch> = fc.oneof(
  pathArb.map((path) => ({ _tag: "Path" as const, path })),
  pathArb.map((prefix) => ({ _tag: "PathPrefix" as const, prefix })),
  fc.constantFrom("a.com", "*.a.com", "c.org").map((host) => ({ _tag: "Host" as const, host })),
  fc.subarray(["GET", "POST", "PUT"], { minLength: 1 }).map((methods) => ({ _tag: "Method" as const, methods })),
  fc.record({ name: fc.constantFrom("q", "r"), value: fc.option(fc.constantFrom("1", "2"), { nil: undefined }) }).map((q) => ({
    _tag: "QueryParam" as const,
    ...q
  }))
)
const routesArb = fc.array(
  fc.record({ matches: fc.array(matchArb, { maxLength: 3 }), priority: fc.constantFrom(10, 50, 100) }),
  { minLength: 1, maxLength: 8 }
).map((rs) => rs.map((r, i) => route(`r${i}`, r.matches, r.priority)))
const requestArb = fc.record({
  path: pathArb,
  host: hostArb,
  method: fc.constantFrom("GET", "POST", "PUT"),
  query: fc.constantFrom("", "q=1", "r=2", "q=2&r=1")
}).map((r) => input(r))

describe("Router properties", () => {
  it("returns a route iff one matches, and it is the best by (priority, specificity, order)", () => {
    fc.assert(
      fc.property(routesArb, requestArb, (routes, req) => {
        const router = makeRouter(routes)
        const q = () => new URLSearchParams(req.query)
        const compiled = routes.map(compileRoute)
        const matching = compiled.filter((c) => c.matches(req, q))
        const chosen = router.match(req)
        if (matching.length === 0) return chosen === undefined
        const best = [...matching].sort((a, b) => b.priority - a.priority || b.specificity - a.specificity || a.index - b.index)[0]
        return chosen?.id === best.id
      }),
      { numRuns: 500 }
    )
  })

  it("a prefix matches exactly the paths equal to it or continuing at a segment boundary", () => {
    fc.assert(
      fc.property(pathArb, pathArb, fc.constantFrom("", "x", "/", "/y"), (prefix, base, tail) => {
        const path = base + tail
        const expected = prefix === "/" || path === prefix || path.startsWith(prefix.endsWith("/") ? prefix : prefix + "/")
        return prefixMatches(prefix, path) === expected
      }),
      { numRuns: 500 }
    )
  })
})
