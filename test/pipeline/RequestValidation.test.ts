import * as fc from "fast-check"
import * as http from "node:http"
import * as net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { parseAuthority } from "../../src/http/Authority.js"
import { parseCidr } from "../../src/http/Cidr.js"
import { compileTrustedProxies, resolveForwarded, upstreamHeaders } from "../../src/http/Forwarded.js"
import { normalizePath } from "../../src/http/Path.js"
import { type IncomingRequestHead, type ValidatedRequest, validateRequest } from "../../src/pipeline/validate/RequestHead.js"
import {
  defaultRequestValidationConfig as defaults,
  nodeServerOptionsFor,
  type RequestValidationConfig
} from "../../src/pipeline/validate/Settings.js"

const head = (
  method: string,
  url: string,
  headers: ReadonlyArray<string> = ["Host", "a.example"],
  httpVersion = "1.1"
): IncomingRequestHead => ({ method, url, httpVersion, rawHeaders: headers })

const ok = (r: ReturnType<typeof validateRequest>): ValidatedRequest => {
  if (r._tag !== "Valid") throw new Error(`expected Valid, got ${r.status} ${r.reason}`)
  return r.request
}

const rejected = (r: ReturnType<typeof validateRequest>) => (r._tag === "Rejected" ? [r.status, r.reason] : ["valid"])

