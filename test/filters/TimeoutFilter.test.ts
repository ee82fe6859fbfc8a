/**
 * The `timeout` filter end to end: each of its deadlines fires on time,
 * before the (longer) route and upstream defaults, with its own reason.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { hangingOrigin, scoped } from "../support/faults.js"
import { echoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig } from "../support/proxy.js"

const timed = async (port: number, path: string) => {
  const started = Date.now()
  const reply = await request(port, { path })
  return { reply, elapsed: Date.now() - started, reason: JSON.parse(reply.body.toString()).reason as string }
}

const withFilter = (address: string, filter: object, upstream: object = {}) =>
  testConfig({
    // a request left hanging by a test is cut at scope close, not waited for
    system: { gracefulShutdownTimeout: Duration.millis(200) },
    upstreams: [{ id: "u", targets: [{ address }], timeouts: { read: Duration.seconds(20) }, ...upstream }],
    routes: [{ id: "r", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "u", filters: ["t"] }],
    filters: [{ id: "t", type: "timeout", ...filter }]
  } as never)

describe("timeout filter", () => {
  it.scopedLive("request-timeout-secs bounds the whole request (504 timeout_route)", () =>
    Effect.gen(function* () {
      const hanging = yield* scoped(hangingOrigin)
      const proxy = yield* startProxy(withFilter(`127.0.0.1:${hanging.port}`, { requestTimeoutSecs: 0.3 }))
      const r = yield* Effect.promise(() => timed(proxy.port, "/x"))
      expect(r.reply.status).toBe(504)
      expect(r.reason).toBe("timeout_route")
      expect(r.elapsed).toBeGreaterThanOrEqual(280)
      expect(r.elapsed).toBeLessThan(5000)
    })
  )

  it.scopedLive("upstream-timeout-secs bounds the wait for the response head (504 timeout_headers)", () =>
    Effect.gen(function* () {
      const hanging = yield* scoped(hangingOrigin)
      const proxy = yield* startProxy(withFilter(`127.0.0.1:${hanging.port}`, { upstreamTimeoutSecs: 0.3 }))
      const r = yield* Effect.promise(() => timed(proxy.port, "/x"))
      expect(r.reply.status).toBe(504)
      expect(r.reason).toBe("timeout_headers")
      expect(r.elapsed).toBeLessThan(5000)
    })
  )

  it.scopedLive("connect-timeout-secs bounds the wait for a connected socket (504 timeout_connect)", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      // One connection per target: a held request occupies it, the next one waits for a slot.
      const proxy = yield* startProxy(
        withFilter(origin.address, { connectTimeoutSecs: 0.3 }, { connectionPool: { maxConnections: 1 } })
      )
      const held = request(proxy.port, { path: "/hold" }).catch(() => undefined)
      yield* Effect.promise(() => origin.arrived("/hold"))
      const r = yield* Effect.promise(() => timed(proxy.port, "/second"))
      expect(r.reply.status).toBe(504)
      expect(r.reason).toBe("timeout_connect")
      expect(r.elapsed).toBeLessThan(5000)
      expect(origin.requests.map((q) => q.url)).toEqual(["/hold"])
      void held
    })
  )
})
