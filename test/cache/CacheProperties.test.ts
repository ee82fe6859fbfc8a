/**
 * Property test of the cache's decisions, without sockets: for random request and response
 * header combinations, a first request fills the cache, the clock moves, a second request is
 * looked up; the cache never serves a response to a request it must not. Checked against the
 * library's own verdict (`http-cache-semantics` on the origin's headers) and the key rules:
 * nothing no-store / private (unless cache-private) / Set-Cookie or Authorization without
 * public is stored, an entry answers only the same host, path and kept query with matching
 * Vary fields, never a request with Authorization unless public, never past its freshness
 * without revalidation except within stale-while-revalidate and never when must-revalidate,
 * never a request that says no-cache or a max-age it exceeds; and the fast verdict from an
 * entry's stored times agrees with the library's own `evaluateRequest`.
 */
import CachePolicy from "http-cache-semantics"
import * as Duration from "effect/Duration"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ResponseCache } from "../../src/cache/Cache.js"
import { libraryVerdict, verdictOf } from "../../src/cache/CacheStage.js"
import { CacheExchange } from "../../src/cache/Exchange.js"
import { compileRules, parseCacheControl, primaryKey } from "../../src/cache/Rules.js"
import { makeConfig, RouteCacheConfig } from "../../src/config/Schema.js"
import type { RequestContext } from "../../src/pipeline/RequestContext.js"
import * as Schema from "effect/Schema"

interface Req {
  readonly host: string
  readonly path: string
  readonly query: string
  readonly headers: Record<string, string>
}

const fakeCtx = (r: Req): RequestContext =>
  ({
    method: "GET",
    scheme: "http",
    host: r.host,
    path: r.path,
    query: r.query,
    header: (n: string) => r.headers[n],
    req: { headers: { host: r.host, ...r.headers } },
    upstreamHeaders: []
  }) as unknown as RequestContext

const maybe = <A>(a: fc.Arbitrary<A>) => fc.option(a, { nil: undefined, freq: 2 })

const requestArb: fc.Arbitrary<Req> = fc.record({
  host: fc.constantFrom("a.example", "b.example"),
  path: fc.constantFrom("/x", "/y"),
  query: fc.constantFrom("", "utm_source=1", "utm_source=2", "v=1", "v=1&utm_source=3"),
  auth: maybe(fc.constantFrom("Bearer a", "Bearer b")),
  lang: maybe(fc.constantFrom("de", "fr", " de ")),
  tenant: maybe(fc.constantFrom("t1", "t2")),
  cc: maybe(fc.constantFrom("no-cache", "no-store", "max-age=0", "max-age=5", "max-stale", "max-stale=100", "min-fresh=20"))
}).map(({ host, path, query, auth, lang, tenant, cc }) => {
  const headers: Record<string, string> = {}
  if (auth !== undefined) headers["authorization"] = auth
  if (lang !== undefined) headers["accept-language"] = lang
  if (tenant !== undefined) headers["x-tenant"] = tenant
  if (cc !== undefined) headers["cache-control"] = cc
  return { host, path, query, headers }
})

const directives = ["public", "private", "no-store", "no-cache", "must-revalidate", "proxy-revalidate", "max-age=0", "max-age=10", "max-age=100",
  "s-maxage=50", "stale-while-revalidate=30", "stale-if-error=60", "immutable"]

const responseArb = fc.record({
  status: fc.constantFrom(200, 203, 301, 404, 410, 500, 206),
  cc: fc.subarray(directives, { maxLength: 3 }),
  setCookie: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  vary: maybe(fc.constantFrom("Accept-Language", "accept-language, X-Tenant", "*")),
  etag: fc.boolean(),
  expires: maybe(fc.integer({ min: -60, max: 200 }))
})

const routeArb = fc.record({
  defaultTtl: fc.constantFrom(0, 30),
  cachePrivate: fc.boolean(),
  swr: fc.constantFrom(0, 20),
  varyTenant: fc.boolean()
})

/** A second request: each part taken from the first one (mostly) or from another random request. */
const secondOf = (r1: Req): fc.Arbitrary<Req> =>
  fc.tuple(requestArb, fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 7, maxLength: 7 })).map(([o, pick]) => {
    const from = (i: number) => (pick[i] === 0 ? o : r1)
    const headers: Record<string, string> = {}
    ;(["authorization", "accept-language", "x-tenant", "cache-control"] as const).forEach((h, i) => {
      const v = from(3 + i).headers[h]
      if (v !== undefined) headers[h] = v
    })
    return { host: from(0).host, path: from(1).path, query: from(2).query, headers }
  })

