/**
 * The cache and the `compress` filter on one route: the cache stores the encoded variants it
 * served (the tap sits after the encoder), keyed by the coding the filter negotiates, so
 * clients that spell the same preferences differently share one variant per encoding; and a
 * stored encoding is never served to a client that does not accept it (an origin that encodes
 * by itself without `Vary`).
 */
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { decodeKdl } from "../../src/config/Kdl.js"
import { request, startProxy, type ProxyHandle } from "../support/proxy.js"
import { startCacheOrigin, type CacheOrigin } from "./cacheOrigin.js"

let origin: CacheOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope
const json = Buffer.from(JSON.stringify({ items: Array.from({ length: 400 }, (_, i) => ({ id: i, name: `item ${i}` })) }))

beforeAll(async () => {
  origin = await startCacheOrigin()
  const kdl = `
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${origin.address}" } }
filters { filter "gz" { type "compress"; algorithms "gzip" "br"; min-size 256 } }
cache { enabled #true; status-header #true }
routes {
  route "raw" {
    priority 10
    matches { path-prefix "/raw" }
    upstream "o"
    cache { enabled #true }
  }
  route "c" {
    matches { path-prefix "/" }
    upstream "o"
    filters "gz"
    cache { enabled #true }
  }
}
`
  const decoded = decodeKdl(kdl, { file: "cache-compress.kdl" })
  expect(decoded.errors).toEqual([])
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(startProxy(decoded.config!).pipe(Scope.extend(scope)))
})
afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
})

const get = (path: string, acceptEncoding?: string) =>
  request(proxy.port, { path, headers: acceptEncoding === undefined ? {} : { "accept-encoding": acceptEncoding } })

const decoded = (r: { headers: Record<string, unknown>; body: Buffer }): Buffer => {
  const ce = r.headers["content-encoding"]
  return ce === "gzip" ? gunzipSync(r.body) : ce === "br" ? brotliDecompressSync(r.body) : r.body
}

describe("cache + compress", () => {
  it("stores one variant per negotiated coding: equivalent Accept-Encoding values hit it, and each body decodes to the origin's", async () => {
    origin.on("/list", { headers: { "content-type": "application/json", "cache-control": "max-age=600" }, body: json })
    const cases: Array<[string | undefined, string | undefined, string]> = [
      // [Accept-Encoding, expected Content-Encoding, expected cache result]
      ["gzip, deflate, br", "gzip", "fwd=miss"], // a tie goes to the filter's order: gzip
      ["gzip", "gzip", "hit"],
      ["br;q=0.5, gzip", "gzip", "hit"],
      ["br", "br", "fwd=miss"],
      ["br;q=1, gzip;q=0.2", "br", "hit"],
      [undefined, undefined, "fwd=miss"], // identity: its own variant
      ["identity", undefined, "hit"],
      ["gzip;q=0, br;q=0", undefined, "hit"]
    ]
    for (const [ae, ce, result] of cases) {
      const r = await get("/list", ae)
      expect(r.status, `${ae}`).toBe(200)
      expect(r.headers["content-encoding"], `${ae}`).toBe(ce)
      expect(String(r.headers["cache-status"]), `${ae}`).toContain(result)
      expect(String(r.headers["vary"]).toLowerCase(), `${ae}`).toContain("accept-encoding")
      expect(decoded(r).equals(json), `${ae}: decodes to the origin's body`).toBe(true)
    }
    expect(origin.count("/list")).toBe(3) // gzip, br, identity
  })

  it("never serves a stored encoding the client does not accept: an origin's gzip without Vary is a miss for the others", async () => {
    const gz = gzipSync(json)
    origin.on("/raw/self-encoded", (req) =>
      String(req.headers["accept-encoding"] ?? "").includes("gzip")
        ? { headers: { "content-encoding": "gzip", "cache-control": "max-age=600" }, body: gz }
        : { headers: { "cache-control": "max-age=600" }, body: json }
    )
    const first = await get("/raw/self-encoded", "gzip")
    expect(first.headers["content-encoding"]).toBe("gzip")
    const again = await get("/raw/self-encoded", "gzip")
    expect(String(again.headers["cache-status"])).toContain("hit")
    // the same variant key (no Vary), but this client takes no gzip: not from the cache
    const plain = await get("/raw/self-encoded")
    expect(plain.headers["content-encoding"]).toBeUndefined()
    expect(plain.body.equals(json)).toBe(true)
    expect(origin.count("/raw/self-encoded")).toBe(2)
    // that identity answer replaced the entry: identity is acceptable to everyone
    const refused = await get("/raw/self-encoded", "gzip;q=0, br")
    expect(refused.headers["content-encoding"]).toBeUndefined()
    expect(String(refused.headers["cache-status"])).toContain("hit")
    expect(refused.body.equals(json)).toBe(true)
    expect(origin.count("/raw/self-encoded")).toBe(2)
  })
})
