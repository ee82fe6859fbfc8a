/**
 * The "cache" phase in the request path: it runs after the route's filters and agents (a stage
 * put `before("cache")` by an embedder, as an auth check would, answers before any hit is
 * served), `replace("cache")` turns it off; the access log's `cache` field; per-route entry
 * and byte gauges; a disabled top-level cache turns every route's cache off; HTTP/2 clients get
 * hits too.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as http2 from "node:http2"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { before, replace } from "../../src/pipeline/Phases.js"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import type { RouteExtension } from "../../src/pipeline/Stage.js"
import { accessLogTo, jsonLines, metricSum, request, startProxy, testConfig, waitUntil, type ProxyHandle } from "../support/proxy.js"
import { startCacheOrigin, type CacheOrigin } from "./cacheOrigin.js"

let origin: CacheOrigin
const scopes: Array<Scope.CloseableScope> = []
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cache-phase-"))
const accessLog = path.join(dir, "access.log")

const config = (store: object = {}) =>
  testConfig({
    upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
    routes: [
      { id: "c", matches: [{ _tag: "PathPrefix" as const, prefix: "/" }], upstream: "o", cache: { enabled: true, staleWhileRevalidate: Duration.zero } }
    ],
    observability: accessLogTo(accessLog),
    cache: { statusHeader: true, ...store }
  } as Partial<SentinelConfigInput>)

const start = async (c: ReturnType<typeof config>, options: Parameters<typeof startProxy>[1] = {}): Promise<ProxyHandle> => {
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  return Effect.runPromise(startProxy(c, options).pipe(Scope.extend(scope)))
}

/** A stage that refuses requests without `x-user` (an auth check). */
const auth: RouteExtension = {
  name: "auth",
  compile: () => ({
    request: [(ctx) => (ctx.header("x-user") === undefined ? { status: 401, headers: [], body: "{}", reason: "unauthenticated" } : undefined)]
  })
}

beforeAll(async () => {
  origin = await startCacheOrigin()
  origin.on("/doc", { headers: { "cache-control": "max-age=600" }, body: "cached doc" })
})
afterAll(async () => {
  for (const s of scopes) await Effect.runPromise(Scope.close(s, Exit.void))
  await origin.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("the cache phase", () => {
  it("a stage before it decides first: a stored response never reaches an unauthenticated request", async () => {
    const proxy = await start(config(), { phases: [before("cache", auth)] })
    expect((await request(proxy.port, { path: "/doc", headers: { "x-user": "a" } })).body.toString()).toBe("cached doc")
    const hit = await request(proxy.port, { path: "/doc", headers: { "x-user": "b" } })
    expect(hit.headers["cache-status"]).toMatch(/^sentinel; hit/)
    expect((await request(proxy.port, { path: "/doc" })).status).toBe(401)
    expect(origin.count("/doc")).toBe(1)
    // the access log's cache field, and the route's gauges
    await waitUntil(() => jsonLines(accessLog).filter((l) => l.cache !== undefined).length >= 2, "access lines with a cache field")
    expect(jsonLines(accessLog).map((l) => l.cache)).toEqual(expect.arrayContaining(["miss", "hit"]))
    expect(await metricSum(proxy, "sentinel_cache_entries", { route: "c" })).toBe(1)
    expect(await metricSum(proxy, "sentinel_cache_bytes", { route: "c" })).toBeGreaterThan("cached doc".length)
  })

  it("replace(\"cache\") turns the cache off; so does `cache { enabled #false }` at the top level", async () => {
    const replaced = await start(config(), { phases: [replace("cache", { name: "none", compile: () => undefined })] })
    const before = origin.count("/doc")
    await request(replaced.port, { path: "/doc" })
    expect((await request(replaced.port, { path: "/doc" })).headers["cache-status"]).toBeUndefined()
    const off = await start(config({ enabled: false }))
    await request(off.port, { path: "/doc" })
    await request(off.port, { path: "/doc" })
    expect(origin.count("/doc")).toBe(before + 4)
  })

  it("HTTP/2 clients are answered from the same cache (a hit over h2, no connection-specific headers)", async () => {
    origin.on("/h2doc", { headers: { "cache-control": "max-age=600" }, body: "over h2" })
    const c = config()
    const proxy = await start({ ...c, listeners: [{ ...c.listeners[0], protocol: "h2" }] } as typeof c)
    const session = http2.connect(`http://127.0.0.1:${proxy.port}`)
    const get2 = () =>
      new Promise<{ headers: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const s = session.request({ ":path": "/h2doc" })
        let body = ""
        let headers: http2.IncomingHttpHeaders = {}
        s.on("response", (h) => (headers = h))
        s.on("data", (d: Buffer) => (body += d.toString()))
        s.on("end", () => resolve({ headers, body }))
        s.on("error", reject)
      })
    try {
      expect((await get2()).body).toBe("over h2")
      const hit = await get2()
      expect(hit.body).toBe("over h2")
      expect(hit.headers["cache-status"]).toMatch(/^sentinel; hit/)
      expect(hit.headers[":status"]).toBe(200)
      expect(origin.count("/h2doc")).toBe(1)
    } finally {
      session.close()
    }
  })
})
