/**
 * Property: whatever bytes a client sends, the proxy stays up, and the only requests the
 * upstream ever sees complete are valid ones that the proxy answered from the upstream (never
 * more upstream requests than successful answers; never a smuggled extra request).
 *
 * Inputs: request-shaped templates built from the smuggling catalogue (edge-security.md §2.1)
 * with byte mutations at random places, plus plain random bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as fc from "fast-check"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { validateRequest } from "../../src/pipeline/validate/RequestHead.js"
import { request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"
import { rawRequest } from "../support/rawHttp.js"

/** An origin that records a request only once its body is complete (what it really "saw"). */
interface Seen {
  readonly method: string
  readonly url: string
  readonly httpVersion: string
  readonly rawHeaders: Array<string>
}
let seen: Array<Seen> = []
let run = 0
const xffOf = (r: Seen): string | undefined => {
  const i = r.rawHeaders.findIndex((n, j) => j % 2 === 0 && n.toLowerCase() === "x-forwarded-for")
  return i < 0 ? undefined : r.rawHeaders[i + 1]
}
/** Requests the origin has started and not yet finished (complete or aborted). */
let active = 0
let origin: http.Server
let proxy: ProxyHandle
let scope: Scope.CloseableScope

beforeAll(async () => {
  origin = http.createServer((req, res) => {
    active++
    res.once("close", () => active--)
    req.resume()
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", httpVersion: req.httpVersion, rawHeaders: req.rawHeaders })
      res.end("ok")
    })
  })
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r))
  const port = (origin.address() as AddressInfo).port
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        upstreams: [{ id: "o", targets: [{ address: `127.0.0.1:${port}` }] }],
        routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }],
        limits: { maxHeaderCount: 30, maxHeaderSize: 4096, maxBodySize: 4096 } as never
      })
    ).pipe(Scope.extend(scope))
  )
})

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  origin.closeAllConnections()
  await new Promise<void>((r) => origin.close(() => r()))
})

const METHODS = ["GET", "POST", "PUT", "OPTIONS", "CONNECT", "TRACE", "get", "G T", "DELETE"]
const TARGETS = ["/", "/a?b=c", "*", "http://a.example/x", "http://evil.example/x", "/%2e%2e/x", "//x", "/a#b", "/\x85", "/a\\b", "/smuggled", ""]
const VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.32", "", "HTTP/1.1 ", "http/1.1"]
const HEADERS = [
  "Host: a.example",
  "Host: a.example",
  "Host: a b",
  "Host: a@evil",
  "Content-Length: 5",
  "Content-Length: 0",
  "Content-Length: +5",
  "Content-Length: 05",
  "Transfer-Encoding: chunked",
  "Transfer-Encoding: ,chunked",
  "Transfer-Encoding: xchunked",
  "Transfer-Encoding: gzip, chunked",
  "Transfer-Encoding : chunked",
  "X_Forwarded_For: 1.2.3.4",
  "X-Forwarded-For: 1.2.3.4",
  "Connection: close",
  "Connection: keep-alive, x-hop",
  "Expect: 100-continue",
  "Upgrade: websocket",
  "X-A: \x85v",
  " X-Lead: 1",
  "X-Fold: a\r\n b"
]
const BODIES = ["", "HELLO", "5\r\nHELLO\r\n0\r\n\r\n", "0\r\n\r\n", "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n", "1\r\nZ\r\n0\r\nContent-Length: 9\r\n\r\n"]
const MEANINGFUL = ["\r", "\n", "\r\n", "\x00", " ", "\t", ":", ",", ";", "\x0b", "\xa0", "\x85", "#", "%", "/", "_", "0", "9", "chunked", "\r\n\r\n"]

const template = fc
  .record({
    method: fc.constantFrom(...METHODS),
    target: fc.constantFrom(...TARGETS),
    version: fc.constantFrom(...VERSIONS),
    headers: fc.array(fc.constantFrom(...HEADERS), { maxLength: 6 }),
    body: fc.constantFrom(...BODIES)
  })
  .map(({ method, target, version, headers, body }) =>
    `${method} ${target}${version === "" ? "" : " " + version}\r\n${headers.map((h) => h + "\r\n").join("")}\r\n${body}`
  )

const mutated = fc
  .tuple(template, fc.array(fc.tuple(fc.nat(), fc.constantFrom(...MEANINGFUL), fc.constantFrom("insert", "replace", "delete")), { maxLength: 3 }))
  .map(([text, edits]) => {
    let s = text
    for (const [at, piece, op] of edits) {
      const i = s.length === 0 ? 0 : at % s.length
      if (op === "insert") s = s.slice(0, i) + piece + s.slice(i)
      else if (op === "replace") s = s.slice(0, i) + piece + s.slice(i + 1)
      else s = s.slice(0, i) + s.slice(i + 1)
    }
    return Buffer.from(s, "latin1")
  })

const input = fc.oneof({ weight: 5, arbitrary: mutated }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) })

describe("edge property: random request bytes", () => {
  it("never crash the proxy, and never reach the upstream unless valid and answered", async () => {
    await fc.assert(
      // (each run: one connection, the answer, then the upstream side settling)
      fc.asyncProperty(input, async (bytes) => {
        seen = []
        // Each run comes from its own loopback address, which the proxy puts in X-Forwarded-For:
        // an upstream request finishing late (its client is gone) is not mistaken for this run's.
        const client = `127.0.${1 + (++run % 200)}.${1 + (run % 250)}`
        // (the half-close makes node drop an answer still in flight: the request was valid then)
        const reply = await rawRequest(proxy.port, bytes, { end: true, timeoutMs: 1500, localAddress: client })
        // let this input's upstream exchanges settle (bounded)
        for (let i = 0; i < 100 && active > 0; i++) await new Promise((r) => setTimeout(r, 10))
        const mine = seen.filter((r) => xffOf(r) === client)
        // refused outright (every answer a 4xx/5xx, the origin always answers 200): nothing went upstream
        if (reply.statuses.length > 0 && reply.statuses.every((s) => s >= 400)) {
          expect(mine, JSON.stringify(bytes.toString("latin1"))).toEqual([])
        }
        for (const r of seen) {
          // what the upstream saw passes the same edge rules (re-serialised, canonical framing)
          const v = validateRequest({ method: r.method, url: r.url, httpVersion: r.httpVersion, rawHeaders: r.rawHeaders })
          expect(v._tag, JSON.stringify(r)).toBe("Valid")
          const names = r.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
          expect(names.filter((n) => n === "host").length).toBe(1)
          expect(names.includes("content-length") && names.includes("transfer-encoding")).toBe(false)
          expect(names.some((n) => n.includes("_"))).toBe(false)
        }
        // the proxy never answers a 500 for client bytes
        expect(reply.statuses.filter((s) => s === 500)).toEqual([])
      }),
      { numRuns: 300 }
    )
    const alive = await request(proxy.port, { path: "/still-alive" })
    expect(alive.status).toBe(200)
  }, 120_000)
})
