import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import {
  type AttemptOutcome,
  backoffDelay,
  defaultRetryPolicy,
  type FailureKind,
  isIdempotent,
  noRetryPolicy,
  RetryBudget,
  shouldRetry
} from "../../src/upstream/Retry.js"

const arbOutcome: fc.Arbitrary<AttemptOutcome> = fc.record({
  attempt: fc.integer({ min: 1, max: 6 }),
  method: fc.constantFrom("GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH", "CONNECT", "get", "post"),
  kind: fc.constantFrom<FailureKind>("connect-refused", "connect-timeout", "reset-before-send", "reset-after-send", "timeout", "status"),
  status: fc.constantFrom(500, 502, 503, 504, 429),
  requestSent: fc.boolean(),
  responseStarted: fc.boolean(),
  bodyReplayable: fc.boolean(),
  policy: fc.record({
    maxAttempts: fc.integer({ min: 0, max: 5 }),
    retryableStatusCodes: fc.subarray([502, 503, 504]),
    backoffMs: fc.integer({ min: 0, max: 500 }),
    maxBackoffMs: fc.integer({ min: 0, max: 3000 }),
    retryNonIdempotent: fc.boolean()
  })
})

describe("Retry", () => {
  it("never retries after the response started", () => {
    fc.assert(fc.property(arbOutcome, (o) => !shouldRetry({ ...o, responseStarted: true }).retry))
  })

  it("never retries a non-idempotent request that reached the upstream unless opted in", () => {
    fc.assert(
      fc.property(arbOutcome, (o) => {
        const d = shouldRetry({ ...o, policy: { ...o.policy, retryNonIdempotent: false } })
        const reached = o.kind === "status" || (o.requestSent && (o.kind === "reset-after-send" || o.kind === "timeout"))
        return !(d.retry && reached && !isIdempotent(o.method))
      })
    )
  })

  it("never exceeds max attempts, never replays an unbuffered body after sending, never retries an unlisted status", () => {
    fc.assert(
      fc.property(arbOutcome, (o) => {
        const d = shouldRetry(o)
        if (!d.retry) return true
        if (o.attempt >= o.policy.maxAttempts) return false
        if (o.kind === "status" && !o.policy.retryableStatusCodes.includes(o.status!)) return false
        if (d.reason !== "nothing-sent" && !o.bodyReplayable) return false
        return d.delayMs >= 0 && d.delayMs <= o.policy.maxBackoffMs
      })
    )
  })

  it("nothing sent is always safe on another target, for any method, without delay", () => {
    for (const kind of ["connect-refused", "connect-timeout", "reset-before-send"] as const) {
      for (const method of ["POST", "PATCH", "GET"]) {
        const d = shouldRetry({
          attempt: 1,
          method,
          kind,
          requestSent: true, // the kind proves otherwise
          responseStarted: false,
          bodyReplayable: false,
          policy: defaultRetryPolicy
        })
        assert.deepStrictEqual(d, { retry: true, delayMs: 0, reason: "nothing-sent" })
      }
    }
  })

  it("after sending: idempotent retried with backoff, POST only when opted in, statuses only when listed", () => {
    const base = {
      attempt: 1,
      kind: "reset-after-send" as const,
      requestSent: true,
      responseStarted: false,
      bodyReplayable: true,
      policy: defaultRetryPolicy
    }
    assert.isTrue(shouldRetry({ ...base, method: "GET" }).retry)
    assert.deepStrictEqual(shouldRetry({ ...base, method: "POST" }), { retry: false, reason: "non-idempotent" })
    assert.strictEqual(shouldRetry({ ...base, method: "POST", policy: { ...defaultRetryPolicy, retryNonIdempotent: true } }).retry, true)
    assert.deepStrictEqual(shouldRetry({ ...base, method: "GET", kind: "status", status: 503 }), { retry: false, reason: "status-not-retryable" })
    assert.isTrue(shouldRetry({ ...base, method: "GET", kind: "status", status: 503, policy: { ...defaultRetryPolicy, retryableStatusCodes: [503] } }).retry)
    assert.deepStrictEqual(shouldRetry({ ...base, method: "GET", policy: noRetryPolicy }), { retry: false, reason: "max-attempts" })
    assert.deepStrictEqual(shouldRetry({ ...base, method: "PUT", bodyReplayable: false }), { retry: false, reason: "body-not-replayable" })
  })

  it("backoff doubles, is capped, and jitters within [d/2, d]", () => {
    assert.strictEqual(backoffDelay(1, 100, 2000, () => 1), 100)
    assert.strictEqual(backoffDelay(2, 100, 2000, () => 1), 200)
    assert.strictEqual(backoffDelay(3, 100, 2000, () => 0), 200)
    assert.strictEqual(backoffDelay(50, 100, 2000, () => 1), 2000)
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 10_000 }), fc.double({ min: 0, max: 0.999 }), (n, b, m, r) => {
        const d = backoffDelay(n, b, m, () => r)
        const full = Math.min(m, b * 2 ** (n - 1))
        return d >= Math.floor(full / 2) && d <= Math.ceil(full) && d <= m
      })
    )
  })

  it("budget: retries never exceed ratio * requests + floor * (seconds + 1)", () => {
    fc.assert(
      fc.property(
        fc.record({ ratio: fc.double({ min: 0, max: 1, noNaN: true }), minPerSecond: fc.integer({ min: 0, max: 20 }), maxBalance: fc.integer({ min: 1, max: 200 }) }),
        fc.array(fc.tuple(fc.constantFrom("req", "retry"), fc.integer({ min: 0, max: 300 })), { maxLength: 500 }),
        (config, ops) => {
          let t = 0
          const budget = new RetryBudget(config, () => t)
          let requests = 0
          let retries = 0
          for (const [op, dt] of ops) {
            t += dt
            if (op === "req") {
              requests++
              budget.onRequest()
            } else if (budget.tryWithdraw()) retries++
          }
          return retries <= config.ratio * requests + config.minPerSecond * (t / 1000 + 1) + 1e-9
        }
      )
    )
  })

  it("budget: at 20 % with no floor, 1000 requests allow 200 retries, then none", () => {
    let t = 0
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 0, maxBalance: 1000 }, () => t)
    for (let i = 0; i < 1000; i++) budget.onRequest()
    let ok = 0
    for (let i = 0; i < 500; i++) if (budget.tryWithdraw()) ok++
    assert.approximately(ok, 200, 1)
    t += 60_000
    assert.isFalse(budget.tryWithdraw())
  })

  it("budget: the floor refills over time for a quiet upstream", () => {
    let t = 0
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 2 }, () => t)
    assert.isTrue(budget.tryWithdraw())
    assert.isTrue(budget.tryWithdraw())
    assert.isFalse(budget.tryWithdraw())
    t += 500
    assert.isTrue(budget.tryWithdraw())
    assert.isFalse(budget.tryWithdraw())
  })
})
