/**
 * Route `policies { max-body-size; buffer-requests }` and the route `circuit-breaker`, through
 * the real proxy: a route's own body limit (smaller or larger than `limits`), 413 before any of
 * a declared body is read and mid-stream for a chunked one; bodies read whole before going
 * upstream (the origin sees a Content-Length, never chunks); a breaker around the route's
 * upstream calls opening after its failures and answering 503 with Retry-After without
 * reaching the upstream. Real origins on port 0.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import { statusOrigin, type StatusOrigin } from "../support/faults.js"
import { patternBytes, sha256, startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { metricSum, request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"

let origin: EchoOrigin
let failing: StatusOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope

beforeAll(async () => {
  origin = await startEchoOrigin("policies")
  failing = await statusOrigin(503)
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        upstreams: [
          { id: "o", targets: [{ address: origin.address }] },
          { id: "bad", targets: [{ address: `127.0.0.1:${failing.port}` }], circuitBreaker: { failureThreshold: 1000 } }
        ],
        routes: [
          { id: "tight", priority: 100, matches: [{ _tag: "PathPrefix", prefix: "/tight" }], upstream: "o", policies: { maxBodySize: 100 } },
          { id: "roomy", priority: 100, matches: [{ _tag: "PathPrefix", prefix: "/roomy" }], upstream: "o", policies: { maxBodySize: 8 * 1024 * 1024 } },
          { id: "whole", priority: 100, matches: [{ _tag: "PathPrefix", prefix: "/whole" }], upstream: "o", policies: { bufferRequests: true, maxBodySize: 4 * 1024 * 1024 } },
          {
            id: "guarded",
            priority: 100,
            matches: [{ _tag: "PathPrefix", prefix: "/guarded" }],
            upstream: "bad",
            circuitBreaker: { failureThreshold: 2, openTimeoutMs: 30_000 }
          },
          { id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }
        ],
        limits: { maxBodySize: 1024 * 1024 } as never,
        system: { gracefulShutdownTimeout: Duration.millis(100) } as never
      } as Partial<SentinelConfigInput>)
    ).pipe(Scope.extend(scope))
  )
})
afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
  await failing.close()
})

/** A body sent in chunks (no Content-Length: chunked over HTTP/1.1). */
async function* chunks(total: number, size = 64 * 1024): AsyncIterable<Buffer> {
  for (let at = 0; at < total; at += size) yield patternBytes(Math.min(size, total - at), at)
}

describe("policies { max-body-size }", () => {
  it("a route's own limit: 413 below the global one, before the body is read; nothing reaches the upstream", async () => {
    const r = await request(proxy.port, { method: "POST", path: "/tight/a", body: Buffer.alloc(200, 1) })
    expect(r.status).toBe(413)
    expect(JSON.parse(r.body.toString()).reason).toBe("body_too_large")
    const chunked = await request(proxy.port, { method: "POST", path: "/tight/b", body: chunks(1000, 64) })
    expect(chunked.status).toBe(413)
    expect(origin.requests.some((q) => q.url === "/tight/a")).toBe(false)
  })

  it("a route may allow more than the global limit; the other routes keep the global one", async () => {
    const body = patternBytes(3 * 1024 * 1024)
    const ok = await request(proxy.port, { method: "POST", path: "/roomy/upload", body })
    expect(ok.status).toBe(200)
    expect(JSON.parse(ok.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) })
    expect((await request(proxy.port, { method: "POST", path: "/other/upload", body })).status).toBe(413)
  })
})

describe("policies { buffer-requests }", () => {
  it("a chunked body is read whole and reaches the upstream with a Content-Length; over the route's limit it is a 413", async () => {
    const total = 300 * 1024
    const r = await request(proxy.port, { method: "POST", path: "/whole/echo", body: chunks(total) })
    expect(r.status).toBe(200)
    const seen = JSON.parse(r.body.toString()) as { headers: Record<string, string> }
    expect(seen.headers["content-length"]).toBe(String(total))
    expect(seen.headers["transfer-encoding"]).toBeUndefined()
    // without the policy the same body streams upstream in chunks
    const streamed = JSON.parse((await request(proxy.port, { method: "POST", path: "/x/echo", body: chunks(total) })).body.toString())
    expect(streamed.headers["transfer-encoding"]).toBe("chunked")
    const over = await request(proxy.port, { method: "POST", path: "/whole/over", body: chunks(5 * 1024 * 1024) })
    expect(over.status).toBe(413)
    expect(origin.requests.some((q) => q.url === "/whole/over")).toBe(false)
  })
})

