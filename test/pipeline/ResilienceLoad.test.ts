/**
 * Under load (GETs from 50 concurrent keep-alive connections, bounded count):
 * killing one of three targets loses no client request, and bringing it back
 * returns traffic to it within the health-check interval.
 */
import * as http from "node:http"
import type * as net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { startProxy, testConfig } from "../support/proxy.js"

/** An origin that can be killed (sockets destroyed, port closed) and revived on the same port. */
const killableOrigin = async (name: string) => {
  let served = 0
  const sockets = new Set<net.Socket>()
  const server = http.createServer((req, res) => {
    served++
    req.resume()
    req.on("end", () => {
      const body = JSON.stringify({ origin: name })
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
      res.end(body)
    })
  })
  server.on("connection", (s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const port = (server.address() as net.AddressInfo).port
  let up = true
  return {
    port,
    address: `127.0.0.1:${port}`,
    served: () => served,
    kill: () =>
      new Promise<void>((resolve) => {
        up = false
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
    revive: () =>
      new Promise<void>((resolve) => {
        up = true
        server.listen(port, "127.0.0.1", resolve)
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        if (up) server.close(() => resolve())
        else resolve()
      })
  }
}

const get = (agent: http.Agent, port: number, path: string): Promise<number> =>
  new Promise((resolve) => {
    const req = http.request({ host: "127.0.0.1", port, path, agent }, (res) => {
      res.resume()
      res.on("end", () => resolve(res.statusCode ?? 0))
      res.on("error", () => resolve(-1))
    })
    req.on("error", () => resolve(-1))
    req.end()
  })

describe("resilience under load", () => {
  it.scopedLive(
    "killing one of three targets loses no request; reviving it returns traffic within the health interval",
    () =>
      Effect.gen(function* () {
        const origins = yield* Effect.acquireRelease(
          Effect.promise(() => Promise.all(["a", "b", "c"].map(killableOrigin))),
          (os) => Effect.promise(() => Promise.all(os.map((o) => o.close())))
        )
        const intervalMs = 200
        const proxy = yield* startProxy(
          testConfig({
            upstreams: [
              {
                id: "u",
                targets: origins.map((o) => ({ address: o.address })),
                healthCheck: { type: { kind: "tcp" }, intervalMs, timeoutMs: 500, unhealthyThreshold: 1, healthyThreshold: 1 },
                circuitBreaker: { openTimeoutMs: 1000 }
              }
            ],
            routes: [
              {
                id: "r",
                matches: [{ _tag: "PathPrefix", prefix: "/" }],
                upstream: "u",
                retryPolicy: { maxAttempts: 3, backoffMs: 1, maxBackoffMs: 10 }
              }
            ]
          })
        )
        const agent = new http.Agent({ keepAlive: true, maxSockets: 50 })
        yield* Effect.addFinalizer(() => Effect.sync(() => agent.destroy()))

        const total = 2000
        const killAt = 400
        const reviveAt = 1000
        const statuses = new Map<number, number>()
        let started = 0
        let done = 0
        let revivedAt = 0
        let firstAfterRevive = 0
        const victim = origins[1]
        let victimBaseline = 0
        const worker = async () => {
          while (started < total) {
            const i = started++
            if (i === killAt) await victim.kill()
            if (i === reviveAt) {
              await victim.revive()
              victimBaseline = victim.served()
              revivedAt = performance.now()
            }
            const status = await get(agent, proxy.port, `/load/${i}`)
            statuses.set(status, (statuses.get(status) ?? 0) + 1)
            done++
            if (revivedAt > 0 && firstAfterRevive === 0 && victim.served() > victimBaseline) {
              firstAfterRevive = performance.now()
            }
          }
        }
        const t0 = performance.now()
        yield* Effect.promise(() => Promise.all(Array.from({ length: 50 }, worker)))
        const elapsed = performance.now() - t0
        // the run stayed bounded in time
        expect(elapsed).toBeLessThan(20_000)
        expect(done).toBe(total)
        expect(Object.fromEntries(statuses)).toEqual({ 200: total })
        // the kill was felt: attempts on the dead target failed and were failed over or retried
        const failures = (yield* Effect.promise(() => proxy.metrics.registry.getSingleMetric("sentinel_upstream_failures_total")!.get()))
          .values.reduce((n, v) => n + v.value, 0)
        expect(failures).toBeGreaterThan(0)
        // the revived target got traffic again, within a health interval (plus scheduling slack)
        expect(firstAfterRevive).toBeGreaterThan(0)
        expect(firstAfterRevive - revivedAt).toBeLessThan(intervalMs * 1.1 + 500)
      }),
    60_000
  )
})