describe("validateRequest: vectors that reach the application in Node 20 (edge-security.md §2.1)", () => {
  // Each case: the invariant is the status/reason for that attack class.
  const cases: ReadonlyArray<[string, IncomingRequestHead, ReadonlyArray<unknown>]> = [
    ["#19 HTTP/0.9", head("GET", "/", [], "0.9"), [400, "http09"]],
    ["#20 HTTP/2.0 over h1", head("GET", "/", ["Host", "a"], "2.0"), [505, "version-unsupported"]],
    ["#20 HTTP/1.2", head("GET", "/", ["Host", "a"], "1.2"), [505, "version-unsupported"]],
    ["#21 missing Host on 1.1", head("GET", "/", []), [400, "host-missing"]],
    ["#21 two Host", head("GET", "/", ["Host", "a", "Host", "b"]), [400, "host-duplicate"]],
    ["#21 two identical Host", head("GET", "/", ["Host", "a", "host", "a"]), [400, "host-duplicate"]],
    ["#21 Host with space", head("GET", "/", ["Host", "a b"]), [400, "host-invalid"]],
    ["#21 Host with userinfo", head("GET", "/", ["Host", "a@evil"]), [400, "host-invalid"]],
    ["#21 Host with bad port", head("GET", "/", ["Host", "a:99999"]), [400, "host-invalid"]],
    ["#21 Host with slash", head("GET", "/", ["Host", "a/b"]), [400, "host-invalid"]],
    ["#21 empty Host", head("GET", "/", ["Host", ""]), [400, "host-invalid"]],
    ["#22 absolute-form, other authority", head("GET", "http://evil.example/x"), [400, "host-mismatch"]],
    ["#22 absolute-form with userinfo", head("GET", "http://u@a.example/x"), [400, "absolute-userinfo"]],
    ["#22 absolute-form ftp", head("GET", "ftp://a.example/x"), [400, "absolute-scheme"]],
    ["#23 GET *", head("GET", "*"), [400, "asterisk-form"]],
    ["#23 CONNECT", head("CONNECT", "a.example:443"), [405, "method-connect"]],
    ["TRACE", head("TRACE", "/"), [405, "method-trace"]],
    ["relative target", head("GET", "x/y"), [400, "target-invalid"]],
    ["fragment", head("GET", "/a#b"), [400, "target-fragment"]],
    ["#1 CL + TE", head("POST", "/", ["Host", "a", "Content-Length", "6", "Transfer-Encoding", "chunked"]), [400, "content-length-and-transfer-encoding"]],
    ["#2 TE + CL", head("POST", "/", ["Host", "a", "Transfer-Encoding", "chunked", "Content-Length", "3"]), [400, "content-length-and-transfer-encoding"]],
    ["#3 duplicate CL", head("POST", "/", ["Host", "a", "Content-Length", "1", "Content-Length", "1"]), [400, "content-length-duplicate"]],
    ["#4 CL +1", head("POST", "/", ["Host", "a", "Content-Length", "+1"]), [400, "content-length-invalid"]],
    ["#4 CL 0x1", head("POST", "/", ["Host", "a", "Content-Length", "0x1"]), [400, "content-length-invalid"]],
    ["#4 CL 1 2", head("POST", "/", ["Host", "a", "Content-Length", "1 2"]), [400, "content-length-invalid"]],
    ["#4 CL list", head("POST", "/", ["Host", "a", "Content-Length", "1, 1"]), [400, "content-length-invalid"]],
    ["#4 CL 10^23", head("POST", "/", ["Host", "a", "Content-Length", "100000000000000000000000"]), [400, "content-length-invalid"]],
    ["#5 TE xchunked", head("POST", "/", ["Host", "a", "Transfer-Encoding", "xchunked"]), [501, "transfer-encoding-unsupported"]],
    ["#5 TE chunked, identity", head("POST", "/", ["Host", "a", "Transfer-Encoding", "chunked, identity"]), [501, "transfer-encoding-unsupported"]],
    ["#5 TE chunked, chunked", head("POST", "/", ["Host", "a", "Transfer-Encoding", "chunked, chunked"]), [501, "transfer-encoding-unsupported"]],
    ["#5 TE gzip, chunked", head("POST", "/", ["Host", "a", "Transfer-Encoding", "gzip, chunked"]), [501, "transfer-encoding-unsupported"]],
    ["#5 TE \\xa0chunked", head("POST", "/", ["Host", "a", "Transfer-Encoding", "\xa0chunked"]), [501, "transfer-encoding-unsupported"]],
    ["#5 two TE headers", head("POST", "/", ["Host", "a", "Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked"]), [400, "transfer-encoding-duplicate"]],
    ["TE on HTTP/1.0", head("POST", "/", ["Host", "a", "Transfer-Encoding", "chunked"], "1.0"), [400, "transfer-encoding-http10"]],
    ["#7 obs-fold in value", head("GET", "/", ["Host", "a", "X-Foo", "a\r\n b"]), [400, "header-value-invalid"]],
    ["#11 NUL in value", head("GET", "/", ["Host", "a", "X", "a\x00b"]), [400, "header-value-invalid"]],
    ["#11 DEL in value", head("GET", "/", ["Host", "a", "X", "a\x7fb"]), [400, "header-value-invalid"]],
    ["#13 space in name", head("GET", "/", ["Host", "a", "X Y", "1"]), [400, "header-name-invalid"]],
    ["#13 empty name", head("GET", "/", ["Host", "a", "", "1"]), [400, "header-name-invalid"]],
    ["#6 name with trailing space", head("GET", "/", ["Host", "a", "Content-Length ", "1"]), [400, "header-name-invalid"]],
    ["Expect other than 100-continue", head("POST", "/", ["Host", "a", "Expect", "202-accepted"]), [417, "expect-unsupported"]],
    ["path with NUL", head("GET", "/etc/passwd%00.png"), [400, "path-nul"]],
    ["path with bad escape", head("GET", "/a%zz"), [400, "path-bad-encoding"]],
    ["path with truncated escape", head("GET", "/a%2"), [400, "path-bad-encoding"]],
    ["path with backslash", head("GET", "/a\\..\\b"), [400, "path-bad-char"]],
    ["path with raw non-ASCII", head("GET", "/caf\xe9"), [400, "path-bad-char"]],
    ["path with space", head("GET", "/a b"), [400, "path-bad-char"]],
    ["query with control", head("GET", "/a?b=\x01"), [400, "query-bad-char"]],
    ["method lower-case junk", head("G T", "/"), [400, "method-invalid"]]
  ]
  for (const [name, req, expected] of cases) {
    it(name, () => expect(rejected(validateRequest(req))).toEqual(expected))
  }

  it("#5b RFC-legal TE spellings are accepted and reported as chunked (never forwarded raw)", () => {
    for (const te of [",chunked", "\tchunked", "CHUNKED", "chunked"]) {
      const r = ok(validateRequest(head("POST", "/", ["Host", "a", "Transfer-Encoding", te])))
      expect(r.chunked).toBe(true)
      expect(r.headers.some(([n]) => n === "transfer-encoding")).toBe(false)
    }
  })

  it("#4 CL 010 is read as decimal 10 and forwarded as `10`", () => {
    const r = ok(validateRequest(head("POST", "/", ["Host", "a", "Content-Length", "010"])))
    expect(r.contentLength).toBe(10)
    const hs = upstreamHeaders(r, resolveForwarded(r, { remoteAddress: "1.2.3.4", encrypted: false }, compileTrustedProxies([])))
    expect(hs.filter(([n]) => n === "content-length")).toEqual([["content-length", "10"]])
  })

  it("#22 absolute-form whose authority equals Host (default port folded) uses the path", () => {
    const r = ok(validateRequest(head("GET", "http://A.example:80/x?y=1", ["Host", "a.example"])))
    expect([r.absoluteForm, r.host, r.path, r.query, r.target]).toEqual([true, "a.example", "/x", "y=1", "/x?y=1"])
    expect(ok(validateRequest(head("GET", "http://a.example", ["Host", "a.example"]))).path).toBe("/")
  })

  it("OPTIONS * is accepted", () => {
    expect(ok(validateRequest(head("OPTIONS", "*"))).target).toBe("*")
  })

  it("HTTP/1.0 without Host is accepted with host null", () => {
    expect(ok(validateRequest(head("GET", "/", [], "1.0"))).host).toBe(null)
  })

  it("#12 obs-text in a value is kept byte-for-byte (never stripped)", () => {
    const r = ok(validateRequest(head("GET", "/", ["Host", "a", "X", "\x85v"])))
    expect(r.headers).toEqual([["x", "\x85v"]])
  })

  it("Host is lower-cased and IPv6 literals are accepted", () => {
    expect(ok(validateRequest(head("GET", "/", ["Host", "A.Example:8080"]))).host).toBe("a.example:8080")
    expect(ok(validateRequest(head("GET", "/", ["Host", "[::1]:8080"]))).hostname).toBe("[::1]")
    expect(parseAuthority("[zz]")).toBe(null)
  })
})

