/**
 * End-to-end behaviour of the foundation: real proxy in-process on port 0,
 * real origins, real sockets.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as net from "node:net"
import { echoOrigin, patternBytes, sha256 } from "../support/origins.js"
import { hangingOrigin, refusingPort, scoped } from "../support/faults.js"
import { request, startProxy, testConfig } from "../support/proxy.js"

const upstreamRoute = (id: string, prefix: string, upstream: string, extra: object = {}) => ({
  id,
  matches: [{ _tag: "PathPrefix" as const, prefix }],
  upstream,
  ...extra
})

describe("proxy foundation", () => {
  it.scoped("forwards a GET and returns the origin's answer with a trace id", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin("a")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [upstreamRoute("all", "/", "a")]
        })
      )
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/hello?x=1" }))
      expect(reply.status).toBe(200)
      const seen = JSON.parse(reply.body.toString())
      expect(seen.url).toBe("/hello?x=1")
      expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1")
      expect(seen.headers["x-forwarded-proto"]).toBe("http")
      expect(seen.headers["via"]).toBe("1.1 sentinel")
      expect(seen.headers["x-request-id"]).toMatch(/^[1-9A-Za-z]{11}$/)
      expect(reply.headers["x-request-id"]).toBe(seen.headers["x-request-id"])
      // hop-by-hop from the origin (and the one its Connection header names) never reach the client
      expect(reply.headers["x-hop"]).toBeUndefined()
      expect(reply.headers["keep-alive"]).toBeUndefined()
      expect(reply.headers["x-origin"]).toBe("a")
    })
  )
})

describe("bodies", () => {
  it.scoped("streams a large POST body to the origin byte-exact (chunked and sized)", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({ upstreams: [{ id: "a", targets: [{ address: origin.address }] }], routes: [upstreamRoute("all", "/", "a")] })
      )
      const body = patternBytes(5 * 1024 * 1024 + 13)
      async function* chunks() {
        for (let i = 0; i < body.length; i += 100_000) yield body.subarray(i, i + 100_000)
      }
      const chunked = yield* Effect.promise(() => request(proxy.port, { method: "POST", path: "/upload", body: chunks() }))
      expect(chunked.status).toBe(200)
      expect(JSON.parse(chunked.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) })
      const sized = yield* Effect.promise(() =>
        request(proxy.port, { method: "POST", path: "/upload", body, headers: { "content-length": String(body.length) } })
      )
      expect(JSON.parse(sized.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) })
    })
  )

  it.scoped("streams a large response body to the client byte-exact", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({ upstreams: [{ id: "a", targets: [{ address: origin.address }] }], routes: [upstreamRoute("all", "/", "a")] })
      )
      const n = 8 * 1024 * 1024 + 5
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/big?n=" + n }))
      expect(reply.status).toBe(200)
      expect(reply.body.length).toBe(n)
      expect(sha256(reply.body)).toBe(sha256(patternBytes(n)))
    })
  )

  it.scoped("answers 413 early for a declared body over the limit, without contacting the origin", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [upstreamRoute("all", "/", "a")],
          limits: { maxBodySize: 1000 }
        })
      )
      const reply = yield* Effect.promise(() =>
        request(proxy.port, { method: "POST", path: "/upload", body: Buffer.alloc(2000), headers: { "content-length": "2000" } })
      )
      expect(reply.status).toBe(413)
      expect(JSON.parse(reply.body.toString()).trace_id).toBe(reply.headers["x-request-id"])
      expect(origin.requests.length).toBe(0)
    })
  )

  it.scopedLive("a chunked body over the limit: 413 body_too_large, then the connection closes (the rest of the body is unread)", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [upstreamRoute("all", "/", "a")],
          limits: { maxBodySize: 1000 }
        })
      )
      const s = net.connect(proxy.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => s.destroy()))
      let out = ""
      const closed = new Promise<void>((resolve) => {
        s.on("data", (c: Buffer) => (out += c.toString("latin1")))
        s.on("close", () => resolve())
      })
      // 600 bytes, then 600 more (over 1000), in one write: the head reaches the origin, the body is cut
      const chunk = "258\r\n" + "x".repeat(600) + "\r\n"
      s.write(`POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}${chunk}`)
      yield* Effect.promise(() => closed)
      expect(out.startsWith("HTTP/1.1 413")).toBe(true)
      expect(out).toContain("body_too_large")
    })
  )

  it.scoped("answers 413 for a chunked body that grows over the limit", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [upstreamRoute("all", "/", "a")],
          limits: { maxBodySize: 100_000 }
        })
      )
      async function* chunks() {
        for (let i = 0; i < 20; i++) yield Buffer.alloc(10_000, 1)
      }
      const reply = yield* Effect.promise(() => request(proxy.port, { method: "POST", path: "/upload", body: chunks() }).catch((e) => ({ status: -1, error: e })))
      // Either a clean 413, or the connection closed after the 413 was written while we were still sending.
      expect([413, -1]).toContain(reply.status)
    })
  )
})

describe("failures", () => {
  it.scoped("answers 502 with a JSON body when the upstream refuses connections", () =>
    Effect.gen(function* () {
      const refusing = yield* scoped(refusingPort)
      const proxy = yield* startProxy(
        testConfig({ upstreams: [{ id: "dead", targets: [{ address: `127.0.0.1:${refusing.port}` }] }], routes: [upstreamRoute("all", "/", "dead")] })
      )
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/x", headers: { "x-request-id": "abc-123" } }))
      expect(reply.status).toBe(502)
      const body = JSON.parse(reply.body.toString())
      expect(body).toEqual({ error: "502 Bad Gateway", reason: "connect_refused", trace_id: "abc-123" })
      expect(reply.headers["x-request-id"]).toBe("abc-123")
    })
  )

  it.scoped("answers 504 at the configured read timeout when the upstream hangs", () =>
    Effect.gen(function* () {
      const hanging = yield* scoped(hangingOrigin)
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "slow", targets: [{ address: `127.0.0.1:${hanging.port}` }], timeouts: { read: Duration.millis(300) } as never }],
          routes: [upstreamRoute("all", "/", "slow")]
        })
      )
      const started = Date.now()
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/x" }))
      const elapsed = Date.now() - started
      expect(reply.status).toBe(504)
      expect(JSON.parse(reply.body.toString()).reason).toBe("timeout_headers")
      expect(elapsed).toBeGreaterThanOrEqual(280)
      expect(elapsed).toBeLessThan(3000)
    })
  )

  it.scoped("aborts the upstream request when the client goes away", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({ upstreams: [{ id: "a", targets: [{ address: origin.address }] }], routes: [upstreamRoute("all", "/", "a")] })
      )
      const socket = net.connect(proxy.port, "127.0.0.1")
      socket.write("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* Effect.promise(() => origin.arrived("/hold"))
      socket.destroy()
      // The origin sees its request closed before an answer: the proxy aborted it.
      yield* Effect.promise(() => origin.aborted("/hold"))
    })
  )

  it.scoped("answers 404 JSON with the trace id when no route matches", () =>
    Effect.gen(function* () {
      const proxy = yield* startProxy(testConfig({ routes: [{ id: "h", matches: [{ _tag: "Path", path: "/health" }], builtinHandler: "health" }] }))
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/nope" }))
      expect(reply.status).toBe(404)
      expect(JSON.parse(reply.body.toString())).toMatchObject({ error: "404 Not Found", trace_id: reply.headers["x-request-id"] })
      const health = yield* Effect.promise(() => request(proxy.port, { path: "/health" }))
      expect(health.status).toBe(200)
      expect(JSON.parse(health.body.toString())).toEqual({ status: "healthy" })
    })
  )
})

describe("request buffering (limits.request-buffer-size)", () => {
  const config = (address: string, requestBufferSize?: number) =>
    testConfig({
      upstreams: [{ id: "o", targets: [{ address }] }],
      routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }],
      ...(requestBufferSize === undefined ? {} : { limits: { requestBufferSize } as never })
    })
  const head = (path: string, length: number) => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${length}\r\n\r\n`
  const replyOf = (s: net.Socket) =>
    new Promise<string>((resolve) => {
      let out = ""
      s.on("data", (c: Buffer) => {
        out += c.toString("latin1")
        // status line and the JSON the upload origin answers (framing aside)
        const json = /\{.*\}/s.exec(out)
        if (json !== null) resolve(`${out.slice(0, out.indexOf("\r\n"))}\n${json[0]}`)
      })
    })

  it.scopedLive("a small body is read whole before the upstream sees the request (the default)", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(config(origin.address))
      const s = net.connect(proxy.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => s.destroy()))
      const reply = replyOf(s)
      s.write(head("/upload", 10) + "hello")
      // a request on another connection, answered after the proxy has long seen the first head
      expect((yield* Effect.promise(() => request(proxy.port, { path: "/barrier" }))).status).toBe(200)
      expect(origin.requests.map((r) => r.url)).not.toContain("/upload")
      s.write("world")
      const text = yield* Effect.promise(() => reply)
      expect(text.startsWith("HTTP/1.1 200")).toBe(true)
      expect(JSON.parse(text.slice(text.indexOf("\n") + 1))).toEqual({ bytes: 10, sha256: sha256(Buffer.from("helloworld")) })
    })
  )

  it.scopedLive("a body that arrives with its head in one piece is forwarded byte-exact, and again on the same connection", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(config(origin.address))
      const s = net.connect(proxy.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => s.destroy()))
      // two requests, each head and body in one write: each body is one chunk of its own
      for (const body of [patternBytes(16 * 1024), patternBytes(16 * 1024 + 7).reverse()]) {
        const reply = replyOf(s)
        s.write(Buffer.concat([Buffer.from(head("/upload", body.length)), body]))
        const text = yield* Effect.promise(() => reply)
        s.removeAllListeners("data")
        expect(text.startsWith("HTTP/1.1 200")).toBe(true)
        expect(JSON.parse(text.slice(text.indexOf("\n") + 1))).toEqual({ bytes: body.length, sha256: sha256(body) })
      }
    })
  )

  it.scoped("a chunked body that ends within the buffer size goes upstream whole with a Content-Length; a longer one streams on chunked after what was read", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(config(origin.address))
      async function* chunked(body: Buffer) {
        for (let i = 0; i < body.length; i += 10_000) yield body.subarray(i, i + 10_000)
      }
      const seenHeaders = (url: string) => {
        const raw = origin.requests.find((r) => r.url === url)!.rawHeaders
        const h: Record<string, string> = {}
        for (let i = 0; i < raw.length; i += 2) h[raw[i]!.toLowerCase()] = raw[i + 1]!
        return h
      }
      for (const [url, body] of [["/small/upload", patternBytes(30_007)], ["/large/upload", patternBytes(200_003)]] as const) {
        const reply = yield* Effect.promise(() => request(proxy.port, { method: "POST", path: url, body: chunked(body) }))
        expect(reply.status).toBe(200)
        expect(JSON.parse(reply.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) })
      }
      expect(seenHeaders("/small/upload")["content-length"]).toBe("30007")
      expect(seenHeaders("/small/upload")["transfer-encoding"]).toBeUndefined()
      expect(seenHeaders("/large/upload")["transfer-encoding"]).toBe("chunked")
      expect(seenHeaders("/large/upload")["content-length"]).toBeUndefined()
    })
  )

  it.scopedLive("request-buffer-size 0 streams a chunked body: the upstream sees it first; a bad chunk after that is a 400 and the connection closes", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(config(origin.address, 0))
      const s = net.connect(proxy.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => s.destroy()))
      let out = ""
      s.on("error", () => undefined)
      const closed = new Promise<void>((resolve) => {
        s.on("data", (c: Buffer) => (out += c.toString("latin1")))
        s.on("close", () => resolve())
      })
      s.write("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
      yield* Effect.promise(() => origin.arrived("/upload"))
      s.write("zz\r\n")
      yield* Effect.promise(() => closed)
      expect(out.startsWith("HTTP/1.1 400")).toBe(true)
    })
  )

  it.scopedLive("request-buffer-size 0 streams: the upstream sees the request before its body is complete", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(config(origin.address, 0))
      const s = net.connect(proxy.port, "127.0.0.1")
      yield* Effect.addFinalizer(() => Effect.sync(() => s.destroy()))
      const reply = replyOf(s)
      s.write(head("/upload", 10) + "hello")
      yield* Effect.promise(() => origin.arrived("/upload"))
      s.write("world")
      const text = yield* Effect.promise(() => reply)
      expect(JSON.parse(text.slice(text.indexOf("\n") + 1))).toEqual({ bytes: 10, sha256: sha256(Buffer.from("helloworld")) })
    })
  )
})
