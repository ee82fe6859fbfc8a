/**
 * HTTP/2 to clients on a cleartext `protocol "h2"` listener (prior knowledge) that also speaks
 * HTTP/1.1 on the same port: the pipeline serves both alike (routing, bodies both ways, limits,
 * 499 on a client reset, access log), and the HTTP/2 defences hold (rapid reset, streams per
 * session, idle sessions, SETTINGS). Real proxy on port 0, real origin, node's http2 client.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as http2 from "node:http2"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import { patternBytes, sha256, startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { accessLogTo, jsonLines, metricSum, openProxy, request, testConfig, waitUntil, type ProxyHandle } from "../support/proxy.js"

let origin: EchoOrigin
let dir: string
beforeAll(async () => {
  origin = await startEchoOrigin("h2")
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-h2-"))
})
afterAll(async () => {
  await origin.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

interface Env {
  readonly proxy: ProxyHandle
  readonly accessLog: string
  readonly close: () => Promise<void>
}

let n = 0
export const startH2 = async (listener: Record<string, unknown> = {}, extra: Partial<SentinelConfigInput> = {}): Promise<Env> => {
  const accessLog = path.join(dir, `access-${n++}.log`)
  const { proxy, close } = await openProxy(
    testConfig({
      listeners: [{ id: "main", address: "127.0.0.1:0", protocol: "h2", ...listener }] as never,
      upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
      routes: [
        { id: "api", matches: [{ _tag: "PathPrefix", prefix: "/api" }], upstream: "o", priority: 100 },
        { id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }
      ] as never,
      system: { gracefulShutdownTimeout: Duration.millis(200) } as never,
      observability: accessLogTo(accessLog),
      ...extra
    })
  )
  return { proxy, accessLog, close }
}


interface H2Reply {
  readonly status: number
  readonly headers: http2.IncomingHttpHeaders
  readonly body: Buffer
}

/** One request on `session`; resolves with the whole answer. */
const h2request = (session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer | Iterable<Buffer>): Promise<H2Reply> =>
  new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined })
    let status = 0
    let head: http2.IncomingHttpHeaders = {}
    const chunks: Array<Buffer> = []
    req.on("response", (h) => {
      head = h
      status = Number(h[":status"])
    })
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve({ status, headers: head, body: Buffer.concat(chunks) }))
    req.on("error", reject)
    if (body !== undefined) {
      if (Buffer.isBuffer(body)) req.end(body)
      else {
        for (const c of body) req.write(c)
        req.end()
      }
    }
  })

