import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { DnsCache, type LookupFn, makeDnsCache } from "../../src/upstream/Dns.js"

/** A scripted resolver: answers from `table`, fails for hosts in `failing`, hangs for `hanging`. */
const scripted = () => {
  const table = new Map<string, string[]>()
  const failing = new Set<string>()
  const hanging = new Set<string>()
  let calls = 0
  const lookup: LookupFn = (host) => {
    calls++
    if (hanging.has(host)) return new Promise(() => {})
    if (failing.has(host)) return Promise.reject(Object.assign(new Error("nx"), { code: "ENOTFOUND" }))
    return Promise.resolve((table.get(host) ?? []).map((address) => ({ address, family: address.includes(":") ? 6 : 4 })))
  }
  return { table, failing, hanging, lookup, calls: () => calls }
}

const tick = () => Effect.promise(() => new Promise<void>((r) => setImmediate(r)))

describe("Dns", () => {
  it("keeps the last good addresses when a re-resolution fails, until maxStaleMs", async () => {
    let t = 0
    const r = scripted()
    r.table.set("api.internal", ["10.0.0.1", "10.0.0.2"])
    const cache = new DnsCache({ maxStaleMs: 60_000 }, r.lookup, () => t)
    await cache.refresh("api.internal")
    assert.deepStrictEqual(cache.addresses("api.internal"), ["10.0.0.1", "10.0.0.2"])
    r.failing.add("api.internal")
    t += 30_000
    await cache.refresh("api.internal")
    assert.strictEqual(cache.lastError("api.internal"), "ENOTFOUND")
    assert.deepStrictEqual(cache.addresses("api.internal"), ["10.0.0.1", "10.0.0.2"])
    // an empty answer is a failure too, not a reason to drop the addresses
    r.failing.delete("api.internal")
    r.table.set("api.internal", [])
    await cache.refresh("api.internal")
    assert.deepStrictEqual(cache.addresses("api.internal"), ["10.0.0.1", "10.0.0.2"])
    t += 30_001
    assert.isUndefined(cache.addresses("api.internal"), "too stale to serve")
    r.table.set("api.internal", ["10.0.0.3"])
    await cache.refresh("api.internal")
    assert.deepStrictEqual(cache.addresses("api.internal"), ["10.0.0.3"])
  })

  it("a hung lookup times out, keeps the old addresses, and is single-flight", async () => {
    const r = scripted()
    r.table.set("h", ["10.1.1.1"])
    const cache = new DnsCache({ timeoutMs: 30 }, r.lookup)
    await cache.refresh("h")
    r.hanging.add("h")
    const before = r.calls()
    await Promise.all([cache.refresh("h"), cache.refresh("h"), cache.refresh("h")])
    assert.strictEqual(r.calls() - before, 1, "one lookup for three concurrent refreshes")
    assert.match(cache.lastError("h")!, /timed out/)
    assert.deepStrictEqual(cache.addresses("h"), ["10.1.1.1"])
  })

  it("the per-request read never waits: unknown hosts start a background lookup; IP literals need none", async () => {
    const r = scripted()
    r.table.set("late", ["10.2.2.2", "10.2.2.3"])
    const cache = new DnsCache({}, r.lookup)
    assert.deepStrictEqual(cache.addresses("192.0.2.7"), ["192.0.2.7"])
    assert.deepStrictEqual(cache.addresses("[::1]"), ["::1"])
    assert.strictEqual(r.calls(), 0)
    assert.isUndefined(cache.addresses("late"))
    await cache.refresh("late") // joins the background lookup
    assert.strictEqual(r.calls(), 1)
    const seen = new Set([cache.next("late"), cache.next("late"), cache.next("late")])
    assert.deepStrictEqual([...seen].sort(), ["10.2.2.2", "10.2.2.3"], "next() rotates")
  })

  it("the host map is bounded", async () => {
    const r = scripted()
    const cache = new DnsCache({ maxHosts: 2 }, r.lookup)
    for (const h of ["a", "b", "c", "d"]) cache.addresses(h)
    assert.strictEqual(cache.hosts.length, 2)
  })

  it("resolves localhost through the system resolver", async () => {
    const cache = new DnsCache()
    await cache.refresh("localhost")
    const list = cache.addresses("localhost") ?? []
    assert.isTrue(list.some((a) => a === "127.0.0.1" || a === "::1"), String(list))
  })

  it.scoped("makeDnsCache resolves before returning, re-resolves on schedule, stops with its scope", () =>
    Effect.gen(function* () {
      const r = scripted()
      r.table.set("svc", ["10.0.0.9"])
      const scope = yield* Scope.make()
      const cache = yield* makeDnsCache(["svc"], { refreshMs: 1000 }, r.lookup).pipe(Scope.extend(scope))
      assert.deepStrictEqual(cache.addresses("svc"), ["10.0.0.9"])
      assert.strictEqual(r.calls(), 1)
      r.failing.add("svc")
      for (let round = 2; round <= 3; round++) {
        yield* TestClock.adjust("1100 millis")
        for (let i = 0; i < 50 && r.calls() < round; i++) yield* tick()
        assert.strictEqual(r.calls(), round)
      }
      assert.strictEqual(cache.lastError("svc"), "ENOTFOUND")
      assert.deepStrictEqual(cache.addresses("svc"), ["10.0.0.9"], "last good kept")
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("10 seconds")
      for (let i = 0; i < 10; i++) yield* tick()
      assert.strictEqual(r.calls(), 3, "no lookups after the scope closed")
    }))
})
