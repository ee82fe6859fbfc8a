/**
 * Lifecycle of the proxy as a layer: graceful drain on scope close, and
 * nothing left behind afterwards (sockets, timers, fibers are counted).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Supervisor from "effect/Supervisor"
import * as net from "node:net"
import { startEchoOrigin, patternBytes } from "../support/origins.js"
import { request, startProxy, testConfig } from "../support/proxy.js"

const resourceCounts = (): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
  return counts
}

const connectRefused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1")
    s.once("connect", () => {
      s.destroy()
      resolve(false)
    })
    s.once("error", () => resolve(true))
  })

describe("lifecycle", () => {
  it.live("drains: a slow in-flight response completes while new connections are refused", () =>
    Effect.gen(function* () {
      const origin = yield* Effect.promise(() => startEchoOrigin())
      const scope = yield* Scope.make()
      const config = testConfig({
        system: { gracefulShutdownTimeout: Duration.seconds(10) } as never,
        upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
        routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "a" }]
      })
      const proxy = yield* startProxy(config).pipe(Scope.extend(scope))
      const inflight = request(proxy.port, { path: "/slow?ms=700" })
      yield* Effect.promise(() => origin.arrived("/slow?ms=700"))
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // The listener stops accepting at once, while the slow response is still running.
      yield* Effect.promise(async () => {
        for (let i = 0; i < 200 && !(await connectRefused(proxy.port)); i++) await new Promise((r) => setImmediate(r))
      })
      expect(yield* Effect.promise(() => connectRefused(proxy.port))).toBe(true)
      const reply = yield* Effect.promise(() => inflight)
      expect(reply.status).toBe(200)
      expect(reply.body.toString()).toBe("start\nend\n")
      yield* Fiber.join(closing)
      yield* Effect.promise(() => origin.close())
    })
  )

  it.live("a pipelined request whose connection dies before its turn is settled: drain does not wait for it", () =>
    Effect.gen(function* () {
      const origin = yield* Effect.promise(() => startEchoOrigin())
      const scope = yield* Scope.make()
      const proxy = yield* startProxy(
        testConfig({
          // a drain that waited for the lost request would take the whole minute
          system: { gracefulShutdownTimeout: Duration.seconds(60) } as never,
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "a" }]
        })
      ).pipe(Scope.extend(scope))
      const s = net.connect(proxy.port, "127.0.0.1")
      s.write("GET /first/hold HTTP/1.1\r\nHost: x\r\n\r\nGET /second/hold HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* Effect.promise(() => Promise.all([origin.arrived("/first/hold"), origin.arrived("/second/hold")]))
      s.destroy()
      // both upstream exchanges are cancelled, the queued one included
      yield* Effect.promise(() => Promise.all([origin.aborted("/first/hold"), origin.aborted("/second/hold")]))
      const started = Date.now()
      yield* Scope.close(scope, Exit.void)
      expect(Date.now() - started).toBeLessThan(5_000)
      yield* Effect.promise(() => origin.close())
    })
  )

  it.live("leaves no socket, timer or fiber behind after the scope closes", () =>
    Effect.gen(function* () {
      const before = resourceCounts()
      const origin = yield* Effect.promise(() => startEchoOrigin())
      const supervisor = yield* Supervisor.track
      const scope = yield* Scope.make()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "a" }]
        })
      ).pipe(Scope.extend(scope), Effect.supervised(supervisor))
      // Traffic of every kind: success, large body, client abort mid-request.
      for (let i = 0; i < 20; i++) {
        const r = yield* Effect.promise(() => request(proxy.port, { path: `/r${i}` }))
        expect(r.status).toBe(200)
      }
      const big = yield* Effect.promise(() => request(proxy.port, { method: "POST", path: "/upload", body: patternBytes(300_000) }))
      expect(big.status).toBe(200)
      const s = net.connect(proxy.port, "127.0.0.1")
      s.write("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* Effect.promise(() => origin.arrived("/hold"))
      s.destroy()
      yield* Effect.promise(() => origin.aborted("/hold"))
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => origin.close())
      // Let the closed handles finish closing (bounded: a few event-loop turns).
      let after = resourceCounts()
      for (let i = 0; i < 50 && JSON.stringify(after) !== JSON.stringify(before); i++) {
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
        after = resourceCounts()
      }
      for (const kind of ["TCPServerWrap", "TCPSocketWrap", "Timeout"]) {
        expect(after[kind] ?? 0, kind).toBeLessThanOrEqual(before[kind] ?? 0)
      }
      const alive = (yield* supervisor.value).filter((f) => f.unsafePoll() === null)
      expect(alive.length).toBe(0)
    })
  )
})