describe("validateRequest: limits counted on rawHeaders (edge-security.md §2.4)", () => {
  it("#27 more headers than max-header-count -> 431, exactly at the limit -> ok", () => {
    const cfg: RequestValidationConfig = { ...defaults, maxHeaderCount: 10 }
    const hs = (n: number) => ["Host", "a", ...Array.from({ length: n - 1 }, (_, i) => [`x-${i}`, "v"]).flat()]
    expect(validateRequest(head("GET", "/", hs(10)), cfg)._tag).toBe("Valid")
    expect(rejected(validateRequest(head("GET", "/", hs(11)), cfg))).toEqual([431, "headers-too-many"])
  })

  it("header block over max-header-size -> 431 counting framing bytes", () => {
    const cfg: RequestValidationConfig = { ...defaults, maxHeaderSize: 200 }
    // 10 headers of 1-char name and value: 10 * 6 = 60 bytes of framing+data, plus request line
    const small = ["Host", "a", ...Array.from({ length: 9 }, () => ["x", "y"]).flat()]
    expect(validateRequest(head("GET", "/", small), cfg)._tag).toBe("Valid")
    const big = ["Host", "a", "x", "y".repeat(200)]
    expect(rejected(validateRequest(head("GET", "/", big), cfg))).toEqual([431, "headers-too-large"])
  })

  it("one line over max-header-line-size -> 431", () => {
    const r = validateRequest(head("GET", "/", ["Host", "a", "Cookie", "c".repeat(8200)]))
    expect(rejected(r)).toEqual([431, "header-line-too-large"])
  })

  it("URI over max-uri-length -> 414", () => {
    expect(rejected(validateRequest(head("GET", "/" + "a".repeat(8192))))).toEqual([414, "uri-too-long"])
    expect(validateRequest(head("GET", "/" + "a".repeat(8191)))._tag).toBe("Valid")
  })
})

