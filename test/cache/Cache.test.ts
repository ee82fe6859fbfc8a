/**
 * The response cache through the real proxy (RFC 9111 / RFC 9211 tables), against an origin
 * that counts its requests; expiry under the cache's test clock (no sleeps): hits and misses,
 * Age and Cache-Status, HEAD from a cached GET, expiry, Vary, revalidation with 304,
 * stale-while-revalidate (one background refresh), stale-if-error (origin down, 5xx), the host
 * in the key, Authorization and Set-Cookie, ignore-query-params, bypass.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import { metricSum, request, startProxy, testConfig, waitUntil, type ProxyHandle } from "../support/proxy.js"
import { startCacheOrigin, type CacheOrigin } from "./cacheOrigin.js"

let origin: CacheOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope
let now = Date.parse("2026-03-01T10:00:00Z")
const advance = (secs: number) => (now += secs * 1000)

const route = (id: string, prefix: string, cache: object) => ({
  id,
  priority: 100,
  matches: [{ _tag: "PathPrefix" as const, prefix }],
  upstream: "o",
  cache: { enabled: true, staleWhileRevalidate: Duration.zero, staleIfError: Duration.zero, ...cache }
})

beforeAll(async () => {
  origin = await startCacheOrigin()
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
        routes: [
          route("plain", "/plain", {}),
          route("swr", "/swr", { staleWhileRevalidate: Duration.seconds(60) }),
          route("sie", "/sie", { staleIfError: Duration.seconds(300) }),
          route("q", "/q", { ignoreQueryParams: ["utm_source"], varyHeaders: ["X-Tenant"] }),
          route("nottl", "/nottl", { defaultTtl: Duration.zero }),
          route("ttl", "/ttl", { defaultTtl: Duration.seconds(30) }),
          route("priv", "/priv", { cachePrivate: true }),
          route("ex", "/ex", { excludeExtensions: ["php"], excludePaths: ["/ex/admin"] }),
          { id: "nocache", matches: [{ _tag: "PathPrefix" as const, prefix: "/" }], upstream: "o" }
        ],
        cache: { statusHeader: true, lockTimeout: Duration.seconds(5) }
      } as Partial<SentinelConfigInput>),
      { cacheClock: () => now }
    ).pipe(Scope.extend(scope))
  )
})
afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
})
beforeEach(() => advance(3600))

const get = (path: string, headers: Record<string, string> = {}, method = "GET") => request(proxy.port, { path, headers, method })

describe("hits and misses", () => {
  it("a fresh response is served from the cache: one origin request, Age, Cache-Status hit with its ttl", async () => {
    origin.on("/plain/a", { headers: { "cache-control": "max-age=60", "content-type": "text/plain" }, body: "alpha" })
    const first = await get("/plain/a")
    expect(first.status).toBe(200)
    expect(first.headers["cache-status"]).toBe("sentinel; fwd=miss; stored")
    advance(10)
    const second = await get("/plain/a")
    expect(second.body.toString()).toBe("alpha")
    expect(second.headers["cache-status"]).toBe("sentinel; hit; ttl=50")
    expect(second.headers["age"]).toBe("10")
    expect(second.headers["content-type"]).toBe("text/plain")
    expect(second.headers["content-length"]).toBe("5")
    expect(second.headers["x-request-id"]).toBeDefined()
    expect(origin.count("/plain/a")).toBe(1)
    expect(await metricSum(proxy, "sentinel_cache_requests_total", { route: "plain", result: "hit" })).toBeGreaterThanOrEqual(1)
  })

  it("HEAD is answered from a cached GET (head only)", async () => {
    origin.on("/plain/head", { headers: { "cache-control": "max-age=60" }, body: "0123456789" })
    await get("/plain/head")
    const head = await get("/plain/head", {}, "HEAD")
    expect(head.status).toBe(200)
    expect(head.headers["content-length"]).toBe("10")
    expect(head.body.length).toBe(0)
    expect(head.headers["cache-status"]).toMatch(/^sentinel; hit/)
    expect(origin.count("/plain/head")).toBe(1)
  })

  it("expires after max-age under the test clock; s-maxage wins over max-age; Expires counts from Date", async () => {
    origin.on("/plain/exp", (_req, n) => ({ headers: { "cache-control": "max-age=10" }, body: `v${n}` }))
    expect((await get("/plain/exp")).body.toString()).toBe("v1")
    advance(9)
    expect((await get("/plain/exp")).body.toString()).toBe("v1")
    advance(2)
    expect((await get("/plain/exp")).body.toString()).toBe("v2")

    origin.on("/plain/smax", (_req, n) => ({ headers: { "cache-control": "max-age=1, s-maxage=100" }, body: `s${n}` }))
    await get("/plain/smax")
    advance(50)
    expect((await get("/plain/smax")).body.toString()).toBe("s1")

    origin.on("/plain/expires", (_req, n) => ({
      headers: { date: new Date(now).toUTCString(), expires: new Date(now + 20_000).toUTCString() },
      body: `e${n}`
    }))
    await get("/plain/expires")
    advance(19)
    expect((await get("/plain/expires")).body.toString()).toBe("e1")
    advance(2)
    expect((await get("/plain/expires")).body.toString()).toBe("e2")
  })

  it("no-store, private and no freshness with default-ttl-secs 0 are not stored; no-cache is revalidated each time", async () => {
    for (const [path, cc] of [["/plain/ns", "no-store"], ["/plain/pv", "private, max-age=60"]] as const) {
      origin.on(path, { headers: { "cache-control": cc }, body: "x" })
      await get(path)
      const again = await get(path)
      expect(again.headers["cache-status"]).toContain("fwd=miss")
      expect(origin.count(path)).toBe(2)
    }
    origin.on("/nottl/a", { body: "no freshness" })
    await get("/nottl/a")
    expect((await get("/nottl/a")).headers["cache-status"]).toBe("sentinel; fwd=miss; detail=no-freshness")
    origin.on("/plain/nc", (req) => (req.headers["if-none-match"] === '"nc1"' ? { status: 304, headers: { etag: '"nc1"' } } : { headers: { "cache-control": "no-cache", etag: '"nc1"' }, body: "nc" }))
    await get("/plain/nc")
    const r = await get("/plain/nc")
    expect(r.body.toString()).toBe("nc")
    expect(r.headers["cache-status"]).toMatch(/fwd=stale; fwd-status=304/)
    expect(origin.count("/plain/nc")).toBe(2)
  })

  it("default-ttl-secs gives a response without freshness its lifetime; cache-private stores private responses", async () => {
    origin.on("/ttl/a", (_r, n) => ({ body: `t${n}` }))
    await get("/ttl/a")
    advance(29)
    expect((await get("/ttl/a")).body.toString()).toBe("t1")
    advance(2)
    expect((await get("/ttl/a")).body.toString()).toBe("t2")
    origin.on("/priv/a", { headers: { "cache-control": "private, max-age=60" }, body: "mine" })
    await get("/priv/a")
    expect((await get("/priv/a")).headers["cache-status"]).toMatch(/hit/)
    expect(origin.count("/priv/a")).toBe(1)
  })
})

describe("the key", () => {
  it("includes the host: two virtual hosts on one route never share an entry", async () => {
    origin.on("/plain/host", (req) => ({ headers: { "cache-control": "max-age=60" }, body: `for ${req.headers.host}` }))
    expect((await get("/plain/host", { host: "a.example" })).body.toString()).toBe("for a.example")
    expect((await get("/plain/host", { host: "b.example" })).body.toString()).toBe("for b.example")
    expect((await get("/plain/host", { host: "a.example" })).body.toString()).toBe("for a.example")
    expect(origin.count("/plain/host")).toBe(2)
  })

  it("ignore-query-params leaves them out of the key; other parameters and vary-headers shape it", async () => {
    let n = 0
    origin.on("/q/a", (req) => ({ headers: { "cache-control": "max-age=60" }, body: `${req.url} #${++n}` }))
    const a = await get("/q/a?x=1&utm_source=mail")
    const b = await get("/q/a?utm_source=ads&x=1")
    expect(b.body.toString()).toBe(a.body.toString())
    expect((await get("/q/a?x=2")).body.toString()).toBe("/q/a?x=2 #2")
    const t1 = await get("/q/a?x=1", { "x-tenant": "one" })
    const t2 = await get("/q/a?x=1", { "x-tenant": "two" })
    expect(t1.body.toString()).not.toBe(t2.body.toString())
    expect((await get("/q/a?x=1", { "x-tenant": "one" })).body.toString()).toBe(t1.body.toString())
  })

  it("Vary selects the variant: each Accept-Language gets its own, none is served to the other", async () => {
    origin.on("/plain/vary", (req) => ({
      headers: { "cache-control": "max-age=60", vary: "Accept-Language" },
      body: `lang=${req.headers["accept-language"] ?? "none"}`
    }))
    expect((await get("/plain/vary", { "accept-language": "de" })).body.toString()).toBe("lang=de")
    expect((await get("/plain/vary", { "accept-language": "fr" })).body.toString()).toBe("lang=fr")
    expect((await get("/plain/vary")).body.toString()).toBe("lang=none")
    expect((await get("/plain/vary", { "accept-language": "de" })).body.toString()).toBe("lang=de")
    expect((await get("/plain/vary", { "accept-language": "fr" })).headers["cache-status"]).toMatch(/hit/)
    expect(origin.count("/plain/vary")).toBe(3)
  })

  it("Vary: * is never stored", async () => {
    origin.on("/plain/star", { headers: { "cache-control": "max-age=60", vary: "*" }, body: "s" })
    await get("/plain/star")
    expect((await get("/plain/star")).headers["cache-status"]).toBe("sentinel; fwd=miss; detail=vary-star")
  })
})

describe("Authorization and Set-Cookie", () => {
  it("a response to a request with Authorization is stored only when public, and a non-public entry never answers one", async () => {
    origin.on("/plain/auth", (req) => ({ headers: { "cache-control": "max-age=60" }, body: `user ${req.headers.authorization ?? "anon"}` }))
    expect((await get("/plain/auth", { authorization: "Bearer alice" })).body.toString()).toBe("user Bearer alice")
    expect((await get("/plain/auth")).body.toString()).toBe("user anon")
    expect((await get("/plain/auth", { authorization: "Bearer bob" })).body.toString()).toBe("user Bearer bob")
    expect(origin.count("/plain/auth")).toBe(3)
    origin.on("/plain/authpub", { headers: { "cache-control": "public, max-age=60" }, body: "same for all" })
    await get("/plain/authpub", { authorization: "Bearer alice" })
    expect((await get("/plain/authpub", { authorization: "Bearer bob" })).headers["cache-status"]).toMatch(/hit/)
    expect(origin.count("/plain/authpub")).toBe(1)
  })

  it("a response with Set-Cookie is stored only when public", async () => {
    origin.on("/plain/cookie", { headers: { "cache-control": "max-age=60", "set-cookie": "sid=secret" }, body: "c" })
    await get("/plain/cookie")
    const again = await get("/plain/cookie")
    expect(again.headers["cache-status"]).toBe("sentinel; fwd=miss; detail=set-cookie")
    expect(origin.count("/plain/cookie")).toBe(2)
    origin.on("/plain/cookiepub", { headers: { "cache-control": "public, max-age=60", "set-cookie": "theme=dark" }, body: "c" })
    await get("/plain/cookiepub")
    expect((await get("/plain/cookiepub")).headers["cache-status"]).toMatch(/hit/)
  })
})

describe("revalidation", () => {
  it("a stale entry with an ETag is revalidated: the 304 refreshes it and the client gets the stored body", async () => {
    origin.on("/plain/etag", (req) =>
      req.headers["if-none-match"] === '"v1"'
        ? { status: 304, headers: { etag: '"v1"', "cache-control": "max-age=30", "x-refreshed": "yes" } }
        : { headers: { etag: '"v1"', "cache-control": "max-age=5" }, body: "etag body" }
    )
    await get("/plain/etag")
    advance(6)
    const r = await get("/plain/etag")
    expect(r.status).toBe(200)
    expect(r.body.toString()).toBe("etag body")
    expect(r.headers["x-refreshed"]).toBe("yes")
    expect(r.headers["cache-status"]).toBe("sentinel; fwd=stale; fwd-status=304; ttl=30")
    expect(origin.seen.filter((s) => s.url === "/plain/etag").map((s) => s.headers["if-none-match"])).toEqual([undefined, '"v1"'])
    advance(20)
    expect((await get("/plain/etag")).headers["cache-status"]).toMatch(/^sentinel; hit/)
    expect(origin.count("/plain/etag")).toBe(2)
  })

  it("Last-Modified is revalidated with If-Modified-Since; a changed resource replaces the entry", async () => {
    const lm = new Date(now - 86_400_000).toUTCString()
    origin.on("/plain/lm", (req, n) =>
      n === 2 && req.headers["if-modified-since"] === lm
        ? { headers: { "last-modified": new Date(now).toUTCString(), "cache-control": "max-age=60" }, body: "new" }
        : { headers: { "last-modified": lm, "cache-control": "max-age=5" }, body: "old" }
    )
    await get("/plain/lm")
    advance(6)
    const r = await get("/plain/lm")
    expect(r.body.toString()).toBe("new")
    expect(r.headers["cache-status"]).toBe("sentinel; fwd=stale; stored")
    expect((await get("/plain/lm")).body.toString()).toBe("new")
    expect(origin.count("/plain/lm")).toBe(2)
  })

  it("a client's own If-None-Match matching a cached entry is answered 304 from the cache", async () => {
    origin.on("/plain/inm", { headers: { etag: '"abc"', "cache-control": "max-age=60" }, body: "body" })
    await get("/plain/inm")
    const r = await get("/plain/inm", { "if-none-match": '"abc"' })
    expect(r.status).toBe(304)
    expect(r.body.length).toBe(0)
    expect(origin.count("/plain/inm")).toBe(1)
  })
})

describe("stale-while-revalidate and stale-if-error", () => {
  it("a stale entry is served at once while exactly one background refresh runs", async () => {
    origin.on("/swr/a", (_r, n) => ({ headers: { "cache-control": "max-age=5" }, body: `r${n}` }))
    await get("/swr/a")
    advance(10)
    origin.hold()
    const stale = await Promise.all([get("/swr/a"), get("/swr/a"), get("/swr/a")])
    for (const s of stale) {
      expect(s.body.toString()).toBe("r1")
      expect(s.headers["cache-status"]).toBe("sentinel; hit; ttl=-5; detail=stale-while-revalidate")
    }
    await origin.arrived("/swr/a", 2)
    origin.release()
    await waitUntil(async () => (await get("/swr/a")).body.toString() === "r2", "the refreshed entry")
    expect(origin.count("/swr/a")).toBe(2)
  })

  it("stale-if-error: a 5xx or an upstream that is down is answered with the stale entry", async () => {
    origin.on("/sie/a", (_r, n) => (n === 1 ? { headers: { "cache-control": "max-age=5" }, body: "good" } : { status: 503, body: "down" }))
    await get("/sie/a")
    advance(10)
    const r = await get("/sie/a")
    expect(r.status).toBe(200)
    expect(r.body.toString()).toBe("good")
    expect(r.headers["cache-status"]).toBe("sentinel; hit; ttl=-5; detail=stale-if-error")
    advance(400)
    expect((await get("/sie/a")).status).toBe(503)
  })

  it("must-revalidate is never served stale, not even on error", async () => {
    origin.on("/sie/mr", (_r, n) => (n === 1 ? { headers: { "cache-control": "max-age=5, must-revalidate" }, body: "good" } : { status: 503, body: "down" }))
    await get("/sie/mr")
    expect((await get("/sie/mr")).body.toString()).toBe("good")
    advance(10)
    expect((await get("/sie/mr")).status).toBe(503)
  })
})

describe("bypass", () => {
  it("methods not cacheable, ranges, excluded extensions and paths bypass the cache with a detail", async () => {
    origin.on("/plain/post", { headers: { "cache-control": "max-age=60" }, body: "p" })
    expect((await get("/plain/post", {}, "POST")).headers["cache-status"]).toBe("sentinel; fwd=bypass; detail=method")
    origin.on("/plain/range", { headers: { "cache-control": "max-age=60" }, body: "r" })
    expect((await get("/plain/range", { range: "bytes=0-0" })).headers["cache-status"]).toBe("sentinel; fwd=bypass; detail=range")
    origin.on("/ex/a.php", { headers: { "cache-control": "max-age=60" }, body: "php" })
    expect((await get("/ex/a.php")).headers["cache-status"]).toBe("sentinel; fwd=bypass; detail=excluded-extension")
    origin.on("/ex/admin/x", { headers: { "cache-control": "max-age=60" }, body: "adm" })
    expect((await get("/ex/admin/x")).headers["cache-status"]).toBe("sentinel; fwd=bypass; detail=excluded-path")
    origin.on("/ex/ok", { headers: { "cache-control": "max-age=60" }, body: "ok" })
    await get("/ex/ok")
    expect((await get("/ex/ok")).headers["cache-status"]).toMatch(/hit/)
    origin.on("/other", { headers: { "cache-control": "max-age=60" }, body: "o" })
    expect((await get("/other")).headers["cache-status"]).toBeUndefined()
  })
})
