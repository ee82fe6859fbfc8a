/**
 * The `compress` filter end to end: a real origin, the proxy on port 0, real clients; bodies are
 * decoded and compared byte for byte. Round trips for gzip, brotli and deflate; every "sent as
 * is" case leaves the origin's bytes and framing untouched; back-pressure reaches the origin;
 * a client that leaves and an origin that dies mid-body end the stream, not the proxy.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as http2 from "node:http2"
import * as os from "node:os"
import * as path from "node:path"
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { decodeKdl } from "../../src/config/Kdl.js"
import { formatIssue } from "../../src/config/ConfigIssue.js"
import type { FilterConfig } from "../../src/config/Schema.js"
import { resettingOrigin } from "../support/faults.js"
import type { BodyEncoder, RouteExtension } from "../../src/pipeline/Stage.js"
import { createBodyEncoder } from "../../src/filters/BodyEncoder.js"
import {
  accessLogTo, catchAllRoute, jsonLines, metricSum, openProxy, request, startProxy, testConfig, waitUntil, type ProxyHandle
} from "../support/proxy.js"
import { jsonBody, noise, startCompressOrigin, type CompressOrigin } from "./compressOrigin.js"

const filtersOf = (kdl: string): ReadonlyArray<FilterConfig> => {
  const r = decodeKdl(`listeners { listener "l" { address "127.0.0.1:0"; }; }\nfilters { ${kdl} }`, { file: "t.kdl" })
  expect(r.errors.map(formatIssue)).toEqual([])
  return r.config!.filters
}

let origin: CompressOrigin
let dir: string
let proxy: ProxyHandle
let accessLog: string
let closeProxy: () => Promise<void>

const open = (filters: ReadonlyArray<FilterConfig>, address: string, extra: object = {}) =>
  openProxy(
    testConfig({
      upstreams: [{ id: "o", targets: [{ address }] }] as never,
      routes: [catchAllRoute("o", { filters: filters.map((f) => f.id) })] as never,
      filters: filters as never,
      observability: accessLogTo(accessLog),
      ...extra
    })
  )

beforeAll(async () => {
  origin = await startCompressOrigin()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-compress-"))
  accessLog = path.join(dir, "access.log")
  const opened = await open(filtersOf(`filter "gz" { type "compress"; algorithms "gzip,br,deflate"; }`), origin.address)
  proxy = opened.proxy
  closeProxy = opened.close
})
afterAll(async () => {
  await closeProxy?.()
  await origin.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

const get = (p: string, acceptEncoding?: string, extra: http.OutgoingHttpHeaders = {}, method = "GET") =>
  request(proxy.port, { method, path: p, headers: { ...(acceptEncoding === undefined ? {} : { "accept-encoding": acceptEncoding }), ...extra } })

const decode = { gzip: gunzipSync, br: brotliDecompressSync, deflate: inflateSync } as const

describe("round trips", () => {
  it.each([
    ["gzip", "gzip"],
    ["br", "br"],
    ["deflate", "deflate"],
    ["gzip, deflate, br", "gzip"],
    ["br;q=1.0, gzip;q=0.5", "br"],
    ["x-gzip", "gzip"],
    ["*", "gzip"]
  ] as const)("Accept-Encoding %j: %s, decoded bytes equal the origin's, head rewritten", async (ae, coding) => {
    const r = await get("/json?size=65536", ae)
    expect(r.status).toBe(200)
    expect(r.headers["content-encoding"]).toBe(coding)
    expect(r.headers["content-length"]).toBeUndefined()
    expect(r.headers["accept-ranges"]).toBeUndefined()
    expect(r.headers.etag).toBe('W/"v1"')
    expect(r.headers.vary).toBe("Accept-Encoding")
    expect(r.body.length).toBeLessThan(65536 / 4)
    expect(decode[coding](r.body).equals(jsonBody(65536))).toBe(true)
  })

  it("a chunked body (no Content-Length) and a large one streamed in many pieces", async () => {
    for (const [p, n] of [["/chunked?size=300000", 300000], ["/stream?json=1&size=4000000&id=big", 4000000]] as const) {
      for (const coding of ["gzip", "br"] as const) {
        const r = await get(p, coding)
        expect(r.headers["content-encoding"]).toBe(coding)
        expect(decode[coding](r.body).equals(jsonBody(n))).toBe(true)
      }
    }
  })

  it("an existing Vary is merged into, not duplicated", async () => {
    const r = await get("/json?vary=Origin", "gzip")
    expect(r.rawHeaders.filter((h) => h.toLowerCase() === "vary")).toHaveLength(1)
    expect(r.headers.vary).toBe("Origin, Accept-Encoding")
    const again = await get("/json?vary=accept-encoding", "gzip")
    expect(again.headers.vary).toBe("accept-encoding")
  })

  it("counts per route and algorithm with bytes in and out, and the access log says what it did", async () => {
    const before = await metricSum(proxy, "sentinel_compression_responses_total", { route: "r", algorithm: "br" })
    const inBefore = await metricSum(proxy, "sentinel_compression_input_bytes_total", { route: "r", algorithm: "br" })
    const r = await get("/json?size=20000", "br", { "x-mark": "counted" })
    await waitUntil(async () => (await metricSum(proxy, "sentinel_compression_responses_total", { route: "r", algorithm: "br" })) === before + 1, "metric")
    expect(await metricSum(proxy, "sentinel_compression_input_bytes_total", { route: "r", algorithm: "br" })).toBe(inBefore + 20000)
    expect(await metricSum(proxy, "sentinel_compression_output_bytes_total", { route: "r", algorithm: "br" })).toBeGreaterThanOrEqual(r.body.length)
    await waitUntil(() => jsonLines(accessLog).some((l) => l.path === "/json" && (l.compression as { bytes_out?: number })?.bytes_out === r.body.length), "access line")
    const line = jsonLines(accessLog).find((l) => (l.compression as { bytes_out?: number })?.bytes_out === r.body.length)!
    expect(line.compression).toEqual({ encoding: "br", bytes_in: 20000, bytes_out: r.body.length })
    expect(line.body_bytes_sent).toBe(r.body.length)
  })
})

describe("sent as is", () => {
  const identical = (r: { headers: http.IncomingHttpHeaders; body: Buffer }, body: Buffer) => {
    expect(r.headers["content-encoding"]).toBeUndefined()
    expect(r.body.equals(body)).toBe(true)
    expect(r.headers["content-length"]).toBe(String(body.length))
    expect(r.headers.etag).toBe('"v1"')
  }

  it.each([
    ["no Accept-Encoding", undefined],
    ["an empty Accept-Encoding", ""],
    ["q=0 for every coding", "gzip;q=0, br;q=0, deflate;q=0"],
    ["identity only", "identity"],
    ["a client that refuses everything but identity", "identity, *;q=0"],
    ["a coding not offered", "zstd, compress"]
  ])("%s: identity, with Vary (another client would get it compressed)", async (_what, ae) => {
    const r = await get("/json?size=5000", ae)
    identical(r, jsonBody(5000))
    expect(r.headers.vary).toBe("Accept-Encoding")
  })

  it("below min-size (1024 by default)", async () => {
    const r = await get("/json?size=1000", "gzip")
    identical(r, jsonBody(1000))
    expect(r.headers.vary).toBeUndefined()
  })

  it("a type not listed (image/png), and one with parameters that is (text/html; charset)", async () => {
    identical(await get("/json?size=5000&type=image/png", "gzip"), jsonBody(5000))
    const html = await get("/json?size=5000&type=" + encodeURIComponent("text/html; charset=utf-8"), "gzip")
    expect(html.headers["content-encoding"]).toBe("gzip")
  })

  it("Cache-Control: no-transform", async () => {
    const r = await get("/json?size=5000&cc=" + encodeURIComponent("public, no-transform"), "gzip")
    identical(r, jsonBody(5000))
    expect(r.headers.vary).toBeUndefined()
  })

  it("already encoded by the origin: its bytes pass through, not encoded twice", async () => {
    const r = await get("/encoded?size=5000", "gzip, br")
    expect(r.headers["content-encoding"]).toBe("gzip")
    expect(gunzipSync(r.body).equals(jsonBody(5000))).toBe(true)
  })

  it("a range answered 206: the identity bytes of the range", async () => {
    const r = await get("/range?size=5000", "gzip", { range: "bytes=100-2099" })
    expect(r.status).toBe(206)
    expect(r.headers["content-range"]).toBe("bytes 100-2099/5000")
    identical(r, jsonBody(5000).subarray(100, 2100))
  })

  it("204 and 304: no body, head untouched", async () => {
    const n = await get("/204", "gzip")
    expect(n.status).toBe(204)
    expect(n.headers["content-encoding"]).toBeUndefined()
    expect(n.headers.vary).toBeUndefined()
    const nm = await get("/304", "gzip", { "if-none-match": '"v1"' })
    expect(nm.status).toBe(304)
    expect(nm.headers.etag).toBe('"v1"')
    expect(nm.headers["content-encoding"]).toBeUndefined()
  })

  it("HEAD: the identity head (Content-Length of the identity body), with Vary", async () => {
    const r = await get("/json?size=5000", "gzip", {}, "HEAD")
    expect(r.status).toBe(200)
    expect(r.headers["content-encoding"]).toBeUndefined()
    expect(r.headers["content-length"]).toBe("5000")
    expect(r.headers.vary).toBe("Accept-Encoding")
    expect(r.body.length).toBe(0)
  })

  it("each skip is counted with its reason", async () => {
    await get("/json?size=10", "gzip")
    await get("/json?size=5000&type=image/png", "gzip")
    for (const reason of ["size", "type", "not-accepted", "range", "encoded", "no-transform", "status", "head"]) {
      expect(await metricSum(proxy, "sentinel_compression_skipped_total", { route: "r", reason })).toBeGreaterThan(0)
    }
  })
})

describe("config", () => {
  it("Sentinel's keys and defaults; brotli spelt out; a list of content types", () => {
    expect(filtersOf(`filter "c" { type "compress"; }`)[0]).toEqual({
      id: "c", type: "compress", algorithms: ["gzip", "br"], minSize: 1024, level: 6,
      contentTypes: ["text/html", "text/css", "text/plain", "text/xml", "application/json", "application/javascript", "application/xml", "image/svg+xml"]
    })
    expect(filtersOf(`filter "c" { type "compress"; algorithms "brotli, gzip"; min-size "2KiB"; level 9; content-types "text/*" "Application/JSON"; }`)[0]).toEqual({
      id: "c", type: "compress", algorithms: ["br", "gzip"], minSize: 2048, level: 9, contentTypes: ["text/*", "application/json"]
    })
  })

  it.each([
    [`algorithms "gzip,lzma"`, "unknown algorithm \"lzma\""],
    [`algorithms "zstd"`, "\"zstd\" is not supported yet"],
    [`level 0`, "at least 1"],
    [`level 10`, "at most 9"],
    [`content-types "html"`, "media type"],
    [`phase "response"`, "does not apply to a filter of type \"compress\""]
  ])("%s is refused", (kdl, message) => {
    const r = decodeKdl(`listeners { listener "l" { address "127.0.0.1:0"; }; }\nfilters { filter "c" { type "compress"; ${kdl}; }; }`, { file: "t.kdl" })
    expect(r.errors.map(formatIssue).join("\n")).toContain(message)
  })
})

describe("streaming and failures", () => {
  it("back-pressure: a client that reads nothing pauses the origin, and the slow-reader deadline releases it", async () => {
    const size = 256 * 1024 * 1024
    const { proxy: p, close } = await open(filtersOf(`filter "gz" { type "compress"; content-types "text/plain"; level 1; }`), origin.address, {
      limits: { slowReaderTimeout: Duration.millis(500) } as never
    })
    try {
      const req = http.request({ host: "127.0.0.1", port: p.port, path: `/stream?size=${size}&id=bp`, headers: { "accept-encoding": "gzip" }, agent: false })
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        req.on("response", resolve)
        req.on("error", reject)
        req.end()
      })
      expect(res.headers["content-encoding"]).toBe("gzip")
      res.pause()
      await origin.aborted("bp")
      // the origin was stopped by back-pressure long before writing it all
      expect(origin.streams.get("bp")!.written).toBeLessThan(size / 4)
      req.destroy()
    } finally {
      await close()
    }
  })

  it("a client that leaves mid-stream: the origin's request is aborted, the line logged 499 with what was encoded", async () => {
    const req = http.request({ host: "127.0.0.1", port: proxy.port, path: `/stream?size=${512 * 1024 * 1024}&id=gone`, headers: { "accept-encoding": "br" }, agent: false })
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      req.on("response", resolve)
      req.on("error", reject)
      req.end()
    })
    expect(res.headers["content-encoding"]).toBe("br")
    await new Promise<void>((resolve) => res.once("data", () => resolve()))
    req.destroy()
    await origin.aborted("gone")
    await waitUntil(() => jsonLines(accessLog).some((l) => l.status === 499 && (l.path as string) === "/stream"), "499 line")
    const line = jsonLines(accessLog).find((l) => l.status === 499 && l.path === "/stream")!
    expect((line.compression as { encoding: string; bytes_out: number }).encoding).toBe("br")
    expect((line.compression as { bytes_out: number }).bytes_out).toBeGreaterThan(0)
    // the proxy goes on serving
    const r = await get("/json?size=5000", "gzip")
    expect(gunzipSync(r.body).equals(jsonBody(5000))).toBe(true)
  })

  it("an origin that resets mid-body: the client gets a cut stream, the proxy keeps serving", async () => {
    const bad = await resettingOrigin({ declaredLength: 100_000, sentBytes: 20_000 })
    const { proxy: p, close } = await open(filtersOf(`filter "gz" { type "compress"; }`), `127.0.0.1:${bad.port}`)
    try {
      const outcome = await new Promise<string>((resolve) => {
        const req = http.request({ host: "127.0.0.1", port: p.port, path: "/", headers: { "accept-encoding": "gzip" }, agent: false }, (res) => {
          expect(res.headers["content-encoding"]).toBe("gzip")
          const chunks: Array<Buffer> = []
          res.on("data", (c: Buffer) => chunks.push(c))
          res.on("error", () => resolve("cut"))
          res.on("aborted", () => resolve("cut"))
          res.on("end", () => resolve(res.complete ? "complete" : "cut"))
        })
        req.on("error", () => resolve("cut"))
        req.end()
      })
      expect(outcome).toBe("cut")
      await waitUntil(() => jsonLines(accessLog).some((l) => l.upstream_addr === `127.0.0.1:${bad.port}`), "access line")
      const line = jsonLines(accessLog).find((l) => l.upstream_addr === `127.0.0.1:${bad.port}`)!
      expect(line.error).toBeDefined()
      expect((line.compression as { encoding: string }).encoding).toBe("gzip")
    } finally {
      await close()
      await bad.close()
    }
  })

  it("HTTP/2 clients get the same encoding (an h2 listener, one stream per coding)", async () => {
    const { proxy: p, close } = await open(filtersOf(`filter "gz" { type "compress"; }`), origin.address, {
      listeners: [{ id: "main", address: "127.0.0.1:0", protocol: "h2" }] as never
    })
    const session = http2.connect(`http://127.0.0.1:${p.port}`)
    try {
      for (const coding of ["gzip", "br"] as const) {
        const { headers, body } = await new Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
          const stream = session.request({ ":path": "/chunked?size=200000", "accept-encoding": coding })
          const chunks: Array<Buffer> = []
          let head: http2.IncomingHttpHeaders = {}
          stream.on("response", (h) => (head = h))
          stream.on("data", (c: Buffer) => chunks.push(c))
          stream.on("end", () => resolve({ headers: head, body: Buffer.concat(chunks) }))
          stream.on("error", reject)
        })
        expect(headers["content-encoding"]).toBe(coding)
        expect(decode[coding](body).equals(jsonBody(200000))).toBe(true)
      }
    } finally {
      session.close()
      await close()
    }
  })

  it("no encoder outlives its response: a client gone and an origin reset each discard theirs, reported incomplete", async () => {
    // the route's encoding, seen from outside: the same seam the compress filter uses
    const made: Array<{ discarded: boolean; ended?: boolean }> = []
    const tracking: RouteExtension = {
      name: "tracking-encoding",
      compile: () => ({
        encoding: {
          start: (_ctx, _status, headers) => {
            // the head edits compressResponse makes, reduced to what framing needs
            for (let i = headers.length - 2; i >= 0; i -= 2) if (headers[i].toLowerCase() === "content-length") headers.splice(i, 2)
            headers.push("content-encoding", "gzip")
            const inner = createBodyEncoder("gzip", 6, {})
            const m: { discarded: boolean; ended?: boolean } = { discarded: false }
            const encoder: BodyEncoder = {
              write: (chunk, emit) => inner.write(chunk, emit),
              finish: (emit) => inner.finish(emit),
              discard: () => {
                m.discarded = true
                inner.discard()
              }
            }
            made.push(m)
            return { coding: "gzip", encoder, end: (_ctx, _in, _out, complete) => void (m.ended = complete) }
          }
        }
      })
    }
    const bad = await resettingOrigin({ declaredLength: 100_000, sentBytes: 20_000 })
    const scope = Effect.runSync(Scope.make())
    const p = await Effect.runPromise(
      startProxy(
        testConfig({
          upstreams: [{ id: "o", targets: [{ address: origin.address }] }, { id: "bad", targets: [{ address: `127.0.0.1:${bad.port}` }] }] as never,
          routes: [
            { id: "bad", matches: [{ _tag: "PathPrefix", prefix: "/bad" }], upstream: "bad" },
            catchAllRoute("o")
          ] as never
        }),
        { extensions: [tracking] }
      ).pipe(Scope.extend(scope))
    )
    try {
      const req = http.request({ host: "127.0.0.1", port: p.port, path: `/stream?size=${512 * 1024 * 1024}&id=leak`, agent: false })
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        req.on("response", resolve)
        req.on("error", reject)
        req.end()
      })
      res.on("error", () => undefined)
      await new Promise<void>((resolve) => res.once("data", () => resolve()))
      req.destroy()
      await origin.aborted("leak")
      await waitUntil(() => made[0]?.discarded === true && made[0].ended === false, "encoder discarded after the client left")
      await request(p.port, { path: "/bad" }).catch(() => undefined)
      await waitUntil(() => made[1]?.discarded === true && made[1].ended === false, "encoder discarded after the origin reset")
      // and one that completes is reported complete
      const ok = await request(p.port, { path: "/json?size=5000" })
      expect(gunzipSync(ok.body).equals(jsonBody(5000))).toBe(true)
      await waitUntil(() => made[2]?.ended === true, "complete encoding reported")
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await bad.close()
    }
  })

  it("incompressible bytes survive a round trip unchanged", async () => {
    const { proxy: p, close } = await open(filtersOf(`filter "gz" { type "compress"; content-types "text/plain"; }`), origin.address)
    try {
      const r = await request(p.port, { path: "/stream?size=3000000&id=noise", headers: { "accept-encoding": "gzip" } })
      expect(r.headers["content-encoding"]).toBe("gzip")
      expect(gunzipSync(r.body).equals(noise(3000000))).toBe(true)
    } finally {
      await close()
    }
  })
})