describe("validateRequest: forwarded header list", () => {
  it("#14 underscore names are dropped by default, rejected or kept when configured", () => {
    const req = head("GET", "/", ["Host", "a", "X_Forwarded_For", "1.2.3.4", "X-Ok", "1"])
    const r = ok(validateRequest(req))
    expect(r.headers).toEqual([["x-ok", "1"]])
    expect(r.droppedHeaders).toEqual(["x_forwarded_for"])
    expect(rejected(validateRequest(req, { ...defaults, underscoresInHeaders: "reject" }))).toEqual([400, "header-underscore"])
    expect(ok(validateRequest(req, { ...defaults, underscoresInHeaders: "allow" })).headers.length).toBe(2)
  })

  it("hop-by-hop and Connection-named headers are removed; Host/Content-Length cannot be removed by Connection", () => {
    const r = ok(
      validateRequest(
        head("POST", "/", [
          "Host", "a", "Connection", "keep-alive, X-Secret, host, content-length", "Keep-Alive", "timeout=5",
          "TE", "trailers", "Proxy-Authorization", "Basic x", "X-Secret", "s", "Upgrade", "h2c",
          "Content-Length", "3", "Expect", "100-continue", "X-Keep", "1"
        ])
      )
    )
    expect(r.headers).toEqual([["x-keep", "1"]])
    expect(r.host).toBe("a")
    expect(r.contentLength).toBe(3)
    expect(r.upgrade).toBe(null)
  })

  it("Upgrade is reported only when Connection says upgrade", () => {
    const r = ok(validateRequest(head("GET", "/", ["Host", "a", "Connection", "Upgrade", "Upgrade", "websocket"])))
    expect(r.upgrade).toBe("websocket")
  })

  it("untrusted peer: client X-Forwarded-*, Forwarded, X-Real-IP are replaced", () => {
    const r = ok(
      validateRequest(
        head("GET", "/", ["Host", "a", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "https", "Forwarded", "for=6.6.6.6", "X-Real-IP", "6.6.6.6"])
      )
    )
    const f = resolveForwarded(r, { remoteAddress: "::ffff:1.2.3.4", encrypted: false }, compileTrustedProxies(["10.0.0.0/8"]))
    expect(f.clientIp).toBe("1.2.3.4")
    expect(upstreamHeaders(r, f)).toEqual([
      ["host", "a"],
      ["x-forwarded-for", "1.2.3.4"],
      ["x-forwarded-proto", "http"],
      ["x-forwarded-host", "a"]
    ])
  })

  it("trusted peer: chain walked from the right past trusted hops; garbage prefix discarded", () => {
    const trusted = compileTrustedProxies(["10.0.0.0/8", "2001:db8::/32"])
    const r = ok(
      validateRequest(
        head("GET", "/", [
          "Host", "a", "X-Forwarded-For", "junk, 7.7.7.7, 5.5.5.5", "X-Forwarded-For", "10.1.1.1",
          "X-Forwarded-Proto", "https", "X-Forwarded-Host", "Public.Example"
        ])
      )
    )
    const f = resolveForwarded(r, { remoteAddress: "10.0.0.2", encrypted: false }, trusted)
    expect(f).toMatchObject({
      clientIp: "5.5.5.5",
      peerTrusted: true,
      xForwardedFor: "7.7.7.7, 5.5.5.5, 10.1.1.1, 10.0.0.2",
      xForwardedProto: "https",
      xForwardedHost: "public.example"
    })
    expect(trusted.contains("2001:db8::1")).toBe(true)
    expect(trusted.contains("2001:db9::1")).toBe(false)
  })

  it("parseCidr rejects bad entries", () => {
    expect(parseCidr("10.0.0.0/33")).toBe(null)
    expect(parseCidr("10.0.0/8")).toBe(null)
    expect(parseCidr("::1/129")).toBe(null)
    expect(parseCidr("127.0.0.1")).toEqual({ address: "127.0.0.1", prefix: 32, family: "ipv4" })
    expect(() => compileTrustedProxies(["nope"])).toThrow()
  })
})

