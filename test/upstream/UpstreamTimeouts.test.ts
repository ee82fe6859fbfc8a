/**
 * The upstream `timeouts { request; write }` and `connection-pool { max-idle }` settings,
 * end to end: a real proxy, real sockets, named faults. Each one used to be parsed and
 * ignored; these tests fail without the code that applies them.
 */
import * as http from "node:http"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { gatedOrigin } from "../support/gatedOrigin.js"
import { hangingOrigin, scoped, tricklingOrigin } from "../support/faults.js"
import { nonReadingOrigin } from "../support/nonReadingOrigin.js"
import { echoOrigin } from "../support/origins.js"
import { catchAllRoute as route, eventually, metricSum as metric, request, startProxy, testConfig } from "../support/proxy.js"

const ms = (n: number) => Duration.millis(n)

interface Exchange {
  readonly status: number | undefined
  readonly body: Buffer
  /** complete: the response ended; aborted: the connection broke; gave-up: nothing within `giveUpMs`. */
  readonly outcome: "complete" | "aborted" | "gave-up"
  readonly ms: number
}

/**
 * One request that never rejects: reports how it ended. `body` chunks are written with
 * back-pressure, `pauseMs` apart (a slow uploader); the writer stops once the exchange ended.
 */
const exchange = (
  port: number,
  options: { method?: string; path?: string; body?: Iterable<Buffer>; pauseMs?: number; giveUpMs?: number } = {}
): Promise<Exchange> =>
  new Promise((resolve) => {
    const started = performance.now()
    let status: number | undefined
    const chunks: Array<Buffer> = []
    let settled = false
    const settle = (outcome: Exchange["outcome"]) => {
      if (settled) return
      settled = true
      clearTimeout(giveUp)
      req.destroy()
      resolve({ status, body: Buffer.concat(chunks), outcome, ms: performance.now() - started })
    }
    const giveUp = setTimeout(() => settle("gave-up"), options.giveUpMs ?? 4000)
    const req = http.request({
      host: "127.0.0.1",
      port,
      method: options.method ?? "GET",
      path: options.path ?? "/",
      agent: false,
      headers: options.body !== undefined ? { "transfer-encoding": "chunked" } : {}
    })
    req.on("response", (res) => {
      status = res.statusCode
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => settle("complete"))
      res.on("aborted", () => settle("aborted"))
      res.on("error", () => settle("aborted"))
      res.on("close", () => settle(res.complete ? "complete" : "aborted"))
    })
    req.on("error", () => settle("aborted"))
    if (options.body === undefined) {
      req.end()
      return
    }
    const it = options.body[Symbol.iterator]()
    const pump = (): void => {
      if (settled) return
      const next = it.next()
      if (next.done) {
        req.end()
        return
      }
      const ok = req.write(next.value)
      const go = () => (options.pauseMs ? setTimeout(pump, options.pauseMs) : setImmediate(pump))
      if (ok) go()
      else req.once("drain", go)
    }
    pump()
  })

function* chunksOf(size: number, count: number): Iterable<Buffer> {
  for (let i = 0; i < count; i++) yield Buffer.alloc(size, 0x61 + (i % 26))
}

