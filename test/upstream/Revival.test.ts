/**
 * A target that died under load and came back gets traffic again within its active health
 * check interval, not after the circuit breaker's open timeout: a passing active check that
 * started after the breaker opened closes it (and lifts a passive ejection), as Envoy
 * un-ejects a host that passes an active health check.
 */
import * as http from "node:http"
import type * as net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { echoOrigin } from "../support/origins.js"
import { catchAllRoute as route, eventually, request, startProxy, testConfig } from "../support/proxy.js"

/** An origin that can be killed (listener closed, sockets destroyed) and revived on the same port. */
const revivableOrigin = async () => {
  let requests = 0
  const sockets = new Set<net.Socket>()
  const server = http.createServer((req, res) => {
    requests++
    req.resume()
    res.end("revivable\n")
  })
  server.on("connection", (s: net.Socket) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject)
        resolve((server.address() as net.AddressInfo).port)
      })
    })
  const port = await listen(0)
  const kill = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      for (const s of sockets) s.destroy()
    })
  return {
    port,
    requests: () => requests,
    kill,
    revive: () => listen(port),
    close: async () => {
      if (server.listening) await kill()
    }
  }
}

describe("revived target", () => {
  it.scopedLive("a target killed under load (breaker open, 30 s) gets requests again within about its health-check interval once revived", () =>
    Effect.gen(function* () {
      const flaky = yield* Effect.acquireRelease(Effect.promise(revivableOrigin), (o) => Effect.promise(o.close))
      const good = yield* echoOrigin("good")
      const intervalMs = 200
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${flaky.port}` }, { address: good.address }],
              circuitBreaker: { failureThreshold: 5, openTimeoutMs: 30_000 },
              healthCheck: { type: { kind: "tcp" }, intervalMs, timeoutMs: 200 }
            }
          ],
          routes: [route("u")]
        })
      )
      const breaker = () => proxy.dataplane().upstreams.get("u")!.states[0].circuit

      // load: 4 clients in a loop until the test ends
      let stop = false
      const statuses: Array<{ readonly sentAt: number; readonly status: number }> = []
      const client = async () => {
        while (!stop) {
          const sentAt = performance.now()
          const r = await request(proxy.port, { path: "/load" }).catch(() => undefined)
          statuses.push({ sentAt, status: r?.status ?? 0 })
        }
      }
      const clients = Promise.all([client(), client(), client(), client()])
      yield* Effect.addFinalizer(() =>
        Effect.promise(() => {
          stop = true
          return clients
        })
      )

      expect(yield* eventually(() => flaky.requests() >= 10)).toBe(true)
      yield* Effect.promise(flaky.kill)
      const killedAt = performance.now()
      expect(yield* eventually(() => breaker().state === "open")).toBe(true)
      // down long enough for the breaker, not for the active check (3 failed probes, 600 ms)
      yield* Effect.promise(flaky.revive)
      const revivedAt = performance.now()
      const before = flaky.requests()

      expect(yield* eventually(() => flaky.requests() > before, 5000)).toBe(true)
      const tookMs = performance.now() - revivedAt
      // one interval (±10 % jitter) plus a probe and a request, with room for a loaded machine
      expect(tookMs).toBeLessThan(intervalMs * 10)
      expect(breaker().state).toBe("closed")
      // (a request in flight on a killed connection may get a 502; after that) the dead
      // target's refused connects failed over to the good one
      expect(statuses.filter((s) => s.sentAt > killedAt && s.status !== 200)).toEqual([])
    })
  )
})
