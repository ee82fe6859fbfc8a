/**
 * The listener's node:http server: settings that must never be lenient, and the deadline
 * mapping from `listener { … }` (the behaviour itself is in SlowClients/EdgeRaw tests).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { makeConfig } from "../../src/config/Schema.js"
import { startListener } from "../../src/server/Listener.js"
import { listenerTimeouts } from "../../src/server/ListenerSettings.js"

const config = makeConfig({ listeners: [{ id: "l", address: "127.0.0.1:0" }] })

describe("Listener", () => {
  it.scoped("never enables the lenient parser, and keeps one header more than the limit to see the overflow", () =>
    Effect.gen(function* () {
      const handle = yield* startListener(config.listeners[0], config.limits, () => (_req, res) => res.end(), {
        onClientError: () => undefined,
        onConnection: () => undefined
      })
      const server = handle.server as unknown as { insecureHTTPParser?: boolean; maxHeadersCount: number; requireHostHeader?: boolean }
      expect(server.insecureHTTPParser).toBe(false)
      expect(server.maxHeadersCount).toBe(config.limits.maxHeaderCount + 1)
      expect(handle.server.headersTimeout).toBe(10_000)
      expect(handle.server.requestTimeout).toBe(60_000)
      yield* Effect.promise(() => handle.drain(0))
    })
  )

  it("deadline defaults and the sweep interval (at most 500 ms, a quarter of the shortest deadline)", () => {
    const t = listenerTimeouts(config.listeners[0])
    expect(t).toEqual({ headerMs: 10_000, requestMs: 60_000, bodyIdleMs: 30_000, writeMs: 30_000, keepAliveMs: 75_000, checkMs: 500 })
    const short = listenerTimeouts({ ...config.listeners[0], headerTimeout: Duration.millis(400), requestTimeout: Duration.millis(300) })
    // the head is part of the request: never a longer header deadline than the request's
    expect(short.headerMs).toBe(300)
    expect(short.checkMs).toBe(75)
  })
})
