import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import fc from "fast-check"
import {
  type ActiveHealthConfig,
  type HealthChange,
  initialActiveState,
  runActiveHealthChecks,
  stepActive,
  UpstreamHealth
} from "../../src/upstream/Health.js"
import { hangingOrigin, refusingPort, statusOrigin } from "../support/faults.js"

/** Polls `cond` every 5 ms until true or `ms` elapse (bounded wait, no fixed sleep). */
const waitFor = (cond: () => boolean, ms = 5000) =>
  Effect.gen(function* () {
    const end = Date.now() + ms
    while (!cond()) {
      if (Date.now() > end) return yield* Effect.die(new Error("condition not reached in time"))
      yield* Effect.sleep("5 millis")
    }
  })

const fast = (type: ActiveHealthConfig["type"], timeoutMs = 150): ActiveHealthConfig => ({
  type,
  intervalMs: 15,
  timeoutMs,
  healthyThreshold: 2,
  unhealthyThreshold: 3
})

describe("Health", () => {
  it("active state flips only after N consecutive results", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.array(fc.boolean(), { maxLength: 60 }), (h, u, results) => {
        let s = initialActiveState
        let runOk = 0
        let runFail = 0
        for (const ok of results) {
          const before = s.healthy
          s = stepActive(s, ok, { healthyThreshold: h, unhealthyThreshold: u })
          runOk = ok ? runOk + 1 : 0
          runFail = ok ? 0 : runFail + 1
          if (!before && s.healthy && runOk < h) return false
          if (before && !s.healthy && runFail < u) return false
          if (!before && runOk >= h && !s.healthy) return false
          if (before && runFail >= u && s.healthy) return false
        }
        return true
      })
    )
  })

  it("passive: ejects above the failure ratio, stays bounded, returns after the cool-down", () => {
    let t = 0
    const changes: HealthChange[] = []
    const h = new UpstreamHealth("api", ["a:1"], {
      passive: { windowSize: 10, failureRatio: 0.5, minRequests: 4, cooldownMs: 1000 },
      onChange: (c) => changes.push(c),
      now: () => t
    }).targets[0]
    for (let i = 0; i < 1000; i++) h.recordPassive("success")
    assert.strictEqual(h.snapshot.passive.outcomes, 10, "window is bounded")
    for (let i = 0; i < 5; i++) h.recordPassive("connect-failure")
    assert.isTrue(h.eligible(), "5/10 is not above 0.5")
    h.recordPassive("timeout")
    assert.isFalse(h.eligible())
    assert.deepInclude(changes[0], { eligible: false, source: "passive" })
    t += 999
    assert.isFalse(h.eligible())
    t += 1
    assert.isTrue(h.eligible())
    assert.deepInclude(changes[1], { eligible: true, source: "passive" })
  })

  it("a passing active check that started after a passive ejection lifts it; one that started before does not", () => {
    let t = 0
    const changes: HealthChange[] = []
    const h = new UpstreamHealth("api", ["a:1"], {
      passive: { windowSize: 10, failureRatio: 0.5, minRequests: 4, cooldownMs: 60_000 },
      onChange: (c) => changes.push(c),
      now: () => t
    }).targets[0]
    const probeStarted = t
    t = 10
    for (let i = 0; i < 4; i++) h.recordPassive("connect-failure")
    assert.isFalse(h.eligible())
    // answered by the target before traffic found it dead: no say over the ejection
    h.recordActive(true, "connected", probeStarted)
    assert.isFalse(h.eligible())
    t = 20
    h.recordActive(true, "connected")
    assert.isTrue(h.eligible(), "un-ejected long before the 60 s cool-down")
    assert.deepInclude(changes.at(-1), { eligible: true, source: "active" })
    assert.strictEqual(h.snapshot.passive.outcomes, 0, "with a clean window")
    // a failed check lifts nothing
    for (let i = 0; i < 4; i++) h.recordPassive("timeout")
    t = 30
    h.recordActive(false, "ECONNREFUSED")
    assert.isFalse(h.eligible())
  })

  it("operator disable is kept apart from health", () => {
    const h = new UpstreamHealth("api", ["a:1"]).targets[0]
    h.setEnabled(false)
    assert.isFalse(h.eligible())
    assert.isTrue(h.healthy)
    for (let i = 0; i < 3; i++) h.recordActive(false, "x")
    h.setEnabled(true)
    assert.isFalse(h.eligible(), "re-enabling does not forge health")
    h.recordActive(true, "ok")
    h.recordActive(true, "ok")
    assert.isTrue(h.eligible())
  })

  it.live("http check: unhealthy after exactly 3 failed probes, healthy again after 2 good ones", () =>
    Effect.gen(function* () {
      const origin = yield* Effect.acquireRelease(Effect.promise(() => statusOrigin(200)), (o) => Effect.promise(o.close))
      let switchedAt = 0
      const flips: Array<{ eligible: boolean; sinceSwitch: number }> = []
      const health = new UpstreamHealth("api", ["origin"], {
        active: { healthyThreshold: 2, unhealthyThreshold: 3 },
        onChange: (c) => flips.push({ eligible: c.eligible, sinceSwitch: origin.requests() - switchedAt })
      })
      yield* runActiveHealthChecks(health, [{ id: "origin", host: "127.0.0.1", port: origin.port }], fast({ kind: "http", path: "/healthz", expectedStatus: [200] }, 2000))
      yield* waitFor(() => origin.requests() >= 2)
      assert.isTrue(health.targets[0].eligible())
      assert.strictEqual(origin.paths()[0], "/healthz")
      switchedAt = origin.requests()
      origin.setStatus(503)
      yield* waitFor(() => flips.length === 1)
      assert.deepStrictEqual(flips[0], { eligible: false, sinceSwitch: 3 })
      assert.isFalse(health.targets[0].eligible())
      switchedAt = origin.requests()
      origin.setStatus(200)
      yield* waitFor(() => flips.length === 2)
      assert.deepStrictEqual(flips[1], { eligible: true, sinceSwitch: 2 })
    }).pipe(Effect.scoped))

  it.live("tcp check marks a refusing port unhealthy; http check marks a hanging origin unhealthy by timeout", () =>
    Effect.gen(function* () {
      const refusing = yield* Effect.promise(refusingPort)
      const hanging = yield* Effect.acquireRelease(Effect.promise(hangingOrigin), (o) => Effect.promise(o.close))
      const reasons: string[] = []
      const tcp = new UpstreamHealth("a", ["r"], { onChange: (c) => reasons.push(c.reason) })
      const http = new UpstreamHealth("b", ["h"], { onChange: (c) => reasons.push(c.reason) })
      const tcpHanging = new UpstreamHealth("c", ["h"])
      yield* runActiveHealthChecks(tcp, [{ id: "r", host: "127.0.0.1", port: refusing.port }], fast({ kind: "tcp" }))
      yield* runActiveHealthChecks(http, [{ id: "h", host: "127.0.0.1", port: hanging.port }], fast({ kind: "http", path: "/", expectedStatus: [200] }))
      yield* runActiveHealthChecks(tcpHanging, [{ id: "h", host: "127.0.0.1", port: hanging.port }], fast({ kind: "tcp" }))
      yield* waitFor(() => !tcp.targets[0].eligible() && !http.targets[0].eligible())
      assert.include(reasons.join(" "), "ECONNREFUSED")
      assert.include(reasons.join(" "), "timeout after 150 ms")
      // tcp only proves the port accepts
      assert.isTrue(tcpHanging.targets[0].eligible())
      assert.isAbove(hanging.connections(), 0)
    }).pipe(Effect.scoped))

  it.live("closing the scope stops the checker: no probes after close, its connections closed", () =>
    Effect.gen(function* () {
      const origin = yield* Effect.promise(() => statusOrigin(200))
      const scope = yield* Scope.make()
      const health = new UpstreamHealth("api", ["o"])
      yield* runActiveHealthChecks(health, [{ id: "o", host: "127.0.0.1", port: origin.port }], fast({ kind: "http", path: "/", expectedStatus: [200] })).pipe(
        Scope.extend(scope)
      )
      yield* waitFor(() => origin.requests() >= 3)
      yield* Scope.close(scope, Exit.void)
      const after = origin.requests()
      // absence of probes can only be shown over time: 20 intervals
      yield* Effect.sleep("300 millis")
      assert.strictEqual(origin.requests(), after)
      yield* waitFor(() => origin.openConnections() === 0, 2000)
      yield* Effect.promise(origin.close)
    }))
})
