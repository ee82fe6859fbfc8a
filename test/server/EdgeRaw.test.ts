/**
 * Raw-socket tests of the edge (exact bytes in, exact answer out): each rejected class and each
 * head limit answers its status with `Connection: close`, and the upstream never sees the
 * request (nor a smuggled second one). Accepted oddities reach the upstream re-serialised.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"
import { headersOf, rawRequest } from "../support/rawHttp.js"

let origin: EchoOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope

beforeAll(async () => {
  origin = await startEchoOrigin("edge")
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
        routes: [
          // a header the edge drops must not steer routing either (it never reaches the upstream)
          { id: "by-underscore", priority: 100, matches: [{ _tag: "Header", name: "x_route" }], builtinHandler: "health" },
          { id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }
        ],
        limits: { maxHeaderSize: 4096, maxHeaderCount: 20, maxUriLength: 512, maxBodySize: 1000, maxHeaderLineSize: 1024 } as never
      })
    ).pipe(Scope.extend(scope))
  )
})

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
})

const H = "Host: a.example\r\n"
const many = (n: number) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join("")

/** [name, request bytes, expected status] — every one must be refused before the upstream. */
const REJECTED: ReadonlyArray<readonly [string, string, number]> = [
  ["duplicate Host", `GET /dup-host HTTP/1.1\r\n${H}${H}\r\n`, 400],
  ["Host with a space", `GET /h HTTP/1.1\r\nHost: a b\r\n\r\n`, 400],
  ["Host with userinfo", `GET /h HTTP/1.1\r\nHost: a@evil.example\r\n\r\n`, 400],
  ["missing Host on 1.1", `GET /h HTTP/1.1\r\n\r\n`, 400],
  ["absolute-form authority differs from Host", `GET http://evil.example/x HTTP/1.1\r\n${H}\r\n`, 400],
  ["HTTP/0.9", `GET /\r\n\r\n`, 400],
  ["HTTP/2.0 on h1", `GET / HTTP/2.0\r\n${H}\r\n`, 505],
  ["HTTP/1.32", `GET / HTTP/1.32\r\n${H}\r\n`, 400],
  ["CONNECT", `CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n`, 405],
  ["TRACE", `TRACE / HTTP/1.1\r\n${H}\r\n`, 405],
  ["asterisk-form without OPTIONS", `GET * HTTP/1.1\r\n${H}\r\n`, 400],
  ["CL.TE", `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX`, 400],
  ["TE.CL", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`, 400],
  ["duplicate Content-Length", `POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 0\r\n\r\nA`, 400],
  ["Content-Length +1", `POST / HTTP/1.1\r\n${H}Content-Length: +1\r\n\r\nA`, 400],
  ["TE xchunked (not exactly chunked: 501, as nginx)", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n1\r\nA\r\n0\r\n\r\n`, 501],
  ["TE chunked, identity (llhttp)", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n1\r\nA\r\n0\r\n\r\n`, 400],
  ["TE gzip, chunked", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n`, 501],
  ["TE on HTTP/1.0", `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n`, 400],
  ["space before colon", `GET / HTTP/1.1\r\n${H}Content-Length : 0\r\n\r\n`, 400],
  ["obs-fold", `GET / HTTP/1.1\r\n${H}X-Foo: a\r\n b\r\n\r\n`, 400],
  ["bare LF", `GET / HTTP/1.1\n${H.replace("\r\n", "\n")}\n`, 400],
  ["NUL in a value", `GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, 400],
  ["bad chunk size", `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x1\r\nA\r\n0\r\n\r\n`, 400],
  ["path with a backslash", `GET /a\\b HTTP/1.1\r\n${H}\r\n`, 400],
  ["too many headers (limit 20)", `GET / HTTP/1.1\r\n${H}${many(20)}\r\n`, 431],
  ["header block over max-header-size (4096 wire bytes)", `GET / HTTP/1.1\r\n${H}${Array.from({ length: 5 }, (_, i) => `X-B${i}: ${"b".repeat(900)}\r\n`).join("")}\r\n`, 431],
  ["header line over max-header-line-size", `GET / HTTP/1.1\r\n${H}X-Long: ${"l".repeat(1100)}\r\n\r\n`, 431],
  ["URI over max-uri-length", `GET /${"u".repeat(600)} HTTP/1.1\r\n${H}\r\n`, 414]
]

describe("edge: rejected before the upstream (raw sockets)", () => {
  for (const [name, bytes, status] of REJECTED) {
    it(`${name} -> ${status}`, async () => {
      const before = origin.requests.length
      const reply = await rawRequest(proxy.port, bytes)
      expect(reply.status, reply.raw.slice(0, 200)).toBe(status)
      // one answer, then the connection is closed (nothing else on it is trusted)
      expect(reply.statuses).toEqual([status])
      expect(reply.closed).toBe(true)
      expect(headersOf(reply.raw)["connection"]).toBe("close")
      expect(origin.requests.length).toBe(before)
    })
  }

  it("answers 413 for a declared body over max-body-size before the body is sent", async () => {
    const before = origin.requests.length
    // only the head: the answer must come without waiting for the 2000 bytes
    const reply = await rawRequest(proxy.port, `POST /upload HTTP/1.1\r\n${H}Content-Length: 2000\r\n\r\n`, { responses: 1 })
    expect(reply.status).toBe(413)
    expect(headersOf(reply.raw)["connection"]).toBe("close")
    expect(reply.elapsedMs).toBeLessThan(1000)
    expect(origin.requests.length).toBe(before)
  })

  it("a body that turns invalid mid-stream (framing field in trailers): 400, the upstream exchange is aborted, never completed", async () => {
    const reply = await rawRequest(
      proxy.port,
      `POST /trailer HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\nContent-Length: 50\r\n\r\n`
    )
    expect(reply.status).toBe(400)
    expect(reply.closed).toBe(true)
    // the head was valid, so the upstream may have seen the start of it: it must see it cut off
    if (origin.requests.some((r) => r.url === "/trailer")) await origin.aborted("/trailer")
  })

  it("a pipelined request after a rejected one never reaches the upstream", async () => {
    const before = origin.requests.length
    const reply = await rawRequest(proxy.port, `GET /x HTTP/1.1\r\n${H}${H}\r\nGET /second HTTP/1.1\r\n${H}\r\n`)
    expect(reply.statuses).toEqual([400])
    expect(origin.requests.length).toBe(before)
  })

  it("a request pipelined behind a Host-less HTTP/1.1 one never reaches the upstream (node's own Host check would let it through)", async () => {
    const reply = await rawRequest(proxy.port, `GET /no-host HTTP/1.1\r\n\r\nGET /behind-no-host HTTP/1.1\r\n${H}\r\n`, { end: true })
    expect(reply.statuses).toEqual([400])
    expect(headersOf(reply.raw)["content-type"]).toBe("application/json")
    expect(reply.closed).toBe(true)
    // a later request is forwarded after anything the first connection could have sent upstream
    expect((await request(proxy.port, { path: "/after-no-host" })).status).toBe(200)
    expect(origin.requests.map((r) => r.url)).not.toContain("/behind-no-host")
  })

  it("garbage pipelined behind a valid request: the valid answer comes first, then 400 and close (no desync)", async () => {
    const reply = await rawRequest(proxy.port, `GET /first HTTP/1.1\r\n${H}\r\nGARBAGE\r\n\r\n`)
    expect(reply.statuses).toEqual([200, 400])
    expect(reply.closed).toBe(true)
  })

  it("counts every rejection by reason", async () => {
    const text = await proxy.metrics.registry.getSingleMetricAsString("sentinel_rejected_requests_total")
    for (const reason of ["host_duplicate", "host_mismatch", "http09", "version_unsupported", "method_connect", "headers_too_many", "uri_too_long", "body_too_large"]) {
      expect(text).toContain(`reason="${reason}"`)
    }
  })
})

describe("edge: what reaches the upstream is re-serialised", () => {
  const lastSeen = () => origin.requests[origin.requests.length - 1]
  const pairs = (raw: Array<string>) => {
    const out: Array<[string, string]> = []
    for (let i = 0; i < raw.length; i += 2) out.push([raw[i].toLowerCase(), raw[i + 1]])
    return out
  }

  it("an odd but legal Transfer-Encoding goes upstream as one canonical `chunked`", async () => {
    const reply = await rawRequest(
      proxy.port,
      `POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: ,CHUNKED\r\nConnection: close\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n`
    )
    expect(reply.status).toBe(200)
    expect(reply.raw).toContain('"bytes":5')
    const framing = pairs(lastSeen().rawHeaders).filter(([n]) => n === "transfer-encoding" || n === "content-length")
    // one canonical description of the body, never the client's spelling
    expect([[["transfer-encoding", "chunked"]], [["content-length", "5"]]]).toContainEqual(framing)
  })

  it("a Content-Length is forwarded as plain decimal", async () => {
    const reply = await rawRequest(proxy.port, `POST /upload HTTP/1.1\r\n${H}Content-Length: 005\r\nConnection: close\r\n\r\nHELLO`)
    expect(reply.status).toBe(200)
    const cl = pairs(lastSeen().rawHeaders).filter(([n]) => n === "content-length" || n === "transfer-encoding")
    expect(cl).toEqual([["content-length", "5"]])
  })

  it("headers with underscores are dropped (default) and counted; the request still goes through", async () => {
    const reply = await rawRequest(proxy.port, `GET /underscore HTTP/1.1\r\n${H}X_Forwarded_For: 6.6.6.6\r\nX-Ok: 1\r\nConnection: close\r\n\r\n`)
    expect(reply.status).toBe(200)
    const names = pairs(lastSeen().rawHeaders).map(([n]) => n)
    expect(names).toContain("x-ok")
    expect(names).not.toContain("x_forwarded_for")
    const text = await proxy.metrics.registry.getSingleMetricAsString("sentinel_rejected_requests_total")
    expect(text).toContain('reason="underscore_header_dropped"')
  })

  it("a dropped underscore header is invisible to routing too: the request takes the route it would without it", async () => {
    const reply = await rawRequest(proxy.port, `GET /routed HTTP/1.1\r\n${H}X_Route: 1\r\nConnection: close\r\n\r\n`)
    expect(reply.status).toBe(200)
    expect(lastSeen().url).toBe("/routed")
  })

  it("the path is normalised before routing and forwarding; Host is lower-cased", async () => {
    const reply = await rawRequest(proxy.port, `GET /a//b/./c/../%7Ed?q=1 HTTP/1.1\r\nHost: A.Example\r\nConnection: close\r\n\r\n`)
    expect(reply.status).toBe(200)
    expect(lastSeen().url).toBe("/a/b/~d?q=1")
    expect(pairs(lastSeen().rawHeaders).find(([n]) => n === "host")?.[1]).toBe("a.example")
  })

  it("client X-Forwarded-* from an untrusted peer are replaced by what the proxy saw", async () => {
    const reply = await rawRequest(
      proxy.port,
      `GET /xff HTTP/1.1\r\n${H}X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nConnection: close\r\n\r\n`
    )
    expect(reply.status).toBe(200)
    const seen = pairs(lastSeen().rawHeaders)
    expect(seen.filter(([n]) => n === "x-forwarded-for")).toEqual([["x-forwarded-for", "127.0.0.1"]])
    expect(seen.find(([n]) => n === "x-forwarded-proto")?.[1]).toBe("http")
    expect(seen.find(([n]) => n === "forwarded")).toBeUndefined()
    expect(seen.find(([n]) => n === "x-real-ip")).toBeUndefined()
  })
})

describe("edge: trusted proxies", () => {
  it("believes X-Forwarded-For only from a configured CIDR", async () => {
    const o = await startEchoOrigin("trusted")
    const s = Effect.runSync(Scope.make())
    try {
      const p = await Effect.runPromise(
        startProxy(
          testConfig({
            listeners: [{ id: "main", address: "127.0.0.1:0", trustedProxies: ["127.0.0.0/8"] } as never],
            upstreams: [{ id: "o", targets: [{ address: o.address }] }],
            routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }],
            system: { gracefulShutdownTimeout: Duration.millis(100) } as never
          })
        ).pipe(Scope.extend(s))
      )
      const reply = await rawRequest(p.port, `GET /t HTTP/1.1\r\n${H}X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n`)
      expect(reply.status).toBe(200)
      const raw = o.requests[0].rawHeaders
      const xff = raw[raw.findIndex((n, i) => i % 2 === 0 && n.toLowerCase() === "x-forwarded-for") + 1]
      expect(xff).toBe("203.0.113.9, 127.0.0.1")
    } finally {
      await Effect.runPromise(Scope.close(s, Exit.void))
      await o.close()
    }
  })
})