describe("the cache never serves what it must not", () => {
  it("for random request and response headers and clock steps", () => {
    fc.assert(
      fc.property(routeArb, requestArb.chain((r1) => fc.tuple(fc.constant(r1), secondOf(r1))), responseArb, fc.constantFrom(0, 3, 8, 15, 40, 120, 300), (route, [r1, r2], res, dt) => {
        let now = 1_800_000_000_000
        const config = makeConfig({ listeners: [{ id: "l", address: "127.0.0.1:0" }] })
        const cache = new ResponseCache(config, {}, { now: () => now })
        const routeCache = Schema.decodeUnknownSync(RouteCacheConfig)({
          enabled: true,
          defaultTtl: Duration.seconds(route.defaultTtl),
          cachePrivate: route.cachePrivate,
          staleWhileRevalidate: Duration.seconds(route.swr),
          staleIfError: Duration.zero,
          ignoreQueryParams: ["utm_source"],
          varyHeaders: route.varyTenant ? ["X-Tenant"] : []
        })
        const rules = compileRules("r", routeCache)

        // the origin's answer to r1
        const headers: Record<string, string> = { date: new Date(now).toUTCString() }
        if (res.cc.length > 0) headers["cache-control"] = res.cc.join(", ")
        if (res.setCookie) headers["set-cookie"] = "sid=1"
        if (res.vary !== undefined) headers["vary"] = res.vary
        if (res.etag) headers["etag"] = '"e"'
        if (res.expires !== undefined) headers["expires"] = new Date(now + res.expires * 1000).toUTCString()
        const raw = Object.entries(headers).flatMap(([k, v]) => [Buffer.from(k), Buffer.from(v)])

        const x1 = new CacheExchange(cache, rules, fakeCtx(r1))
        x1.primary = primaryKey(fakeCtx(r1), rules)
        x1.filling = parseCacheControl(r1.headers["cache-control"]).get("no-store") === undefined
        const storing = x1.decideStore(res.status, raw)
        if (storing) x1.commit(res.status, raw, Buffer.from("body"))
        const stored = cache.store.allStats().get("r")?.entries === 1

        // what may never be stored, whatever the library says
        const cc = parseCacheControl(headers["cache-control"])
        const library = new CachePolicy({ method: "GET", url: "/", headers: { host: r1.host, ...r1.headers } }, { status: res.status, headers }, { shared: true })
        if (stored) {
          expect(cc.has("no-store")).toBe(false)
          expect(r1.headers["cache-control"]?.includes("no-store") ?? false).toBe(false)
          if (!route.cachePrivate) expect(cc.has("private")).toBe(false)
          if (res.setCookie || r1.headers["authorization"] !== undefined) expect(cc.has("public")).toBe(true)
          expect(res.vary).not.toBe("*")
          expect([206, 500]).not.toContain(res.status)
          // the library agrees it is storable (privately so, when the route stores private responses)
          const lib = route.cachePrivate && cc.has("private")
            ? new CachePolicy({ method: "GET", url: "/", headers: { host: r1.host, ...r1.headers } }, { status: res.status, headers }, { shared: false })
            : library
          expect(lib.storable()).toBe(true)
        }

        // the second request
        now += dt * 1000
        const x2 = new CacheExchange(cache, rules, fakeCtx(r2))
        x2.primary = primaryKey(fakeCtx(r2), rules)
        const e = cache.store.get(x2.variantOf())
        if (e === undefined) return
        const v = verdictOf(x2, e)
        // the fast path (entry times) and the library agree wherever the fast path decides
        if (r2.headers["cache-control"] === undefined) expect(v).toBe(libraryVerdict(x2, e))
        if (v !== "fresh" && v !== "stale") return
        // served without going upstream: same resource, same selecting fields, allowed to this request
        expect(r2.host).toBe(r1.host)
        expect(r2.path).toBe(r1.path)
        const kept = (q: string) => q.split("&").filter((p) => p !== "" && !p.startsWith("utm_source=")).join("&")
        expect(kept(r2.query)).toBe(kept(r1.query))
        const norm = (s: string | undefined) => s?.split(",").map((t) => t.trim()).join(", ")
        const vary = [...(res.vary ?? "").split(","), ...(route.varyTenant ? ["x-tenant"] : [])].map((s) => s.trim().toLowerCase()).filter((s) => s !== "")
        for (const name of vary) expect(norm(r2.headers[name])).toBe(norm(r1.headers[name]))
        if (r2.headers["authorization"] !== undefined) expect(cc.has("public")).toBe(true)
        const rcc = parseCacheControl(r2.headers["cache-control"])
        expect(rcc.has("no-cache")).toBe(false)
        const age = e.policy.age()
        if (rcc.has("max-age")) expect(age).toBeLessThanOrEqual(Number(rcc.get("max-age")))
        const stale = e.policy.stale()
        if (stale) {
          expect(cc.has("must-revalidate") || cc.has("proxy-revalidate") || cc.has("no-cache")).toBe(false)
          if (v === "stale") {
            const swr = cc.has("stale-while-revalidate") ? Number(cc.get("stale-while-revalidate")) : route.swr
            expect(age).toBeLessThan(e.policy.maxAge() + swr)
          }
        }
        // fresh by the library's own rules on the judged headers (route defaults), or within stale windows
        if (v === "fresh" && !stale) expect(age).toBeLessThan(e.policy.maxAge())
      }),
      { numRuns: 5000 }
    )
  })
})
