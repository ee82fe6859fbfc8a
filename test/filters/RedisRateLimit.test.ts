/**
 * The Redis-backed rate limit against a real redis-server (test/support/redis.ts starts one on a
 * free port; without redis-server installed these tests fail with how to install it): the script
 * is the local token bucket, batched per key, shared by limiters; a slow, down or restarted
 * Redis never holds a decision past its deadline, and the fallback decides, counted and logged
 * at most once per interval.
 */
import * as fc from "fast-check"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FilterOutcome } from "../../src/filters/FilterOutcome.js"
import {
  defaultRateLimitConfig, defaultRedisBackend, makeRateLimiter, type RateLimitConfig, type RedisBackendConfig, TokenBuckets
} from "../../src/filters/RateLimit.js"
import {
  BACKEND_LOG_INTERVAL_MS, type CircuitName, makeRedisRateLimiter, RedisCircuit, type RedisFailure, redisBackendName, RedisStore,
  RedisStores, takeResultAt
} from "../../src/filters/RedisRateLimit.js"
import { filterRequest, headerMap } from "../support/filterRequest.js"
import { waitUntil } from "../support/proxy.js"
import { freePort, type RedisServer, startRedis } from "../support/redis.js"

type Limit = RateLimitConfig & { readonly backend: RedisBackendConfig }

const limit = (over: Partial<RateLimitConfig> = {}, backend: Partial<RedisBackendConfig> = {}): Limit => ({
  ...defaultRateLimitConfig,
  key: "route",
  ...over,
  backend: { ...defaultRedisBackend, poolSize: 2, ...backend }
})

/** What a store reported. */
const recorder = () => {
  const errors: Array<RedisFailure> = []
  const logs: Array<{ level: string; message: string; fields: Record<string, string | number> }> = []
  const circuits: Array<[CircuitName, CircuitName]> = []
  return {
    errors,
    logs,
    circuits,
    hooks: {
      backendError: (_f: string, r: RedisFailure) => void errors.push(r),
      log: (level: "warn" | "info", message: string, fields: Record<string, string | number>) => void logs.push({ level, message, fields }),
      circuitChanged: (_b: string, from: CircuitName, to: CircuitName) => void circuits.push([from, to])
    }
  }
}

const decide = (l: ReturnType<typeof makeRedisRateLimiter>, routeId = "r1") =>
  new Promise<FilterOutcome | "unavailable">((resolve) => l.decide(filterRequest({ routeId }), resolve))

const timed = async <A>(f: () => Promise<A>): Promise<{ value: A; ms: number }> => {
  const t = performance.now()
  const value = await f()
  return { value, ms: performance.now() - t }
}

const statusOf = (o: FilterOutcome | "unavailable") => (o === "unavailable" ? 503 : o._tag === "Respond" ? o.status : 200)
const headersOf = (o: FilterOutcome | "unavailable") =>
  o === "unavailable" ? {} : headerMap(o._tag === "Respond" ? o.headers : o.responseHeaders)

describe("takeResultAt (the answers of one batched call)", () => {
  it("equals the local bucket taking the same requests one by one", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 100_000 }), fc.nat({ max: 30 }), fc.integer({ min: 1, max: 30 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 5000 })),
        (burst, rpsTenths, k, n, maxDelayMs) => {
          const rps = rpsTenths / 10
          const b = new TokenBuckets(rps, burst, 10, () => 0)
          // k earlier requests at the same instant leave `burst - granted` tokens
          const earlier = Array.from({ length: k }, () => b.take("k", maxDelayMs)).filter((r) => r.allowed).length
          const local = Array.from({ length: n }, () => b.take("k", maxDelayMs))
          const granted = local.filter((r) => r.allowed).length
          const batched = local.map((_, i) => takeResultAt(burst - earlier, granted, i, rps / 1000, burst))
          expect(batched).toEqual(local)
        }
      )
    )
  })
})