describe("normalizePath", () => {
  const cases: ReadonlyArray<[string, string]> = [
    ["/", "/"],
    ["/a/b/", "/a/b/"],
    ["//a///b", "/a/b"],
    ["/a/./b/../c", "/a/c"],
    ["/../../etc/passwd", "/etc/passwd"],
    ["/%2e%2e/%2E%2e/x", "/x"],
    ["/a/%2e%2e%2fb", "/a/..%2Fb"],
    ["/%252e%252e/x", "/%252e%252e/x"],
    ["/%41%7e%2a", "/A~%2A"],
    ["/a/..", "/"],
    ["/a/.", "/a/"]
  ]
  for (const [input, expected] of cases) {
    it(`${input} -> ${expected}`, () => expect(normalizePath(input, defaults)).toBe(expected))
  }
  it("escaped slash can be rejected", () => {
    expect(normalizePath("/a%2fb", { ...defaults, escapedSlashes: "reject" })).toBe("path-escaped-slash")
  })
})

describe("validateRequest properties", () => {
  const anyString = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.constantFrom("", "Host", "host", "Content-Length", "Transfer-Encoding", "Connection", "x_y", "chunked", "1", "a.example"))
  const rawHeaders = fc.array(fc.tuple(anyString, anyString), { maxLength: 30 }).map((ps) => ps.flat())
  const url = fc.oneof(
    fc.string(),
    fc.webUrl({ withQueryParameters: true }),
    fc.webPath().map((p) => "/" + p),
    fc.array(fc.constantFrom("/", "..", ".", "%2e", "%2f", "%25", "%00", "a", "\\", "?", "#", "//", "%", "*"), { maxLength: 12 }).map((xs) => "/" + xs.join(""))
  )
  const method = fc.oneof(fc.constantFrom("GET", "POST", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PUT"), fc.string())
  const version = fc.oneof(fc.constantFrom("1.1", "1.0", "0.9", "2.0"), fc.string())
  const request = fc.record({ method, url, httpVersion: version, rawHeaders })
  const config = fc.record({
    maxHeaderCount: fc.integer({ min: 0, max: 40 }),
    maxHeaderSize: fc.integer({ min: 0, max: 20000 }),
    maxHeaderLineSize: fc.integer({ min: 0, max: 9000 }),
    maxUriLength: fc.integer({ min: 0, max: 9000 }),
    underscoresInHeaders: fc.constantFrom("drop" as const, "reject" as const, "allow" as const),
    allowTrace: fc.boolean(),
    mergeSlashes: fc.boolean(),
    normalizePath: fc.boolean(),
    escapedSlashes: fc.constantFrom("keep" as const, "reject" as const)
  })

  it("never throws, and everything accepted satisfies the forwarding invariants", () => {
    fc.assert(
      fc.property(request, config, fc.boolean(), (req, cfg, enc) => {
        const r = validateRequest(req, cfg, enc)
        if (r._tag === "Rejected") {
          expect([400, 405, 414, 417, 431, 501, 505]).toContain(r.status)
          return
        }
        const v = r.request
        // single, valid Host
        const hostCount = req.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === "host").length
        expect(hostCount).toBeLessThanOrEqual(1)
        if (v.host !== null) expect(parseAuthority(v.host)).not.toBe(null)
        const up = upstreamHeaders(v, resolveForwarded(v, { remoteAddress: "1.2.3.4", encrypted: enc }, compileTrustedProxies([])))
        const names = up.map(([n]) => n)
        expect(names.filter((n) => n === "host").length).toBeLessThanOrEqual(1)
        if (cfg.underscoresInHeaders !== "allow") expect(names.some((n) => n.includes("_"))).toBe(false)
        for (const n of ["transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "proxy-connection", "expect"]) {
          expect(names).not.toContain(n)
        }
        const cl = up.filter(([n]) => n === "content-length")
        expect(cl.length).toBeLessThanOrEqual(1)
        if (cl.length === 1) expect(cl[0][1]).toMatch(/^(0|[1-9][0-9]*)$/)
        expect(v.chunked && v.contentLength !== null).toBe(false)
        for (const [n, val] of up) {
          expect(n).toMatch(/^[!#$%&'*+\-.^_`|~0-9a-z]+$/)
          expect(val).not.toMatch(/[\x00-\x08\x0a-\x1f\x7f]/)
        }
        // the forwarded target is a normalised origin-form path (or `*`)
        if (v.path !== "*") {
          expect(v.path.startsWith("/")).toBe(true)
          if (cfg.normalizePath) expect(v.path.split("/")).not.toContain("..")
          if (cfg.mergeSlashes) expect(v.path.slice(0, -1)).not.toContain("//")
        }
        expect(v.target).not.toMatch(/[\x00-\x20#\x7f-\uffff]/)
      }),
      { numRuns: 3000 }
    )
  })

  it("normalisation is idempotent", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("/", "..", ".", "%2e", "%2E", "%2f", "%41", "%25", "a", "b", "//"), { maxLength: 15 }),
        (parts) => {
          const once = normalizePath("/" + parts.join(""), defaults)
          if (!once.startsWith("/")) return
          expect(normalizePath(once, defaults)).toBe(once)
        }
      )
    )
  })
})

describe("validateRequest behind a real node:http server (raw bytes)", () => {
  let server: http.Server
  let port = 0
  beforeAll(async () => {
    server = http.createServer(nodeServerOptionsFor(defaults), (req, res) => {
      const r = validateRequest(req as IncomingRequestHead, defaults, false)
      if (r._tag === "Rejected") {
        res.writeHead(r.status, { "content-type": "text/plain", connection: "close" })
        res.end(r.reason)
      } else {
        const body = JSON.stringify({ host: r.request.host, target: r.request.target, headers: r.request.headers })
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
        res.end(body)
      }
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    port = (server.address() as net.AddressInfo).port
  })
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

  const send = (bytes: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1", () => s.write(Buffer.from(bytes, "latin1")))
      const chunks: Array<Buffer> = []
      s.on("data", (c) => chunks.push(c))
      s.on("error", reject)
      s.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")))
    })
  const status = (resp: string) => resp.slice(0, 12)

  // every request here ends with a close from the server (reject -> Connection: close, or Node's 400)
  it("rejects what Node lets through: HTTP/0.9, HTTP/2.0, duplicate Host, GET *, absolute-form mismatch", async () => {
    expect(status(await send("GET /\r\n\r\n"))).not.toBe("HTTP/1.1 200")
    expect(status(await send("GET / HTTP/2.0\r\nHost: a\r\n\r\n"))).toBe("HTTP/1.1 505")
    expect(status(await send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))).toBe("HTTP/1.1 400")
    expect(status(await send("GET * HTTP/1.1\r\nHost: a\r\n\r\n"))).toBe("HTTP/1.1 400")
    expect(status(await send("GET http://evil.example/x HTTP/1.1\r\nHost: a\r\n\r\n"))).toBe("HTTP/1.1 400")
  })

  it("101 headers -> 431 although Node would have truncated silently", async () => {
    const junk = Array.from({ length: 100 }, (_, i) => `X-${i}: v\r\n`).join("")
    const resp = await send(`GET / HTTP/1.1\r\nHost: a\r\n${junk}\r\n`)
    expect(status(resp)).toBe("HTTP/1.1 431")
  })

  it("underscore header dropped; double-SP request line normalised", async () => {
    const resp = await send("GET  /a//b/../c HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\nConnection: close\r\n\r\n")
    expect(status(resp)).toBe("HTTP/1.1 200")
    const body = JSON.parse(resp.slice(resp.indexOf("\r\n\r\n") + 4))
    expect(body).toEqual({ host: "a", target: "/a/c", headers: [] })
  })
})
