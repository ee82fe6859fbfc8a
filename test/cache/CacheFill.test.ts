/**
 * The cache's fill and store through the real proxy: a response streams to the client while
 * it fills (never buffered whole first), concurrent misses collapse into one origin request,
 * a fill cut short by an origin reset or over `max-size-bytes` is never stored, the byte bound
 * evicts least recently used entries, purges (admin listener, audited), `cache-stats`, reloads
 * (entries kept while a route's cache settings stay), stale-if-error with the origin down.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeConfig, type SentinelConfig, type SentinelConfigInput } from "../../src/config/Schema.js"
import { jsonLines, metricSum, request, startProxy, waitUntil, type ProxyHandle } from "../support/proxy.js"
import * as http from "node:http"
import { startCacheOrigin, type CacheOrigin } from "./cacheOrigin.js"

let origin: CacheOrigin
let spare: CacheOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope
let now = Date.parse("2026-03-01T10:00:00Z")
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cache-fill-"))
const auditFile = path.join(dir, "audit.log")

const configWith = (routeCache: object, store: object = {}): SentinelConfig =>
  makeConfig({
    listeners: [
      { id: "main", address: "127.0.0.1:0" },
      { id: "admin", address: "127.0.0.1:0", admin: true }
    ],
    observability: { logging: { accessLog: { enabled: false }, auditLog: { enabled: true, file: auditFile } } },
    upstreams: [
      { id: "o", targets: [{ address: origin.address }] },
      { id: "spare", targets: [{ address: spare.address }] }
    ],
    routes: [
      { id: "purge", priority: 1000, matches: [{ _tag: "Method", methods: ["PURGE"] }], builtinHandler: "cache-purge" },
      { id: "stats", priority: 1000, matches: [{ _tag: "Path", path: "/_cache/stats" }], builtinHandler: "cache-stats" },
      {
        id: "down",
        priority: 100,
        matches: [{ _tag: "PathPrefix", prefix: "/down" }],
        upstream: "spare",
        circuitBreaker: { failureThreshold: 1, openTimeoutMs: 60_000 },
        cache: { enabled: true, staleWhileRevalidate: Duration.zero, staleIfError: Duration.seconds(300) }
      },
      {
        id: "c",
        matches: [{ _tag: "PathPrefix", prefix: "/" }],
        upstream: "o",
        cache: { enabled: true, maxSizeBytes: 64 * 1024, staleWhileRevalidate: Duration.zero, staleIfError: Duration.zero, ...routeCache }
      }
    ],
    cache: { statusHeader: true, maxSize: 40 * 1024, lockTimeout: Duration.seconds(5), ...store }
  } as SentinelConfigInput)

beforeAll(async () => {
  origin = await startCacheOrigin()
  spare = await startCacheOrigin()
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(startProxy(configWith({}), { cacheClock: () => now }).pipe(Scope.extend(scope)))
})
afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
  await spare.close().catch(() => {})
  fs.rmSync(dir, { recursive: true, force: true })
})

const port = (listener: string) => proxy.addresses.get(listener)!.port
const get = (p: string, headers: Record<string, string> = {}) => request(proxy.port, { path: p, headers })
const fresh = { "cache-control": "max-age=600" }

describe("filling", () => {
  it("the response streams to the client while it fills: the first bytes arrive before the origin finished", async () => {
    const body = Buffer.alloc(32 * 1024, 7)
    origin.on("/stream", { headers: fresh, body, holdAfter: 1000 })
    const first = await new Promise<number>((resolve, reject) => {
      const req = http.get({ host: "127.0.0.1", port: proxy.port, path: "/stream", agent: false }, (res) => {
        let got = 0
        res.on("data", (c: Buffer) => {
          if (got === 0) resolve(c.length)
          got += c.length
        })
        res.on("error", reject)
      })
      req.on("error", reject)
    })
    expect(first).toBeGreaterThan(0)
    expect(first).toBeLessThanOrEqual(1000)
    origin.release()
    await waitUntil(async () => (await get("/stream")).headers["cache-status"]?.includes("hit") === true, "the streamed fill stored")
    expect((await get("/stream")).body.equals(body)).toBe(true)
    expect(origin.count("/stream")).toBe(1)
  })

  it("N concurrent misses for one key make one origin request; the others are answered from its fill", async () => {
    origin.on("/collapse", (_r, n) => ({ headers: fresh, body: `one ${n}` }))
    origin.hold()
    const all = Promise.all(Array.from({ length: 8 }, () => get("/collapse")))
    try {
      await origin.arrived("/collapse")
      // all 8 in flight while the origin saw one: the other 7 wait for its fill (or find it stored)
      await waitUntil(async () => (await metricSum(proxy, "sentinel_active_requests")) >= 8, "8 requests in flight")
    } finally {
      origin.release()
    }
    const replies = await all
    expect(replies.map((r) => r.body.toString())).toEqual(Array(8).fill("one 1"))
    expect(replies.filter((r) => r.headers["cache-status"] === "sentinel; hit; ttl=600; collapsed")).toHaveLength(7)
    expect(origin.count("/collapse")).toBe(1)
  })

  it("a fill cut short by an origin reset is never stored", async () => {
    origin.on("/cut", (_r, n) => (n === 1 ? { headers: fresh, body: Buffer.alloc(20_000, 1), cutAfter: 5000 } : { headers: fresh, body: "whole" }))
    await get("/cut").then(
      (r) => expect(r.body.length).toBeLessThan(20_000),
      () => undefined
    )
    expect((await get("/cut")).body.toString()).toBe("whole")
    expect(origin.count("/cut")).toBe(2)
  })

  it("a response over max-size-bytes streams whole to the client but is not stored", async () => {
    const big = Buffer.alloc(100 * 1024, 3)
    origin.on("/big", { headers: fresh, body: big })
    expect((await get("/big")).body.equals(big)).toBe(true)
    expect((await get("/big")).headers["cache-status"]).toBe("sentinel; fwd=miss; detail=too-big")
    expect(origin.count("/big")).toBe(2)
    // without a Content-Length the copy is dropped once it grows past the bound
    origin.on("/bigchunked", { headers: fresh, body: big, chunked: true })
    const chunked = await get("/bigchunked")
    expect(chunked.headers["content-length"]).toBeUndefined()
    expect(chunked.body.equals(big)).toBe(true)
    expect((await get("/bigchunked")).headers["cache-status"]).toBe("sentinel; fwd=miss; stored")
    expect(origin.count("/bigchunked")).toBe(2)
    // a small chunked response is stored, and served with its length
    origin.on("/smallchunked", { headers: fresh, body: "chunk-chunk", chunked: true })
    await get("/smallchunked")
    const hit = await get("/smallchunked")
    expect(hit.headers["content-length"]).toBe("11")
    expect(hit.body.toString()).toBe("chunk-chunk")
  })

  it("the byte bound evicts the least recently used entries", async () => {
    const before = await metricSum(proxy, "sentinel_cache_evictions_total", { route: "c" })
    for (const p of ["/e1", "/e2", "/e3", "/e4"]) origin.on(p, { headers: fresh, body: Buffer.alloc(12 * 1024, 9) })
    for (const p of ["/e1", "/e2", "/e3"]) await get(p)
    await get("/e1") // e1 used: e2 is now the least recently used
    await get("/e4")
    expect(await metricSum(proxy, "sentinel_cache_evictions_total", { route: "c" })).toBeGreaterThan(before)
    expect((await get("/e1")).headers["cache-status"]).toMatch(/hit/)
    expect((await get("/e2")).headers["cache-status"]).toMatch(/fwd=miss/)
    expect(await metricSum(proxy, "sentinel_cache_bytes", { route: "c" })).toBeLessThanOrEqual(40 * 1024)
  })
})

describe("stale-if-error with the origin down", () => {
  it("serves the stale entry when the upstream refuses connections, and while the route's circuit is open", async () => {
    spare.on("/down/a", { headers: { "cache-control": "max-age=5" }, body: "kept" })
    await get("/down/a")
    await spare.close()
    now += 10_000
    const r = await get("/down/a")
    expect(r.status).toBe(200)
    expect(r.body.toString()).toBe("kept")
    expect(r.headers["cache-status"]).toBe("sentinel; hit; ttl=-5; detail=stale-if-error")
    // that failure opened the route's circuit: the stale entry answers the open circuit too
    const other = await get("/down/other")
    expect(other.status).toBe(503)
    expect(JSON.parse(other.body.toString()).reason).toBe("route_circuit_open")
    const again = await get("/down/a")
    expect(again.body.toString()).toBe("kept")
    expect(again.headers["cache-status"]).toBe("sentinel; hit; ttl=-5; detail=stale-if-error")
  })
})

describe("purge and stats", () => {
  it("PURGE on the admin listener removes the host's entries of a path or a pattern; audited; refused elsewhere", async () => {
    for (const p of ["/img/a.png", "/img/b.png", "/doc"]) origin.on(p, (_r, n) => ({ headers: fresh, body: `${p} ${n}` }))
    for (const p of ["/img/a.png", "/img/b.png", "/doc"]) await get(p, { host: "site.example" })
    await get("/doc", { host: "other.example" })
    expect((await request(proxy.port, { method: "PURGE", path: "/doc", headers: { host: "site.example" } })).status).toBe(404)
    const one = await request(port("admin"), { method: "PURGE", path: "/doc", headers: { host: "site.example" } })
    expect(JSON.parse(one.body.toString())).toEqual({ purged: 1, host: "site.example", path: "/doc" })
    expect((await get("/doc", { host: "site.example" })).body.toString()).toBe("/doc 3")
    expect((await get("/doc", { host: "other.example" })).headers["cache-status"]).toMatch(/hit/)
    const pattern = await request(port("admin"), { method: "PURGE", path: "/", headers: { host: "site.example", "x-purge-pattern": "/img/*" } })
    expect(JSON.parse(pattern.body.toString()).purged).toBe(2)
    expect((await get("/img/a.png", { host: "site.example" })).headers["cache-status"]).toMatch(/fwd=miss/)
    await waitUntil(() => jsonLines(auditFile).filter((l) => l.event_type === "cache_purge").length === 2, "two purges audited")
    expect(jsonLines(auditFile).find((l) => l.event_type === "cache_purge")).toMatchObject({ decision: "purge", method: "PURGE", path: "/doc" })
  })

  it("cache-stats reports entries, bytes, hits, misses and the hit ratio per route (admin listener only)", async () => {
    expect((await request(proxy.port, { path: "/_cache/stats" })).status).toBe(404)
    const s = JSON.parse((await request(port("admin"), { path: "/_cache/stats" })).body.toString())
    expect(s).toMatchObject({ enabled: true, backend: "memory", max_size: 40 * 1024 })
    expect(s.routes.c.hits).toBeGreaterThan(0)
    expect(s.routes.c.misses).toBeGreaterThan(0)
    expect(s.routes.c.entries).toBeGreaterThan(0)
    expect(s.routes.c.hit_ratio).toBeGreaterThan(0)
    expect(s.routes.c.hit_ratio).toBeLessThan(1)
    expect(s.bytes).toBe(Object.values(s.routes as Record<string, { bytes: number }>).reduce((a, r) => a + r.bytes, 0))
  })
})

describe("lock-timeout", () => {
  it("a miss waiting longer than lock-timeout for another's fill goes upstream itself", async () => {
    await Effect.runPromise(proxy.reload(configWith({}, { lockTimeout: Duration.millis(100) })))
    origin.on("/slowfill", (_r, n) => ({ headers: fresh, body: `f${n}` }))
    origin.hold()
    try {
      const first = get("/slowfill")
      await origin.arrived("/slowfill")
      const second = get("/slowfill")
      // the second request's wait ends after 100 ms: it reaches the (still held) origin itself
      await origin.arrived("/slowfill", 2)
      origin.release()
      expect((await first).body.toString()).toBe("f1")
      expect((await second).body.toString()).toBe("f2")
    } finally {
      origin.release()
      await Effect.runPromise(proxy.reload(configWith({})))
    }
  })
})

describe("reload", () => {
  it("entries survive a reload that leaves the route's cache settings; a changed route drops them", async () => {
    origin.on("/reload", (_r, n) => ({ headers: fresh, body: `r${n}` }))
    await get("/reload")
    await Effect.runPromise(proxy.reload(configWith({})))
    expect((await get("/reload")).body.toString()).toBe("r1")
    await Effect.runPromise(proxy.reload(configWith({ defaultTtl: Duration.seconds(5) })))
    expect((await get("/reload")).body.toString()).toBe("r2")
    expect(origin.count("/reload")).toBe(2)
  })
})