describe("RedisCircuit", () => {
  it("opens after the threshold, lets one probe through after the open time, closes on its success, reopens on its failure", () => {
    let t = 0
    const changes: Array<string> = []
    const c = new RedisCircuit(3, 1000, (from, to) => changes.push(`${from}->${to}`), () => t)
    c.failure()
    c.failure()
    expect(c.tryAcquire()).toBe(true)
    c.success() // a success resets the count
    c.failure()
    c.failure()
    c.failure()
    expect(c.state).toBe("open")
    expect(c.tryAcquire()).toBe(false)
    t = 999
    expect(c.tryAcquire()).toBe(false)
    t = 1000
    expect(c.tryAcquire()).toBe(true) // the probe
    expect(c.tryAcquire()).toBe(false) // one at a time
    c.failure()
    expect(c.state).toBe("open")
    t = 2000
    expect(c.tryAcquire()).toBe(true)
    c.success()
    expect(c.state).toBe("closed")
    expect(changes).toEqual(["closed->open", "open->half-open", "half-open->open", "open->half-open", "half-open->closed"])
  })

  it("the backend's name carries no credentials", () => {
    expect(redisBackendName("redis://user:secret@cache.internal:6380/2")).toBe("cache.internal:6380/2")
    expect(redisBackendName("rediss://:pw@h")).toBe("rediss://h:6379")
    expect(redisBackendName("redis://127.0.0.1:6379/0")).toBe("127.0.0.1:6379")
  })
})

