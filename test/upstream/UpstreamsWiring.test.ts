/**
 * The upstream runtime wiring: selection over TargetState (health, circuit,
 * tried targets), state and pools kept across a reload, DNS from the cache
 * (never a system lookup per connection), sticky cookies end to end, health
 * checks stopped with the upstream.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { request as undiciRequest } from "undici"
import { makeConfig, type UpstreamConfig } from "../../src/config/Schema.js"
import { cookieValue } from "../../src/http/Cookie.js"
import { DnsCache } from "../../src/upstream/Dns.js"
import { makeTargetPool } from "../../src/upstream/Pool.js"
import { launchUpstream, makeUpstreamRuntime } from "../../src/upstream/Upstreams.js"
import { echoOrigin, startEchoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig } from "../support/proxy.js"

const upstream = (input: object): UpstreamConfig =>
  makeConfig({
    listeners: [{ id: "l", address: "127.0.0.1:0" }],
    upstreams: [{ id: "u", ...input }],
    routes: [{ id: "r", upstream: "u" }]
  } as never).upstreams[0]

const ctx = { clientIp: "10.0.0.1", path: "/", header: () => undefined, cookie: () => undefined }

describe("upstream runtime", () => {
  it("select takes the first eligible candidate, skips tried ones, falls back to a tried one, else undefined", () => {
    const rt = makeUpstreamRuntime(
      upstream({ targets: [{ address: "127.0.0.1:1" }, { address: "127.0.0.1:2" }, { address: "127.0.0.1:3" }] })
    )
    try {
      rt.states[0].health.setEnabled(false)
      const seen = new Set<number>()
      for (let i = 0; i < 6; i++) seen.add(rt.select(ctx, [])!.index)
      expect([...seen].sort()).toEqual([1, 2])
      expect(rt.select(ctx, [1])!.index).toBe(2)
      expect(rt.select(ctx, [2])!.index).toBe(1)
      // all untried ineligible: a tried (eligible) one still serves
      expect([1, 2]).toContain(rt.select(ctx, [1, 2])!.index)
      rt.states[1].health.setEnabled(false)
      rt.states[2].health.setEnabled(false)
      expect(rt.select(ctx, [])).toBeUndefined()
    } finally {
      void rt.close(0)
    }
  })

  it("an open circuit is skipped; the half-open probe slot goes to one request only", () => {
    let now = 0
    const rt = makeUpstreamRuntime(
      upstream({ targets: [{ address: "127.0.0.1:1" }], circuitBreaker: { failureThreshold: 1, openTimeoutMs: 100 } }),
      { now: () => now }
    )
    try {
      const s = rt.states[0]
      expect(rt.select(ctx, [])?.index).toBe(0)
      s.begin()
      s.end("connect-failure")
      expect(s.circuit.state).toBe("open")
      expect(rt.select(ctx, [])).toBeUndefined()
      now = 150
      expect(rt.select(ctx, [])?.index).toBe(0) // the probe
      expect(rt.select(ctx, [])).toBeUndefined() // slot taken
      s.begin()
      s.end("success")
      expect(rt.select(ctx, [])?.index).toBe(0)
    } finally {
      void rt.close(0)
    }
  })

  it("a reload keeps breaker/health state and pools of unchanged targets; closing the old runtime keeps shared pools open", async () => {
    const origin = await startEchoOrigin("o")
    try {
      const a = upstream({ targets: [{ address: origin.address }, { address: "127.0.0.1:2" }] })
      const old = makeUpstreamRuntime(a)
      old.states[0].health.setEnabled(false)
      const b = upstream({ targets: [{ address: "127.0.0.1:3" }, { address: origin.address }], loadBalancing: "least_connections" })
      const next = makeUpstreamRuntime(b, {}, old)
      // same target, moved to index 1: same breaker and health, new index for the balancer
      expect(next.states[1].health).toBe(old.states[0].health)
      expect(next.states[1].circuit).toBe(old.states[0].circuit)
      expect(next.states[1].index).toBe(1)
      expect(next.targets[1].pool).toBe(old.targets[0].pool)
      expect(next.states[0].health).not.toBe(old.states[1].health)
      await old.close(0)
      // the shared pool still works
      const res = await undiciRequest(`http://${origin.address}/x`, { dispatcher: next.targets[1].pool.pool })
      expect(res.statusCode).toBe(200)
      await res.body.dump()
      await next.close(0)
      expect(next.targets[1].pool.pool.closed || next.targets[1].pool.pool.destroyed).toBe(true)
    } finally {
      await origin.close()
    }
  })

  it("host-name targets connect through the DNS cache; a failed re-resolution keeps the last good address", async () => {
    const origin = await startEchoOrigin("dns")
    let lookups = 0
    let fail = false
    const dns = new DnsCache({ timeoutMs: 500 }, async (host) => {
      lookups++
      if (fail || host !== "origin.sentinel.test") throw Object.assign(new Error("nope"), { code: "ENOTFOUND" })
      return [{ address: "127.0.0.1", family: 4 }]
    })
    const cfg = upstream({ targets: [{ address: `origin.sentinel.test:${origin.port}` }] })
    const tp = makeTargetPool(cfg, cfg.targets[0], dns)
    try {
      const first = await undiciRequest(`http://origin.sentinel.test:${origin.port}/a`, { dispatcher: tp.pool, reset: true })
      expect(first.statusCode).toBe(200)
      await first.body.dump()
      expect(lookups).toBe(1)
      fail = true
      await dns.refresh("origin.sentinel.test")
      expect(dns.lastError("origin.sentinel.test")).toBe("ENOTFOUND")
      const second = await undiciRequest(`http://origin.sentinel.test:${origin.port}/b`, { dispatcher: tp.pool, reset: true })
      expect(second.statusCode).toBe(200)
      await second.body.dump()
      expect(origin.requests.map((r) => r.url)).toEqual(["/a", "/b"])
    } finally {
      await tp.pool.destroy()
      await origin.close()
    }
  })

  it("cookieValue reads one cookie of a Cookie header", () => {
    expect(cookieValue("a=1; SERVERID=abc; b=2", "SERVERID")).toBe("abc")
    expect(cookieValue('SERVERID="q"', "SERVERID")).toBe("q")
    expect(cookieValue("XSERVERID=1", "SERVERID")).toBeUndefined()
    expect(cookieValue(undefined, "SERVERID")).toBeUndefined()
  })

  it.scopedLive("closing a launched upstream stops its health checks", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin("hc")
      const parent = yield* Scope.make()
      const rt = yield* launchUpstream(
        upstream({
          targets: [{ address: origin.address }],
          healthCheck: { type: { kind: "http", path: "/hc" }, intervalMs: 30, timeoutMs: 200 }
        }),
        {},
        parent
      )
      const probes = () => origin.requests.filter((r) => r.url === "/hc").length
      yield* Effect.promise(async () => {
        for (let i = 0; i < 200 && probes() < 2; i++) await new Promise((r) => setTimeout(r, 10))
      })
      expect(probes()).toBeGreaterThanOrEqual(2)
      yield* Effect.promise(() => rt.close(0))
      const after = probes()
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 150)))
      expect(probes()).toBe(after)
      yield* Scope.close(parent, Exit.void)
    })
  )
})

describe("reload", () => {
  it.scopedLive("a changed upstream keeps the open breaker of an unchanged target; the old health checks stop", () =>
    Effect.gen(function* () {
      const good = yield* echoOrigin("good")
      const dead = "127.0.0.1:1"
      const cfg = (algorithm: string, intervalMs: number) =>
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: dead }, { address: good.address }],
              loadBalancing: algorithm as never,
              circuitBreaker: { failureThreshold: 1, openTimeoutMs: 60_000 },
              healthCheck: { type: { kind: "http", path: "/hc" }, intervalMs, timeoutMs: 200, unhealthyThreshold: 5 }
            }
          ],
          routes: [{ id: "r", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "u" }]
        })
      const proxy = yield* startProxy(cfg("round_robin", 40))
      for (let i = 0; i < 2; i++) expect((yield* Effect.promise(() => request(proxy.port, { path: `/a${i}` }))).status).toBe(200)
      const before = proxy.dataplane().upstreams.get("u")!
      expect(before.states[0].circuit.state).toBe("open")
      yield* proxy.reload(cfg("least_connections", 60_000))
      const after = proxy.dataplane().upstreams.get("u")!
      expect(after).not.toBe(before)
      expect(after.balancer.algorithm).toBe("least_connections")
      expect(after.states[0].circuit.state).toBe("open")
      // the new checker ran its first round at once; then, with a 60 s interval, nothing more
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 200)))
      const probes = good.requests.filter((r) => r.url === "/hc").length
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 200)))
      expect(good.requests.filter((r) => r.url === "/hc").length).toBe(probes)
    })
  )
})

describe("sticky sessions end to end", () => {
  it.scopedLive("the first answer sets the cookie; later requests with it stay on that target", () =>
    Effect.gen(function* () {
      const a = yield* echoOrigin("a")
      const b = yield* echoOrigin("b")
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: a.address }, { address: b.address }],
              loadBalancing: "sticky",
              sticky: { cookieName: "SRV", cookieSecure: false }
            }
          ],
          routes: [{ id: "r", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "u" }]
        })
      )
      const first = yield* Effect.promise(() => request(proxy.port, { path: "/s" }))
      const setCookie = first.headers["set-cookie"]?.[0] ?? ""
      expect(setCookie).toMatch(/^SRV=[0-9a-f]{8}; Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax$/)
      const pinned = JSON.parse(first.body.toString()).origin
      const cookie = setCookie.split(";")[0]
      for (let i = 0; i < 6; i++) {
        const r = yield* Effect.promise(() => request(proxy.port, { path: `/s${i}`, headers: { cookie: `x=1; ${cookie}` } }))
        expect(JSON.parse(r.body.toString()).origin).toBe(pinned)
        // already pinned: no new cookie
        expect(r.headers["set-cookie"]).toBeUndefined()
      }
    })
  )
})