describe("timeouts { request }", () => {
  it.scopedLive("fires before the response head: 504 timeout_request, long before the read timeout", () =>
    Effect.gen(function* () {
      const hanging = yield* scoped(hangingOrigin)
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            { id: "u", targets: [{ address: `127.0.0.1:${hanging.port}` }], timeouts: { read: ms(5000), request: ms(300) } as never }
          ],
          routes: [route("u")]
        })
      )
      const t0 = performance.now()
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/x" }))
      const elapsed = performance.now() - t0
      expect(reply.status).toBe(504)
      expect(JSON.parse(reply.body.toString()).reason).toBe("timeout_request")
      expect(elapsed).toBeGreaterThanOrEqual(280)
      expect(elapsed).toBeLessThan(2000)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_failures_total", { reason: "timeout_request" }))).toBe(1)
    })
  )

  it.scopedLive("fires mid-body on a trickling origin that never trips the body-idle timeout: the client connection is aborted", () =>
    Effect.gen(function* () {
      // one byte every 40 ms: well within the 1 s body-idle (read) timeout, 40 s for the whole body
      const trickle = yield* scoped(() => tricklingOrigin({ bytesPerTick: 1, intervalMs: 40, declaredLength: 1000 }))
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            { id: "u", targets: [{ address: `127.0.0.1:${trickle.port}` }], timeouts: { read: ms(1000), request: ms(400) } as never }
          ],
          routes: [route("u")]
        })
      )
      const r = yield* Effect.promise(() => exchange(proxy.port, { path: "/t", giveUpMs: 4000 }))
      // the head went out (200), then the body stopped short: the proxy broke the connection
      expect(r.status).toBe(200)
      expect(r.outcome).toBe("aborted")
      expect(r.body.length).toBeGreaterThan(0)
      expect(r.body.length).toBeLessThan(1000)
      expect(r.ms).toBeGreaterThanOrEqual(380)
      expect(r.ms).toBeLessThan(2500)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_failures_total", { reason: "timeout_request" }))).toBe(1)
      // the upstream request was torn down too
      expect(yield* eventually(() => trickle.openConnections() === 0)).toBe(true)
    })
  )

  it.scopedLive("is retryable like the other timeouts: an idempotent GET goes to the next target", () =>
    Effect.gen(function* () {
      const hanging = yield* scoped(hangingOrigin)
      const good = yield* echoOrigin("good")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${hanging.port}` }, { address: good.address }],
              timeouts: { read: ms(5000), request: ms(250) } as never
            }
          ],
          routes: [route("u", { retryPolicy: { maxAttempts: 2, backoffMs: 1, maxBackoffMs: 5 } })]
        })
      )
      // round robin: at least one of the two requests starts on the hanging target
      const t0 = performance.now()
      for (let i = 0; i < 2; i++) {
        const r = yield* Effect.promise(() => request(proxy.port, { path: `/g${i}` }))
        expect(r.status).toBe(200)
        expect(JSON.parse(r.body.toString()).origin).toBe("good")
      }
      expect(performance.now() - t0).toBeLessThan(3000)
      const timedOut = hanging.requests()
      expect(timedOut).toBeGreaterThanOrEqual(1)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_failures_total", { reason: "timeout_request" }))).toBe(timedOut)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_retries_total", { reason: "idempotent" }))).toBe(timedOut)
    })
  )
})

describe("timeouts { write }", () => {
  it.scopedLive("a slow uploader does not trip it, an upstream that stops reading the body does: 504 timeout_write", () =>
    Effect.gen(function* () {
      const good = yield* echoOrigin("good")
      const stuck = yield* scoped(nonReadingOrigin)
      const proxy = yield* startProxy(
        testConfig({
          limits: { maxBodySize: 512 * 1024 * 1024 } as never,
          upstreams: [
            { id: "good", targets: [{ address: good.address }], timeouts: { read: ms(5000), write: ms(300), request: ms(0) } as never },
            { id: "stuck", targets: [{ address: `127.0.0.1:${stuck.port}` }], timeouts: { read: ms(5000), write: ms(300), request: ms(0) } as never }
          ],
          routes: [
            {
              id: "good",
              matches: [{ _tag: "PathPrefix" as const, prefix: "/good" }],
              upstream: "good"
            },
            route("stuck")
          ]
        })
      )
      // pauses of 450 ms between chunks are the client's, not the upstream's
      const slow = yield* Effect.promise(() =>
        exchange(proxy.port, { method: "POST", path: "/good/upload", body: chunksOf(1000, 3), pauseMs: 450, giveUpMs: 5000 })
      )
      expect(slow.outcome).toBe("complete")
      expect(slow.status).toBe(200)
      expect(JSON.parse(slow.body.toString()).bytes).toBe(3000)

      // an upload of up to 256 MiB that the upstream stops taking after its head
      const t0 = performance.now()
      const r = yield* Effect.promise(() =>
        exchange(proxy.port, { method: "POST", path: "/stuck", body: chunksOf(64 * 1024, 4096), giveUpMs: 4500 })
      )
      expect(r.outcome).not.toBe("gave-up")
      // the 504 may lose the race with the proxy closing the connection it stopped reading
      if (r.status !== undefined) {
        expect(r.status).toBe(504)
        expect(JSON.parse(r.body.toString()).reason).toBe("timeout_write")
      }
      expect(performance.now() - t0).toBeLessThan(4000)
      expect(stuck.requests()).toBe(1)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_failures_total", { reason: "timeout_write" }))).toBe(1)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_failures_total", { upstream: "good" }))).toBe(0)
      // the stalled upstream connection was torn down (the origin notices once it reads again)
      stuck.release()
      expect(stuck.stalledConnections()).toBe(1)
      expect(yield* eventually(() => stuck.stalledConnections() === 0)).toBe(true)
    })
  )
})

describe("connection-pool { max-idle }", () => {
  it.scopedLive("after a burst, at most max-idle connections stay open (well before idle-timeout) and are reused", () =>
    Effect.gen(function* () {
      const burst = 6
      const origin = yield* scoped(() => gatedOrigin(burst))
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${origin.port}` }],
              // one client address opens all six: no per-client share here
              connectionPool: { maxConnections: 10, maxIdle: 2, idleTimeout: Duration.seconds(60), maxClientShare: 1 } as never
            }
          ],
          routes: [route("u")]
        })
      )
      // the origin answers once all six wait: six upstream connections at once
      const replies = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: burst }, (_, i) => request(proxy.port, { path: `/b${i}` })))
      )
      for (const r of replies) expect(r.status).toBe(200)
      expect(origin.connections()).toBe(burst)
      // the surplus four are closed after the idle grace, the other two kept
      expect(yield* eventually(() => origin.openConnections() <= 2, 4000)).toBe(true)
      expect(origin.openConnections()).toBe(2)
      // the kept ones serve the next requests without new connections
      for (let i = 0; i < 3; i++) expect((yield* Effect.promise(() => request(proxy.port, { path: `/n${i}` }))).status).toBe(200)
      expect(origin.connections()).toBe(burst)
      expect(origin.openConnections()).toBe(2)
    })
  )
})
