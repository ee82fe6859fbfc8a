/**
 * Resilience end to end: real proxy, real origins and named faults. Selection
 * with health and circuit breakers, fail-over, retries (and when not to),
 * per-attempt timeouts, 503 when nothing is eligible, recovery.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { echoOrigin } from "../support/origins.js"
import { hangingOrigin, refusingPort, resettingOrigin, scoped, statusOrigin } from "../support/faults.js"
import { catchAllRoute as route, eventually, metricSum as metric, request, startProxy, testConfig } from "../support/proxy.js"

describe("selection and fail-over", () => {
  it.scopedLive("a refused connection fails over to the next target for any method, even without a retry-policy", () =>
    Effect.gen(function* () {
      const dead = yield* scoped(refusingPort)
      const good = yield* echoOrigin("good")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "u", targets: [{ address: `127.0.0.1:${dead.port}` }, { address: good.address }] }],
          routes: [route("u")]
        })
      )
      for (let i = 0; i < 8; i++) {
        const r = yield* Effect.promise(() => request(proxy.port, { method: "POST", path: `/p${i}`, body: "hello" }))
        expect(r.status).toBe(200)
        expect(JSON.parse(r.body.toString()).origin).toBe("good")
      }
      expect(good.requests.filter((r) => r.method === "POST")).toHaveLength(8)
      // the dead target's breaker opened after 5 consecutive failures and the transition was counted
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_circuit_breaker_transitions_total", { to: "open" }))).toBe(1)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_failures_total", { reason: "connect_refused" }))).toBe(5)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_retries_total", { reason: "nothing-sent" }))).toBe(5)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_attempts_total", { upstream: "u", route: "r" }))).toBe(13)
      // the keep-alive connection to the good target is counted when scraped
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_connection_pool_size", { upstream: "u" }))).toBeGreaterThan(0)
    })
  )

  it.scopedLive("no eligible target: 503 with Retry-After, quickly", () =>
    Effect.gen(function* () {
      const a = yield* scoped(refusingPort)
      const b = yield* scoped(refusingPort)
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${a.port}` }, { address: `127.0.0.1:${b.port}` }],
              circuitBreaker: { failureThreshold: 1, openTimeoutMs: 7_000 }
            }
          ],
          routes: [route("u")]
        })
      )
      const first = yield* Effect.promise(() => request(proxy.port, { path: "/" }))
      expect(first.status).toBe(502)
      const t0 = performance.now()
      const r = yield* Effect.promise(() => request(proxy.port, { path: "/" }))
      expect(performance.now() - t0).toBeLessThan(500)
      expect(r.status).toBe(503)
      expect(r.headers["retry-after"]).toBe("7")
      expect(JSON.parse(r.body.toString()).reason).toBe("no_healthy_upstream")
    })
  )

  it.scopedLive("an open circuit recovers through the half-open probe once the target answers well again", () =>
    Effect.gen(function* () {
      const origin = yield* scoped(() => statusOrigin(500))
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${origin.port}` }],
              circuitBreaker: { failureThreshold: 3, successThreshold: 2, openTimeoutMs: 300 }
            }
          ],
          routes: [route("u")]
        })
      )
      for (let i = 0; i < 3; i++) expect((yield* Effect.promise(() => request(proxy.port))).status).toBe(500)
      const blocked = yield* Effect.promise(() => request(proxy.port))
      expect(blocked.status).toBe(503)
      expect(origin.requests()).toBe(3)
      origin.setStatus(200)
      // after the open timeout the first request is the probe; two successes close the circuit
      const recovered = yield* eventually(async () => (await request(proxy.port)).status === 200)
      expect(recovered).toBe(true)
      expect((yield* Effect.promise(() => request(proxy.port))).status).toBe(200)
      const to = (state: string) => metric(proxy, "sentinel_circuit_breaker_transitions_total", { to: state })
      expect(yield* Effect.promise(() => to("open"))).toBe(1)
      expect(yield* Effect.promise(() => to("half-open"))).toBe(1)
      expect(yield* Effect.promise(() => to("closed"))).toBe(1)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_circuit_breaker_state"))).toBe(0)
      const status = yield* Effect.promise(() => request(proxy.port, { path: "/" }))
      expect(status.status).toBe(200)
    })
  )
})

describe("retries", () => {
  const policy = (extra: object = {}) => ({ retryPolicy: { maxAttempts: 3, backoffMs: 1, maxBackoffMs: 5, ...extra } })

  it.scopedLive("a POST that reached the upstream is not retried; a GET is; a POST is when the route opts in", () =>
    Effect.gen(function* () {
      // resets the connection as soon as the request head arrived: the request was sent
      const reset = yield* scoped(() => resettingOrigin({ when: "before-response" }))
      const good = yield* echoOrigin("good")
      const cfg = (extra: object) =>
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${reset.port}` }, { address: good.address }],
              // consistent placement: every request starts on the resetting target
              loadBalancing: "consistent_hash",
              hashKey: { source: "header", name: "x-key" }
            }
          ],
          routes: [route("u", policy(extra))]
        })
      // find a key that hashes to the resetting target first
      const probe = yield* startProxy(cfg({}))
      let key = ""
      for (let i = 0; i < 50 && key === ""; i++) {
        const before = reset.requests()
        yield* Effect.promise(() => request(probe.port, { path: "/k", headers: { "x-key": `k${i}` } }))
        if (reset.requests() > before) key = `k${i}`
      }
      expect(key).not.toBe("")

      const proxy = yield* startProxy(cfg({}))
      const before = reset.requests()
      const post = yield* Effect.promise(() =>
        request(proxy.port, { method: "POST", path: "/post", headers: { "x-key": key }, body: "payload" })
      )
      expect(post.status).toBe(502)
      expect(reset.requests() - before).toBe(1)
      expect(good.requests.filter((r) => r.url === "/post")).toHaveLength(0)

      const get = yield* Effect.promise(() => request(proxy.port, { path: "/get", headers: { "x-key": key } }))
      expect(get.status).toBe(200)
      expect(JSON.parse(get.body.toString()).origin).toBe("good")

      const optIn = yield* startProxy(cfg({ retryNonIdempotent: true }))
      const replayed = yield* Effect.promise(() =>
        request(optIn.port, { method: "POST", path: "/upload", headers: { "x-key": key }, body: "payload" })
      )
      // the buffered body was replayed byte-exact on the second target
      expect(replayed.status).toBe(200)
      expect(JSON.parse(replayed.body.toString()).bytes).toBe(7)
    })
  )

  it.scopedLive("504 at the per-attempt timeout; with attempts left the request moves to another target", () =>
    Effect.gen(function* () {
      const hang = yield* scoped(hangingOrigin)
      const good = yield* echoOrigin("good")
      const single = yield* startProxy(
        testConfig({
          upstreams: [{ id: "u", targets: [{ address: `127.0.0.1:${hang.port}` }] }],
          routes: [route("u", policy({ maxAttempts: 1, perAttemptTimeoutMs: 200 }))]
        })
      )
      const t0 = performance.now()
      const r = yield* Effect.promise(() => request(single.port, { path: "/slow" }))
      const took = performance.now() - t0
      expect(r.status).toBe(504)
      expect(took).toBeGreaterThanOrEqual(190)
      expect(took).toBeLessThan(1500)

      const two = yield* startProxy(
        testConfig({
          upstreams: [{ id: "u", targets: [{ address: `127.0.0.1:${hang.port}` }, { address: good.address }] }],
          routes: [route("u", policy({ maxAttempts: 2, perAttemptTimeoutMs: 200 }))]
        })
      )
      // round robin starts on the hanging target
      const moved = yield* Effect.promise(() => request(two.port, { path: "/moved" }))
      expect(moved.status).toBe(200)
      expect(JSON.parse(moved.body.toString()).origin).toBe("good")
      expect(yield* Effect.promise(() => metric(two, "sentinel_upstream_failures_total", { reason: "timeout_headers" }))).toBe(1)
      expect(yield* Effect.promise(() => metric(two, "sentinel_upstream_retries_total", { reason: "idempotent" }))).toBe(1)
    })
  )

  it.scopedLive("retryable status codes are retried elsewhere; other statuses and a last attempt pass through", () =>
    Effect.gen(function* () {
      const busy = yield* scoped(() => statusOrigin(503, "busy\n"))
      const good = yield* echoOrigin("good")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "u", targets: [{ address: `127.0.0.1:${busy.port}` }, { address: good.address }] }],
          routes: [route("u", policy({ retryableStatusCodes: [503] }))]
        })
      )
      for (let i = 0; i < 4; i++) {
        const r = yield* Effect.promise(() => request(proxy.port, { path: `/s${i}` }))
        expect(r.status).toBe(200)
      }
      expect(busy.requests()).toBeGreaterThanOrEqual(1)

      const only = yield* startProxy(
        testConfig({
          upstreams: [{ id: "u", targets: [{ address: `127.0.0.1:${busy.port}` }] }],
          routes: [route("u", policy({ retryableStatusCodes: [503], maxAttempts: 2 }))]
        })
      )
      const before = busy.requests()
      const r = yield* Effect.promise(() => request(only.port, { path: "/only" }))
      // the second (last) attempt's 503 is the upstream's own answer, passed through
      expect(r.status).toBe(503)
      expect(r.body.toString()).toBe("busy\n")
      expect(busy.requests() - before).toBe(2)
    })
  )

  it.scopedLive("never retries once response headers went to the client (reset mid-body)", () =>
    Effect.gen(function* () {
      const midBody = yield* scoped(() => resettingOrigin({ when: "mid-body" }))
      const good = yield* echoOrigin("good")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "u", targets: [{ address: `127.0.0.1:${midBody.port}` }, { address: good.address }] }],
          routes: [route("u", policy())]
        })
      )
      const outcome = yield* Effect.promise(() =>
        request(proxy.port, { path: "/mid" }).then(
          (r) => ({ ok: true as const, length: r.body.length, status: r.status }),
          () => ({ ok: false as const })
        )
      )
      // the client sees a broken response (aborted or short), never a clean one from another target
      if (outcome.ok) expect(outcome.length).toBeLessThan(100)
      expect(good.requests.filter((r) => r.url === "/mid")).toHaveLength(0)
    })
  )
})

describe("health checks", () => {
  it.scopedLive("passive checks eject a target answering 5xx from rotation (no active checks configured)", () =>
    Effect.gen(function* () {
      const bad = yield* scoped(() => statusOrigin(500))
      const good = yield* echoOrigin("good")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${bad.port}` }, { address: good.address }],
              passiveHealth: { minRequests: 4, failureRatio: 0.5, cooldownMs: 60_000 },
              // keep the breaker out of it: this is about the passive window
              circuitBreaker: { failureThreshold: 1000 }
            }
          ],
          routes: [route("u")]
        })
      )
      for (let i = 0; i < 20; i++) yield* Effect.promise(() => request(proxy.port, { path: `/p${i}` }))
      // ejected once 4 answers were in its window (all failures), then no more traffic
      expect(bad.requests()).toBe(4)
      expect(
        yield* Effect.promise(() => metric(proxy, "sentinel_upstream_health", { target: `127.0.0.1:${bad.port}` }))
      ).toBe(0)
    })
  )

  it.scopedLive("active checks take a dead target out before traffic reaches it; the upstreams handler shows it", () =>
    Effect.gen(function* () {
      const dead = yield* scoped(refusingPort)
      const good = yield* echoOrigin("good")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${dead.port}` }, { address: good.address }],
              healthCheck: { type: { kind: "tcp" }, intervalMs: 50, timeoutMs: 200, unhealthyThreshold: 1, healthyThreshold: 1 }
            }
          ],
          routes: [
            { id: "admin", priority: 100, matches: [{ _tag: "Path", path: "/_upstreams" }], builtinHandler: "upstreams" },
            route("u")
          ]
        })
      )
      expect(
        yield* eventually(async () => (await metric(proxy, "sentinel_upstream_health", { target: `127.0.0.1:${dead.port}` })) === 0)
      ).toBe(true)
      for (let i = 0; i < 5; i++) expect((yield* Effect.promise(() => request(proxy.port, { path: `/h${i}` }))).status).toBe(200)
      expect(yield* Effect.promise(() => metric(proxy, "sentinel_upstream_failures_total"))).toBe(0)
      const view = JSON.parse((yield* Effect.promise(() => request(proxy.port, { path: "/_upstreams" }))).body.toString())
      const targets = view.upstreams[0].targets
      expect(targets[0]).toMatchObject({ healthy: false, eligible: false, circuit: "closed" })
      expect(targets[1]).toMatchObject({ healthy: true, eligible: true, circuit: "closed" })
    })
  )
})

