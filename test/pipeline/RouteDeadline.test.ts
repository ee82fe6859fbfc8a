/**
 * A route's `policies { timeout-secs }` bounds the whole request: it fires
 * before the upstream's own (longer) read timeout, and the upstream request
 * is aborted.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { hangingOrigin, scoped } from "../support/faults.js"
import { request, startProxy, testConfig } from "../support/proxy.js"

describe("route deadline", () => {
  it.scopedLive("answers 504 at the route timeout, well before the upstream read timeout", () =>
    Effect.gen(function* () {
      const hanging = yield* scoped(hangingOrigin)
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "slow", targets: [{ address: `127.0.0.1:${hanging.port}` }], timeouts: { read: Duration.seconds(20) } as never }],
          routes: [
            {
              id: "r",
              matches: [{ _tag: "PathPrefix", prefix: "/" }],
              upstream: "slow",
              policies: { timeout: Duration.millis(300) } as never
            }
          ]
        })
      )
      const started = Date.now()
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/x" }))
      const elapsed = Date.now() - started
      expect(reply.status).toBe(504)
      expect(JSON.parse(reply.body.toString()).reason).toBe("timeout_route")
      expect(elapsed).toBeGreaterThanOrEqual(280)
      expect(elapsed).toBeLessThan(5000)
    })
  )
})
