import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import fc from "fast-check"
import {
  advance,
  CircuitBreaker,
  type CircuitConfig,
  type CircuitEvent,
  type CircuitState,
  initialSnapshot,
  isValidSnapshot,
  step
} from "../../src/upstream/Circuit.js"

const fakeClock = () => {
  let t = 1_000
  return { now: () => t, tick: (ms: number) => void (t += ms) }
}

const arbConfig: fc.Arbitrary<CircuitConfig> = fc.record({
  failureThreshold: fc.integer({ min: 1, max: 6 }),
  successThreshold: fc.integer({ min: 1, max: 4 }),
  openTimeoutMs: fc.integer({ min: 1, max: 1000 }),
  halfOpenMaxRequests: fc.integer({ min: 1, max: 3 }),
  probeTimeoutMs: fc.option(fc.integer({ min: 1, max: 2000 }), { nil: undefined })
})
const arbEvents = fc.array(
  fc.tuple(fc.constantFrom<CircuitEvent>("acquire", "success", "failure", "release"), fc.integer({ min: 0, max: 500 })),
  { maxLength: 200 }
)

describe("Circuit", () => {
  it("the breaker object (with its shortcuts for the closed state) behaves exactly as folding `step`", () => {
    fc.assert(
      fc.property(arbConfig, arbEvents, (config, events) => {
        const clock = fakeClock()
        const edges: Array<string> = []
        const cb = new CircuitBreaker(config, (a, b) => edges.push(`${a}>${b}`), clock.now)
        let model = initialSnapshot
        const modelEdges: Array<string> = []
        for (const [e, dt] of events) {
          clock.tick(dt)
          const r = step(config, model, e, clock.now())
          if (r.next.state !== model.state) modelEdges.push(`${model.state}>${r.next.state}`)
          model = r.next
          const admitted =
            e === "acquire" ? cb.tryAcquire() : e === "success" ? (cb.onSuccess(), true) : e === "failure" ? (cb.onFailure(), true) : (cb.release(), true)
          if (admitted !== r.admitted) return false
        }
        if (edges.join(",") !== modelEdges.join(",")) return false
        const snap = cb.snapshot
        const expected = advance(config, model, clock.now())
        return snap.state === expected.state && snap.failures === expected.failures && snap.probes === expected.probes
      })
    )
  })

  it("random event sequences never reach an invalid state", () => {
    fc.assert(
      fc.property(arbConfig, arbEvents, (config, events) => {
        let s = initialSnapshot
        let now = 0
        for (const [e, dt] of events) {
          now += dt
          s = step(config, s, e, now).next
          if (!isValidSnapshot(config, s)) return false
        }
        return true
      })
    )
  })

  it("from any reachable state, it closes after the open timeout and enough successful probes", () => {
    fc.assert(
      fc.property(arbConfig, arbEvents, (config, events) => {
        let s = initialSnapshot
        let now = 0
        for (const [e, dt] of events) {
          now += dt
          s = step(config, s, e, now).next
        }
        // lost probes included: wait long enough for both the open timeout and probe reclaim
        now += config.openTimeoutMs + (config.probeTimeoutMs ?? config.openTimeoutMs)
        for (let i = 0; i < config.successThreshold; i++) {
          const r = step(config, s, "acquire", now)
          if (!r.admitted) return false
          s = step(config, r.next, "success", now).next
        }
        return s.state === "closed"
      })
    )
  })

  it("open admits nothing until the timeout; half-open admits at most N at once", () => {
    fc.assert(
      fc.property(arbConfig, fc.integer({ min: 1, max: 10 }), (config, tries) => {
        let s = initialSnapshot
        for (let i = 0; i < config.failureThreshold; i++) s = step(config, s, "failure", 0).next
        if (s.state !== "open") return false
        for (let i = 0; i < tries; i++) if (step(config, s, "acquire", config.openTimeoutMs - 1).admitted) return false
        let admitted = 0
        for (let i = 0; i < tries + config.halfOpenMaxRequests; i++) {
          const r = step(config, s, "acquire", config.openTimeoutMs)
          s = r.next
          if (r.admitted) admitted++
        }
        return admitted === config.halfOpenMaxRequests
      })
    )
  })

  it("walks Closed -> Open -> HalfOpen -> Closed with a fake clock and reports each edge", () => {
    const clock = fakeClock()
    const edges: Array<[CircuitState, CircuitState]> = []
    const cb = new CircuitBreaker({ openTimeoutMs: 30_000 }, (a, b) => edges.push([a, b]), clock.now)
    for (let i = 0; i < 4; i++) cb.onFailure()
    assert.strictEqual(cb.state, "closed")
    cb.onSuccess() // consecutive count resets
    for (let i = 0; i < 4; i++) cb.onFailure()
    assert.strictEqual(cb.state, "closed")
    cb.onFailure()
    assert.strictEqual(cb.state, "open")
    assert.isFalse(cb.tryAcquire())
    clock.tick(29_999)
    assert.isFalse(cb.tryAcquire())
    clock.tick(1)
    // read without acquiring: a skipped target still moves to half-open
    assert.strictEqual(cb.state, "half-open")
    assert.isTrue(cb.tryAcquire())
    assert.isFalse(cb.tryAcquire(), "only one probe at a time")
    cb.onSuccess()
    assert.strictEqual(cb.state, "half-open")
    assert.isTrue(cb.tryAcquire())
    cb.onSuccess()
    assert.strictEqual(cb.state, "closed")
    assert.deepStrictEqual(edges, [
      ["closed", "open"],
      ["open", "half-open"],
      ["half-open", "closed"]
    ])
  })

  it("any failure while half-open reopens it", () => {
    const clock = fakeClock()
    const cb = new CircuitBreaker({ failureThreshold: 1, openTimeoutMs: 100 }, undefined, clock.now)
    cb.onFailure()
    clock.tick(100)
    assert.isTrue(cb.tryAcquire())
    cb.onFailure()
    assert.strictEqual(cb.state, "open")
    assert.isFalse(cb.tryAcquire())
  })

  it("a probe that never reports does not wedge it: release() or the probe timeout frees the slot", () => {
    const clock = fakeClock()
    const cb = new CircuitBreaker({ failureThreshold: 1, openTimeoutMs: 100, probeTimeoutMs: 50 }, undefined, clock.now)
    cb.onFailure()
    clock.tick(100)
    assert.isTrue(cb.tryAcquire())
    assert.isFalse(cb.tryAcquire())
    cb.release()
    assert.isTrue(cb.tryAcquire(), "released slot is reusable")
    // this probe is lost
    assert.isFalse(cb.wouldAdmit())
    clock.tick(50)
    assert.isTrue(cb.wouldAdmit())
    assert.isTrue(cb.tryAcquire(), "lost probe reclaimed after probeTimeoutMs")
  })

  it.effect("recovers under Effect's TestClock", () =>
    Effect.gen(function* () {
      const clock = yield* Effect.clock
      const cb = new CircuitBreaker({ failureThreshold: 2, successThreshold: 1, openTimeoutMs: 10_000 }, undefined, () =>
        clock.unsafeCurrentTimeMillis()
      )
      cb.onFailure()
      cb.onFailure()
      assert.strictEqual(cb.state, "open")
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual(cb.state, "open")
      yield* TestClock.adjust("1 second")
      assert.isTrue(cb.tryAcquire())
      cb.onSuccess()
      assert.strictEqual(cb.state, "closed")
    }))

  it("a throwing observer does not break transitions", () => {
    const cb = new CircuitBreaker({ failureThreshold: 1 }, () => {
      throw new Error("observer")
    })
    cb.onFailure()
    assert.strictEqual(cb.state, "open")
  })
})