describe("Redis rate limit against redis-server", { timeout: 30_000 }, () => {
  let redis: RedisServer
  const stores: Array<RedisStore> = []
  const store = (backend: Partial<RedisBackendConfig> = {}, hooks = recorder().hooks) => {
    const s = new RedisStore({ ...defaultRedisBackend, url: redis.url, poolSize: 2, ...backend }, { hooks })
    stores.push(s)
    return s
  }
  const ready = (s: RedisStore) => waitUntil(() => s.ready > 0, "a Redis connection", 5000)
  let n = 0
  /** A fresh filter id per test: fresh buckets. */
  const fid = () => `t${++n}`

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(async () => {
    for (const s of stores) s.close()
    await redis?.stop()
  })

  it("admits exactly burst of a burst of requests, with the local limiter's answers and headers; the key expires", async () => {
    const s = store()
    await ready(s)
    const config = limit({ maxRps: 1, burst: 5 }, { url: redis.url })
    const id = fid()
    const l = makeRedisRateLimiter(id, config, s)
    const outcomes = await Promise.all(Array.from({ length: 12 }, () => decide(l)))
    const local = makeRateLimiter(config, () => 0)
    const expected = Array.from({ length: 12 }, () => local.check(filterRequest({ routeId: "r1" })))
    expect(outcomes.map(statusOf)).toEqual(expected.map(statusOf))
    expect(outcomes.map(statusOf).filter((x) => x === 200)).toHaveLength(5)
    expect(outcomes.map(headersOf)).toEqual(expected.map(headersOf))
    const key = `sentinel:ratelimit:${id}:r1`
    const ttl = await redis.client().pttl(key)
    // empty at 1/s: full again after 5 s (+1 s margin), then gone
    expect(ttl).toBeGreaterThan(4000)
    expect(ttl).toBeLessThanOrEqual(6000)
  })

  it("one script call per key and turn of the event loop; limiters on two stores share one bucket", async () => {
    const a = store()
    const b = store()
    await ready(a)
    await ready(b)
    const config = limit({ maxRps: 0.001, burst: 7 })
    const id = fid()
    const la = makeRedisRateLimiter(id, config, a)
    const lb = makeRedisRateLimiter(id, config, b)
    const calls = async () => {
      const info = await redis.client().info("commandstats")
      return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0)
    }
    const before = await calls()
    const outcomes = await Promise.all([...Array.from({ length: 10 }, () => decide(la)), ...Array.from({ length: 10 }, () => decide(lb))])
    expect(await calls()).toBe(before + 2) // 10 requests of one store's turn = 1 call, per store
    expect(outcomes.map(statusOf).filter((x) => x === 200)).toHaveLength(7) // the two "processes" share the bucket
  })

  it("delay mode: the batch's requests wait in turn, up to max-delay-ms", async () => {
    const s = store()
    await ready(s)
    const l = makeRedisRateLimiter(fid(), limit({ maxRps: 10, burst: 2, onLimit: "delay", maxDelayMs: 250 }), s)
    const outcomes = await Promise.all(Array.from({ length: 6 }, () => decide(l)))
    const delays = outcomes.map((o) => (o !== "unavailable" && o._tag === "Continue" ? o.delayMs ?? 0 : -1))
    // 2 at once, then one each 100 ms while the wait stays within 250 ms, then refused
    expect(delays.slice(0, 2)).toEqual([0, 0])
    expect(delays[2]).toBeGreaterThan(90)
    expect(delays[2]).toBeLessThanOrEqual(100)
    expect(delays[3]).toBeGreaterThan(190)
    expect(delays[3]).toBeLessThanOrEqual(200)
    expect(delays.slice(4)).toEqual([-1, -1])
  })

  it("a Redis that does not answer: each decision within the deadline, by the fallback; counted; the circuit opens", async () => {
    const r = recorder()
    const s = store({ timeoutMs: 50, failureThreshold: 2, circuitOpenMs: 60_000 }, r.hooks)
    await ready(s)
    const l = makeRedisRateLimiter(fid(), limit({ maxRps: 1, burst: 1 }), s)
    // Redis blocks every client for 1.5 s
    await redis.client().call("CLIENT", "PAUSE", "1500", "ALL")
    const first = await Promise.all([timed(() => decide(l)), timed(() => decide(l, "other"))])
    for (const d of first) {
      expect(d.ms).toBeLessThan(150)
      expect(statusOf(d.value)).toBe(200) // the local fallback's fresh bucket
    }
    expect(r.errors).toEqual(["timeout", "timeout"])
    const second = await timed(() => decide(l))
    expect(second.ms).toBeLessThan(50) // the circuit is open: no call, no wait
    expect(statusOf(second.value)).toBe(429) // the local bucket of r1 is empty
    expect(r.errors).toEqual(["timeout", "timeout", "circuit_open"])
    expect(r.circuits).toContainEqual(["closed", "open"])
    expect(r.logs.filter((x) => x.level === "warn")).toHaveLength(1) // at most one line per interval
    expect(r.logs[0].fields).toMatchObject({ backend: redisBackendName(redis.url), reasons: "timeout=1", decisions: 1 })
    await waitUntil(async () => (await redis.client().ping()) === "PONG", "Redis unpaused", 5000)
  })

  it("fallback open admits, closed refuses, when nothing listens at the URL; no decision waits", async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`
    const stores = new RedisStores()
    try {
      const open = makeRedisRateLimiter(fid(), limit({ maxRps: 1, burst: 1 }, { url: dead, fallback: "open" }), stores.acquire({ ...defaultRedisBackend, url: dead }))
      const closed = makeRedisRateLimiter(fid(), limit({ maxRps: 1, burst: 1 }, { url: dead, fallback: "closed" }), stores.acquire({ ...defaultRedisBackend, url: dead }))
      expect(stores.size).toBe(1) // same connection settings: one pool
      for (let i = 0; i < 5; i++) {
        const o = await timed(() => decide(open))
        const c = await timed(() => decide(closed))
        expect(o.ms).toBeLessThan(50)
        expect(c.ms).toBeLessThan(50)
        expect(o.value).toEqual({ _tag: "Continue" })
        expect(c.value).toBe("unavailable")
      }
    } finally {
      stores.closeAll()
    }
  })

  it("Redis killed, then restarted: decisions go on by the fallback, then by Redis again (script reloaded)", async () => {
    const r = recorder()
    const s = store({ circuitOpenMs: 200 }, r.hooks)
    await ready(s)
    const l = makeRedisRateLimiter(fid(), limit({ maxRps: 0.001, burst: 3 }), s)
    expect((await Promise.all([decide(l), decide(l)])).map(statusOf)).toEqual([200, 200])
    await redis.kill()
    for (let i = 0; i < 5; i++) {
      const d = await timed(() => decide(l))
      expect(d.ms).toBeLessThan(60)
    }
    expect(r.errors.length).toBe(5)
    expect(new Set(r.errors)).not.toContain("timeout") // refused connections fail at once
    await redis.restart()
    // Redis is empty after the restart: its bucket is full again, the key reappears
    const t0 = Date.now()
    await waitUntil(async () => {
      const before = r.errors.length
      await decide(l)
      return r.errors.length === before
    }, "a decision by Redis after the restart", 5000)
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(r.logs.map((x) => x.message)).toContain("rate-limit backend answering again")
    expect(await redis.client().exists(`sentinel:ratelimit:t${n}:r1`)).toBe(1)
  })

  it("close() answers what is queued with the fallback and disconnects", async () => {
    const s = store()
    await ready(s)
    const l = makeRedisRateLimiter(fid(), limit({ maxRps: 1, burst: 1 }), s)
    const pending = decide(l)
    s.close()
    expect(statusOf(await pending)).toBe(200)
    await waitUntil(() => s.ready === 0, "disconnected", 2000)
    expect(BACKEND_LOG_INTERVAL_MS).toBeGreaterThanOrEqual(1000)
  })
})
