import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { defaultRateLimitConfig, makeRateLimiter, rateLimitKeyOf, TokenBuckets } from "../../src/filters/RateLimit.js"
import { filterRequest, headerMap } from "../support/filterRequest.js"

/** A clock the test moves by hand. */
const fakeClock = () => {
  let t = 0
  return { now: () => t, advance: (ms: number) => void (t += ms) }
}

describe("TokenBuckets", () => {
  it("admits burst at once, then max-rps per second", () => {
    const clock = fakeClock()
    const b = new TokenBuckets(10, 5, 100, clock.now)
    const first = Array.from({ length: 8 }, () => b.take("k").allowed)
    expect(first).toEqual([true, true, true, true, true, false, false, false])
    clock.advance(100) // one token at 10/s
    expect(b.take("k").allowed).toBe(true)
    expect(b.take("k").allowed).toBe(false)
    clock.advance(10_000) // refills only up to burst
    expect(Array.from({ length: 6 }, () => b.take("k").allowed).filter(Boolean).length).toBe(5)
  })

  it("keys are independent", () => {
    const b = new TokenBuckets(1, 1, 100, fakeClock().now)
    expect([b.take("a").allowed, b.take("a").allowed, b.take("b").allowed]).toEqual([true, false, true])
  })

  it("max-keys bounds the table; the least recently used key is evicted", () => {
    const clock = fakeClock()
    const b = new TokenBuckets(1, 1, 3, clock.now)
    b.take("a")
    b.take("b")
    b.take("c")
    b.take("a") // a is now most recent (denied, but touched)
    b.take("d") // evicts b
    expect(b.size).toBe(3)
    expect(b.evictions).toBe(1)
    expect(b.take("a").allowed).toBe(false) // a kept its empty bucket
    expect(b.take("b").allowed).toBe(true) // b was evicted: fresh bucket
  })

  it("delay mode borrows within max-delay and queues later requests behind", () => {
    const b = new TokenBuckets(10, 1, 100, fakeClock().now)
    expect(b.take("k", 250)).toMatchObject({ allowed: true, delayMs: 0 })
    expect(b.take("k", 250)).toMatchObject({ allowed: true, delayMs: 100 })
    expect(b.take("k", 250)).toMatchObject({ allowed: true, delayMs: 200 })
    expect(b.take("k", 250).allowed).toBe(false) // would wait 300 ms
  })

  it("property: over any window of t ms, admitted <= burst + rate * t", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 0, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 300 }),
        (rps, burst, gaps) => {
          const clock = fakeClock()
          const b = new TokenBuckets(rps, burst, 10, clock.now)
          const admitted: Array<number> = []
          for (const g of gaps) {
            clock.advance(g)
            if (b.take("k").allowed) admitted.push(clock.now())
          }
          const cap = Math.max(1, burst)
          for (let i = 0; i < admitted.length; i++) {
            for (let j = i; j < admitted.length; j++) {
              const t = (admitted[j] - admitted[i]) / 1000
              expect(j - i + 1).toBeLessThanOrEqual(Math.floor(cap + rps * t + 1e-9))
            }
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it("property: the table never holds more than max-keys", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.array(fc.string({ maxLength: 3 }), { maxLength: 200 }), (max, keys) => {
        const b = new TokenBuckets(5, 5, max, fakeClock().now)
        for (const k of keys) {
          b.take(k)
          expect(b.size).toBeLessThanOrEqual(max)
        }
      })
    )
  })
})

describe("makeRateLimiter", () => {
  it("reject: 429 with Retry-After and X-RateLimit-* once the bucket is empty", () => {
    const clock = fakeClock()
    const rl = makeRateLimiter({ ...defaultRateLimitConfig, maxRps: 2, burst: 2 }, clock.now)
    const req = filterRequest()
    const a = rl.check(req)
    expect(a._tag).toBe("Continue")
    expect(headerMap(a._tag === "Continue" ? a.responseHeaders : [])).toMatchObject({
      "x-ratelimit-limit": ["2"],
      "x-ratelimit-remaining": ["1"],
      "x-ratelimit-reset": ["1"]
    })
    rl.check(req)
    const c = rl.check(req)
    expect(c._tag).toBe("Respond")
    if (c._tag === "Respond") {
      expect(c.status).toBe(429)
      expect(headerMap(c.headers)["retry-after"]).toEqual(["1"])
      expect(headerMap(c.headers)["x-ratelimit-remaining"]).toEqual(["0"])
      expect(c.body).toBe("Too Many Requests")
    }
  })

  it("log-only never blocks but notes the excess; custom status code", () => {
    const rl = makeRateLimiter({ ...defaultRateLimitConfig, maxRps: 1, burst: 1, onLimit: "log-only" }, fakeClock().now)
    rl.check(filterRequest())
    expect(rl.check(filterRequest())).toMatchObject({ _tag: "Continue", note: "rate-limit-exceeded-log-only" })
    const rl2 = makeRateLimiter({ ...defaultRateLimitConfig, maxRps: 1, burst: 1, statusCode: 503 }, fakeClock().now)
    rl2.check(filterRequest())
    expect(rl2.check(filterRequest())).toMatchObject({ _tag: "Respond", status: 503 })
  })

  it("delay: continues with delayMs up to max-delay-ms", () => {
    const rl = makeRateLimiter({ ...defaultRateLimitConfig, maxRps: 10, burst: 1, onLimit: "delay", maxDelayMs: 150 }, fakeClock().now)
    rl.check(filterRequest())
    expect(rl.check(filterRequest())).toMatchObject({ _tag: "Continue", delayMs: 100 })
    expect(rl.check(filterRequest())).toMatchObject({ _tag: "Respond", status: 429 })
  })

  it("keys: client-ip, path, route, client-ip-and-path, header:<name> (bounded length)", () => {
    const req = filterRequest({ clientIp: "198.51.100.7", path: "/x", routeId: "api", headers: { "X-Api-Key": "k".repeat(1000) } })
    expect(rateLimitKeyOf("client-ip", req)).toBe("198.51.100.7")
    expect(rateLimitKeyOf("path", req)).toBe("/x")
    expect(rateLimitKeyOf("route", req)).toBe("api")
    expect(rateLimitKeyOf("client-ip-and-path", req)).toBe("198.51.100.7 /x")
    expect(rateLimitKeyOf("header:X-Api-Key", req).length).toBe(256)
    expect(rateLimitKeyOf("header:x-missing", req)).toBe("h:")
  })
})