/** A session once the proxy's SETTINGS arrived. */
const connectH2 = (port: number): Promise<http2.ClientHttp2Session> =>
  new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`)
    s.once("remoteSettings", () => resolve(s))
    s.once("error", reject)
  })


describe("HTTP/2 with prior knowledge, HTTP/1.1 on the same port", () => {
  let env: Env
  beforeAll(async () => {
    env = await startH2({ maxConcurrentStreams: 7 })
  })
  afterAll(() => env.close())

  it("routes an HTTP/2 request upstream as HTTP/1.1 with :authority as the host; HTTP/1.1 still works on the port", async () => {
    const s = await connectH2(env.proxy.port)
    try {
      expect(s.remoteSettings.maxConcurrentStreams).toBe(7)
      const r = await h2request(s, { ":path": "/api/one?q=1", ":authority": "app.example", "x-test": "h2", "x-request-id": "trace-h2-1" })
      expect(r.status).toBe(200)
      expect(r.headers["x-request-id"]).toBe("trace-h2-1")
      // connection-specific headers never cross into HTTP/2
      expect(r.headers["connection"]).toBeUndefined()
      expect(r.headers["keep-alive"]).toBeUndefined()
      const seen = JSON.parse(r.body.toString()) as { url: string; headers: Record<string, string> }
      expect(seen.url).toBe("/api/one?q=1")
      expect(seen.headers.host).toBe("app.example")
      expect(seen.headers["x-test"]).toBe("h2")
      expect(seen.headers.via).toBe("2 sentinel")
      expect(Object.keys(seen.headers).some((k) => k.startsWith(":"))).toBe(false)
      const h1 = await request(env.proxy.port, { path: "/h1", headers: { host: "app.example" } })
      expect(h1.status).toBe(200)
      await waitUntil(() => jsonLines(env.accessLog).some((l) => l.path === "/api/one"), "the access line")
      const line = jsonLines(env.accessLog).find((l) => l.path === "/api/one")!
      expect([line.protocol, line.route_id, line.status]).toEqual(["HTTP/2.0", "api", 200])
      // metrics carry the protocol
      expect(await metricSum(env.proxy, "sentinel_requests_by_protocol_total", { listener: "main", protocol: "HTTP/2" })).toBeGreaterThanOrEqual(1)
      expect(await metricSum(env.proxy, "sentinel_requests_by_protocol_total", { listener: "main", protocol: "HTTP/1.1" })).toBeGreaterThanOrEqual(1)
    } finally {
      s.close()
    }
  })

  it("response headers reach HTTP/2 and HTTP/1.1 clients alike: repeated names, mixed case, a name that is an Object.prototype property; trace ids never indexed", async () => {
    const s = await connectH2(env.proxy.port)
    try {
      const r = await h2request(s, { ":path": "/x/cookies", ":authority": "app.example" })
      expect(r.status).toBe(200)
      expect(r.headers["set-cookie"]).toEqual(["a=1", "b=2"])
      expect(r.headers["x-mixed"]).toBe("M")
      expect(Object.getOwnPropertyDescriptor(r.headers, "__proto__")?.value).toBe("p")
      expect(r.body.toString()).toBe("ok")
      // the trace ids differ on every response: sent never-indexed, they do not churn the client's HPACK table
      expect((r.headers as unknown as Record<symbol, unknown>)[http2.sensitiveHeaders]).toEqual(expect.arrayContaining(["x-request-id", "x-correlation-id"]))
      expect(r.headers["x-request-id"]).toBe(r.headers["x-correlation-id"])
    } finally {
      s.close()
    }
    const h1 = await request(env.proxy.port, { path: "/x/cookies", headers: { host: "app.example" } })
    expect(h1.headers["set-cookie"]).toEqual(["a=1", "b=2"])
    expect(h1.headers["x-mixed"]).toBe("M")
  })

  it("cookies split across HTTP/2 fields reach the upstream as one header; a Host naming another authority is refused", async () => {
    const s = await connectH2(env.proxy.port)
    try {
      const r = await h2request(s, { ":path": "/c", ":authority": "app.example", cookie: ["a=1", "b=2"] })
      expect(JSON.parse(r.body.toString()).headers.cookie).toBe("a=1; b=2")
      const bad = await h2request(s, { ":path": "/mismatch", ":authority": "app.example", host: "evil.example" })
      expect(bad.status).toBe(400)
      expect(JSON.parse(bad.body.toString()).reason).toBe("host_mismatch")
      expect(origin.requests.some((q) => q.url === "/mismatch")).toBe(false)
    } finally {
      s.close()
    }
  })

  it("bodies stream both ways: an upload without content-length and a large download arrive byte-exact", async () => {
    const s = await connectH2(env.proxy.port)
    try {
      const parts = Array.from({ length: 40 }, (_, i) => patternBytes(32 * 1024, i * 32 * 1024))
      const up = await h2request(s, { ":method": "POST", ":path": "/x/upload", ":authority": "app.example" }, parts)
      expect(up.status).toBe(200)
      expect(JSON.parse(up.body.toString())).toEqual({ bytes: 40 * 32 * 1024, sha256: sha256(Buffer.concat(parts)) })
      const down = await h2request(s, { ":path": `/x/big?n=${3 * 1024 * 1024}`, ":authority": "app.example" })
      expect(down.status).toBe(200)
      expect(sha256(down.body)).toBe(sha256(patternBytes(3 * 1024 * 1024)))
    } finally {
      s.close()
    }
  })

  it("limits answer per stream: 431 for too many headers, 413 for a declared body over max-body-size; the session lives on", async () => {
    const s = await connectH2(env.proxy.port)
    try {
      const many: http2.OutgoingHttpHeaders = { ":path": "/many", ":authority": "app.example" }
      for (let i = 0; i < 120; i++) many[`x-h${i}`] = "v"
      expect((await h2request(s, many)).status).toBe(431)
      // the head announces 20 MiB; the answer comes before any of it is sent
      const big = s.request({ ":method": "POST", ":path": "/big-body", ":authority": "app.example", "content-length": String(20 * 1024 * 1024) })
      big.on("error", () => undefined)
      expect(await new Promise((r) => big.once("response", (h) => r(h[":status"])))).toBe(413)
      big.close()
      expect((await h2request(s, { ":path": "/still", ":authority": "app.example" })).status).toBe(200)
      expect(origin.requests.some((q) => q.url === "/many" || q.url === "/big-body")).toBe(false)
    } finally {
      s.close()
    }
  })

  it("a client that resets its stream aborts the upstream request at once; logged as 499", async () => {
    const s = await connectH2(env.proxy.port)
    try {
      const req = s.request({ ":path": "/r/hold", ":authority": "app.example" }, { endStream: true })
      req.on("error", () => undefined)
      await origin.arrived("/r/hold")
      req.close(http2.constants.NGHTTP2_CANCEL)
      await origin.aborted("/r/hold")
      await waitUntil(() => jsonLines(env.accessLog).some((l) => l.path === "/r/hold"), "the access line")
      expect(jsonLines(env.accessLog).find((l) => l.path === "/r/hold")!.status).toBe(499)
    } finally {
      s.close()
    }
  })
})

describe("static files over HTTP/2", () => {
  it("a file (whole, ranged, conditional) is served on an HTTP/2 stream", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-h2-www-"))
    const content = patternBytes(200 * 1024)
    // nginx's `root`: the URL path is looked up below it
    fs.mkdirSync(path.join(root, "files"))
    fs.writeFileSync(path.join(root, "files", "data.bin"), content)
    const env = await startH2({}, {
      routes: [{ id: "files", matches: [{ _tag: "PathPrefix", prefix: "/files" }], staticFiles: { root, compress: false } }] as never
    })
    try {
      const s = await connectH2(env.proxy.port)
      const whole = await h2request(s, { ":path": "/files/data.bin", ":authority": "app.example" })
      expect(whole.status).toBe(200)
      expect(sha256(whole.body)).toBe(sha256(content))
      const part = await h2request(s, { ":path": "/files/data.bin", ":authority": "app.example", range: "bytes=100-199" })
      expect([part.status, part.body.length]).toEqual([206, 100])
      expect(part.body.equals(content.subarray(100, 200))).toBe(true)
      const again = await h2request(s, { ":path": "/files/data.bin", ":authority": "app.example", "if-none-match": String(whole.headers.etag) })
      expect(again.status).toBe(304)
      s.close()
    } finally {
      await env.close()
      fs.rmSync(root, { recursive: true, force: true })
    }
  })
})

describe("trailers", () => {
  it("an upstream's trailer fields reach HTTP/2 and chunked HTTP/1.1 clients", async () => {
    const trailing = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain", trailer: "x-checksum" })
      res.write("part one;")
      res.addTrailers({ "x-checksum": "abc123", "grpc-status": "0" })
      res.end("part two")
    })
    await new Promise<void>((r) => trailing.listen(0, "127.0.0.1", r))
    const env = await startH2({}, { upstreams: [{ id: "o", targets: [{ address: `127.0.0.1:${(trailing.address() as AddressInfo).port}` }] }] })
    try {
      const s = await connectH2(env.proxy.port)
      const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const req = s.request({ ":path": "/t", ":authority": "app.example" }, { endStream: true })
        let got: http2.IncomingHttpHeaders = {}
        req.on("trailers", (t) => (got = t))
        req.resume()
        req.on("end", () => resolve(got))
        req.on("error", reject)
      })
      s.close()
      expect([trailers["x-checksum"], trailers["grpc-status"]]).toEqual(["abc123", "0"])
      const h1 = await new Promise<NodeJS.Dict<string>>((resolve, reject) => {
        http.get({ host: "127.0.0.1", port: env.proxy.port, path: "/t", headers: { host: "app.example" }, agent: false }, (res) => {
          res.resume()
          res.on("end", () => resolve(res.trailers))
        }).on("error", reject)
      })
      expect([h1["x-checksum"], h1["grpc-status"]]).toEqual(["abc123", "0"])
    } finally {
      await env.close()
      await new Promise<void>((r) => trailing.close(() => r()))
    }
  })
})

describe("HTTP/2 defences", () => {
  it("rapid reset: a session resetting stream after stream gets GOAWAY ENHANCE_YOUR_CALM before it starts more than a bounded number of upstream requests", async () => {
    const env = await startH2({ maxEarlyResets: 20, maxConcurrentStreams: 10 })
    try {
      const before = origin.requests.length
      const s = await connectH2(env.proxy.port)
      const goaway = new Promise<number>((r) => s.once("goaway", (code: number) => r(code)))
      s.on("error", () => undefined)
      // each stream is opened and reset at once, as fast as the client can (bounded count)
      for (let i = 0; i < 500 && !s.destroyed && !s.closed; i++) {
        const req = s.request({ ":path": `/rr/hold?i=${i}`, ":authority": "app.example" }, { endStream: true })
        req.on("error", () => undefined)
        req.close(http2.constants.NGHTTP2_CANCEL)
        if (i % 10 === 9) await new Promise((r) => setImmediate(r))
      }
      expect(await goaway).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
      await waitUntil(() => s.destroyed || s.closed, "the session closed")
      // at most the threshold plus one window of concurrent streams ever reached the origin
      expect(origin.requests.length - before).toBeLessThanOrEqual(20 + 10)
      expect(await metricSum(env.proxy, "sentinel_http2_defences_total", { reason: "rapid_reset" })).toBe(1)
      // other clients are unaffected
      const other = await connectH2(env.proxy.port)
      expect((await h2request(other, { ":path": "/ok", ":authority": "app.example" })).status).toBe(200)
      other.close()
    } finally {
      await env.close()
    }
  })

  it("keepalive-max-requests: after that many streams the session gets a graceful GOAWAY; the streams already open complete", async () => {
    const env = await startH2({ keepaliveMaxRequests: 3 })
    try {
      const s = await connectH2(env.proxy.port)
      const goaway = new Promise<number>((r) => s.once("goaway", (code: number) => r(code)))
      const replies = await Promise.all([1, 2, 3].map((i) => h2request(s, { ":path": `/k${i}`, ":authority": "app.example" })))
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200])
      expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR)
      expect(await metricSum(env.proxy, "sentinel_http2_defences_total", { reason: "max_requests" })).toBe(1)
    } finally {
      await env.close()
    }
  })

  it("an idle session is closed at the keep-alive timeout; one with a stream open past it is not", async () => {
    const env = await startH2({ keepaliveTimeout: Duration.millis(300) })
    try {
      const s = await connectH2(env.proxy.port)
      expect((await h2request(s, { ":path": "/idle", ":authority": "app.example" })).status).toBe(200)
      // a stream open for longer than the timeout keeps the session: it is not idle
      const slow = await h2request(s, { ":path": "/slow?ms=900", ":authority": "app.example" })
      expect([slow.status, slow.body.toString()]).toEqual([200, "start\nend\n"])
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("session still open")), 5000)
        s.once("close", () => {
          clearTimeout(t)
          resolve()
        })
      })
      expect(await metricSum(env.proxy, "sentinel_http2_defences_total", { reason: "idle_timeout" })).toBe(1)
    } finally {
      await env.close()
    }
  })

  it("a stream whose reader never opens its window releases the upstream after slow-reader-timeout-secs; the session lives on", async () => {
    const env = await startH2({}, { limits: { slowReaderTimeout: Duration.millis(400), responseBufferSize: 64 * 1024 } as never })
    try {
      const s = await connectH2(env.proxy.port)
      const stuck = s.request({ ":path": `/w/big?n=${64 * 1024 * 1024}`, ":authority": "app.example" }, { endStream: true })
      stuck.on("error", () => undefined)
      // never read: the stream's flow-control window stays shut
      stuck.pause()
      await origin.aborted(`/w/big?n=${64 * 1024 * 1024}`)
      // the proxy reset the stream: once the client reads what was delivered, it sees the end
      stuck.resume()
      await new Promise<void>((r) => (stuck.closed ? r() : stuck.once("close", () => r())))
      expect(stuck.rstCode).not.toBe(http2.constants.NGHTTP2_NO_ERROR)
      expect((await h2request(s, { ":path": "/w/after", ":authority": "app.example" })).status).toBe(200)
      s.close()
      await waitUntil(() => jsonLines(env.accessLog).some((l) => l.path === "/w/big"), "the access line")
      expect(jsonLines(env.accessLog).find((l) => l.path === "/w/big")!.error).toBe("slow_reader")
    } finally {
      await env.close()
    }
  })

  it("drain: open sessions get GOAWAY, the stream in flight finishes", async () => {
    const env = await startH2()
    const s = await connectH2(env.proxy.port)
    const goaway = new Promise<void>((r) => s.once("goaway", () => r()))
    // within the graceful timeout (200 ms)
    const inFlight = h2request(s, { ":path": "/d/slow?ms=100", ":authority": "app.example" })
    await origin.arrived("/d/slow?ms=100")
    const closing = env.close()
    await goaway
    const r = await inFlight
    expect(r.status).toBe(200)
    expect(r.body.toString()).toBe("start\nend\n")
    await closing
  })
})