describe("route circuit-breaker", () => {
  it("opens after the route's upstream failures; then 503 route_circuit_open with Retry-After, without calling the upstream", async () => {
    const before = failing.requests()
    expect((await request(proxy.port, { path: "/guarded/1" })).status).toBe(503)
    expect((await request(proxy.port, { path: "/guarded/2" })).status).toBe(503)
    const open = await request(proxy.port, { path: "/guarded/3" })
    expect(open.status).toBe(503)
    expect(JSON.parse(open.body.toString()).reason).toBe("route_circuit_open")
    expect(open.headers["retry-after"]).toBe("30")
    expect(failing.requests() - before).toBe(2)
    expect(await metricSum(proxy, "sentinel_rejected_requests_total", { reason: "route_circuit_open" })).toBe(1)
    // other routes are not affected
    expect((await request(proxy.port, { path: "/fine" })).status).toBe(200)
  })
})

describe("policies { buffer-responses }", () => {
  it("a chunked response is read whole and goes out with a Content-Length; a larger one streams", async () => {
    const env = Effect.runSync(Scope.make())
    const chunkedOrigin = await import("node:http").then(
      (http) =>
        new Promise<import("node:http").Server>((resolve) => {
          const s = http.createServer((req, res) => {
            const n = Number(new URL(req.url ?? "/", "http://x").searchParams.get("n") ?? "1000")
            res.writeHead(200, { "content-type": "application/octet-stream" })
            for (let at = 0; at < n; at += 4096) res.write(patternBytes(Math.min(4096, n - at), at))
            res.end()
          })
          s.listen(0, "127.0.0.1", () => resolve(s))
        })
    )
    try {
      const port = (chunkedOrigin.address() as import("node:net").AddressInfo).port
      const p = await Effect.runPromise(
        startProxy(
          testConfig({
            upstreams: [{ id: "c", targets: [{ address: `127.0.0.1:${port}` }] }],
            routes: [
              { id: "held", priority: 100, matches: [{ _tag: "PathPrefix", prefix: "/held" }], upstream: "c", policies: { bufferResponses: true } },
              { id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "c" }
            ],
            limits: { responseBufferSize: 64 * 1024 } as never
          } as Partial<SentinelConfigInput>)
        ).pipe(Scope.extend(env))
      )
      const small = await request(p.port, { path: "/held/a?n=40000" })
      expect([small.status, small.headers["content-length"], small.headers["transfer-encoding"]]).toEqual([200, "40000", undefined])
      expect(sha256(small.body)).toBe(sha256(patternBytes(40000)))
      // over the bound: streamed as it came (chunked), still whole
      const big = await request(p.port, { path: "/held/b?n=300000" })
      expect([big.status, big.headers["transfer-encoding"]]).toEqual([200, "chunked"])
      expect(sha256(big.body)).toBe(sha256(patternBytes(300000)))
      // without the policy the small one streams chunked
      expect((await request(p.port, { path: "/plain?n=40000" })).headers["transfer-encoding"]).toBe("chunked")
    } finally {
      await Effect.runPromise(Scope.close(env, Exit.void))
      await new Promise<void>((r) => chunkedOrigin.close(() => r()))
    }
  })
})

describe("policies { buffer-responses } and a failing upstream", () => {
  it("an upstream reset mid-body is answered with a clean 502 (the head never went out), not a cut 200", async () => {
    const { resettingOrigin } = await import("../support/faults.js")
    const bad = await resettingOrigin({ declaredLength: 1000, sentBytes: 100 })
    const env = Effect.runSync(Scope.make())
    try {
      const p = await Effect.runPromise(
        startProxy(
          testConfig({
            upstreams: [{ id: "r", targets: [{ address: `127.0.0.1:${bad.port}` }] }],
            routes: [
              { id: "held", priority: 100, matches: [{ _tag: "PathPrefix", prefix: "/held" }], upstream: "r", policies: { bufferResponses: true } },
              { id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "r" }
            ]
          } as Partial<SentinelConfigInput>)
        ).pipe(Scope.extend(env))
      )
      const held = await request(p.port, { path: "/held/x" })
      expect(held.status).toBe(502)
      expect(JSON.parse(held.body.toString()).reason).toMatch(/^upstream_(reset|closed)$/)
      // without the policy the client got the 200 head and a cut body
      await expect(request(p.port, { path: "/plain" })).rejects.toThrow()
    } finally {
      await Effect.runPromise(Scope.close(env, Exit.void))
      await bad.close()
    }
  })
})
