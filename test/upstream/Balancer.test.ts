import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import {
  algorithms,
  type BalancerContext,
  BalancerAlgorithmUnknown,
  makeBalancer,
  parseAlgorithm,
  parseHashKey,
  pick,
  stickyToken,
  type TargetView
} from "../../src/upstream/Balancer.js"
import { PeakEwma } from "../../src/upstream/PeakEwma.js"

interface T {
  weight: number
  active?: number
  ewma?: number
  ok?: boolean
}
const views = (ts: ReadonlyArray<T>, ids?: ReadonlyArray<string>): TargetView[] =>
  ts.map((t, index) => ({
    index,
    id: ids?.[index] ?? `10.0.0.${index}:80`,
    weight: t.weight,
    activeRequests: t.active ?? 0,
    ewmaLatencyMs: t.ewma ?? 0,
    eligible: () => t.ok ?? true
  }))
const specs = (vs: ReadonlyArray<TargetView>) => vs.map((v) => ({ id: v.id, weight: v.weight }))

const ctx = (o: { ip?: string; headers?: Record<string, string>; cookies?: Record<string, string>; path?: string } = {}): BalancerContext => ({
  clientIp: o.ip ?? "192.0.2.1",
  header: (n) => o.headers?.[n.toLowerCase()],
  cookie: (n) => o.cookies?.[n],
  path: o.path ?? "/"
})

/** A small deterministic PRNG so distribution tests are reproducible. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const arbTargets = fc.array(
  fc.record({
    weight: fc.integer({ min: 0, max: 5 }),
    active: fc.integer({ min: 0, max: 20 }),
    ewma: fc.integer({ min: 0, max: 500 }),
    ok: fc.boolean()
  }),
  { minLength: 0, maxLength: 12 }
)
const arbCtx = fc.record({ ip: fc.ipV4(), path: fc.webPath(), user: fc.option(fc.string(), { nil: undefined }) })

describe("Balancer", () => {
  it("every algorithm returns distinct, in-range, live indices, at most the bound", () => {
    fc.assert(
      fc.property(fc.constantFrom(...algorithms), arbTargets, fc.integer({ min: 0, max: 15 }), fc.array(arbCtx, { minLength: 1, maxLength: 5 }), (alg, ts, max, ctxs) => {
        const vs = views(ts)
        const b = makeBalancer({ algorithm: alg, hashKey: { source: "header", name: "x-user" }, maglevTableSize: 257, random: seeded(max) }, specs(vs))
        for (const c of ctxs) {
          const out = b.select(ctx({ ip: c.ip, path: c.path, headers: c.user === undefined ? {} : { "x-user": c.user } }), vs, max)
          if (out.length > max) return false
          if (new Set(out).size !== out.length) return false
          if (!out.every((i) => Number.isInteger(i) && i >= 0 && i < vs.length && vs[i].weight > 0)) return false
        }
        return true
      }),
      { numRuns: 300 }
    )
  })

  it("with the bound at n, every algorithm offers every live target, so pick finds any eligible one", () => {
    fc.assert(
      fc.property(fc.constantFrom(...algorithms), arbTargets, arbCtx, (alg, ts, c) => {
        const vs = views(ts)
        const b = makeBalancer({ algorithm: alg, maglevTableSize: 257, random: seeded(ts.length) }, specs(vs))
        const cx = ctx({ ip: c.ip, path: c.path })
        const out = b.select(cx, vs, vs.length)
        const liveCount = vs.filter((v) => v.weight > 0).length
        if (out.length !== liveCount) return false
        const picked = pick(b, cx, vs)
        const anyEligible = vs.some((v) => v.weight > 0 && v.eligible())
        return anyEligible ? picked !== undefined && vs[picked.index].eligible() : picked === undefined
      }),
      { numRuns: 300 }
    )
  })

  it("weighted is nginx's smooth WRR: {5,1,1} gives a a b a c a a", () => {
    const vs = views([{ weight: 5 }, { weight: 1 }, { weight: 1 }])
    const b = makeBalancer({ algorithm: "weighted" }, specs(vs))
    const seq = Array.from({ length: 7 }, () => "abc"[pick(b, ctx(), vs)!.index]).join(" ")
    assert.strictEqual(seq, "a a b a c a a")
  })

  it("weighted distributions match the weights within tolerance over many picks", () => {
    const weights = [1, 2, 3, 4]
    const total = 10
    const vs = views(weights.map((weight) => ({ weight })))
    for (const alg of ["weighted", "ip_hash", "consistent_hash", "maglev"] as const) {
      const b = makeBalancer({ algorithm: alg, maglevTableSize: 10007 }, specs(vs))
      const counts = [0, 0, 0, 0]
      const N = 20_000
      for (let i = 0; i < N; i++) counts[pick(b, ctx({ ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }), vs)!.index]++
      weights.forEach((w, i) => {
        const share = counts[i] / N
        assert.approximately(share, w / total, alg === "weighted" ? 0.001 : 0.05, `${alg} target ${i}: ${counts}`)
      })
    }
  })

  it("round_robin, random, least_connections spread evenly", () => {
    const vs = views([{ weight: 1 }, { weight: 1 }, { weight: 1 }])
    for (const alg of ["round_robin", "random", "least_connections", "power_of_two_choices"] as const) {
      const b = makeBalancer({ algorithm: alg, random: seeded(7) }, specs(vs))
      const counts = [0, 0, 0]
      for (let i = 0; i < 3000; i++) counts[pick(b, ctx(), vs)!.index]++
      for (const c of counts) assert.approximately(c / 3000, 1 / 3, 0.05, `${alg}: ${counts}`)
    }
  })

  const moved = (alg: "consistent_hash" | "maglev", before: string[], after: string[]) => {
    const mk = (ids: string[]) => {
      const vs = views(ids.map(() => ({ weight: 1 })), ids)
      return { vs, b: makeBalancer({ algorithm: alg, hashKey: { source: "path" }, maglevTableSize: 5003 }, specs(vs)) }
    }
    const x = mk(before)
    const y = mk(after)
    let changed = 0
    const N = 3000
    for (let k = 0; k < N; k++) {
      const c = ctx({ path: `/key/${k}` })
      if (x.vs[pick(x.b, c, x.vs)!.index].id !== y.vs[pick(y.b, c, y.vs)!.index].id) changed++
    }
    return changed / N
  }

  it("consistent_hash and maglev move about 1/n of keys when a target is added or removed", () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 10 }), fc.nat(), (n, r) => {
        const ids = Array.from({ length: n }, (_, i) => `backend-${i}.example:${8000 + i}`)
        const removed = ids.filter((_, i) => i !== r % n)
        const added = [...ids, "backend-new.example:9000"]
        for (const alg of ["consistent_hash", "maglev"] as const) {
          const rm = moved(alg, ids, removed)
          const ad = moved(alg, ids, added)
          // ideal: 1/n and 1/(n+1); allow for hash variance and maglev's small extra churn
          if (rm > (1 / n) * 1.6 + 0.03 || ad > (1 / (n + 1)) * 1.6 + 0.03) return false
          if (rm < (1 / n) * 0.4 || ad < (1 / (n + 1)) * 0.4) return false
        }
        return true
      }),
      { numRuns: 6 }
    )
  })

  it("hash algorithms use the request: same key same target, header key falls back to client ip", () => {
    const vs = views(Array.from({ length: 8 }, () => ({ weight: 1 })))
    for (const alg of ["ip_hash", "consistent_hash", "maglev"] as const) {
      const b = makeBalancer({ algorithm: alg, hashKey: parseHashKey("header:X-User"), maglevTableSize: 1009 }, specs(vs))
      const seen = new Set<number>()
      for (let i = 0; i < 64; i++) {
        const c = ctx({ ip: `198.51.100.${i}`, headers: { "x-user": `u${i}` } })
        const first = pick(b, c, vs)!.index
        assert.strictEqual(pick(b, c, vs)!.index, first)
        seen.add(first)
      }
      assert.isAbove(seen.size, 4, `${alg} spreads keys`)
    }
    const b = makeBalancer({ algorithm: "consistent_hash", hashKey: parseHashKey("header:X-User") }, specs(vs))
    assert.strictEqual(pick(b, ctx({ ip: "203.0.113.9" }), vs)!.index, pick(b, ctx({ ip: "203.0.113.9", headers: {} }), vs)!.index)
  })

  it("a hash target that is ineligible falls over to the next on the ring, and only its keys move", () => {
    const ts: T[] = Array.from({ length: 5 }, () => ({ weight: 1, ok: true }))
    const vs = views(ts)
    const b = makeBalancer({ algorithm: "consistent_hash", hashKey: { source: "path" } }, specs(vs))
    const before = Array.from({ length: 500 }, (_, k) => pick(b, ctx({ path: `/${k}` }), vs)!.index)
    ts[2].ok = false
    before.forEach((was, k) => {
      const now = pick(b, ctx({ path: `/${k}` }), vs)!.index
      assert.notStrictEqual(now, 2)
      if (was !== 2) assert.strictEqual(now, was)
    })
  })

  it("least_connections and weighted_least_connections prefer the least loaded", () => {
    const vs = views([{ weight: 1, active: 5 }, { weight: 1, active: 1 }, { weight: 1, active: 3 }])
    assert.deepStrictEqual(makeBalancer({ algorithm: "least_connections" }, specs(vs)).select(ctx(), vs, 3), [1, 2, 0])
    const ws = views([{ weight: 1, active: 2 }, { weight: 4, active: 6 }])
    // (2+1)/1 = 3 vs (6+1)/4 = 1.75
    assert.strictEqual(pick(makeBalancer({ algorithm: parseAlgorithm("wlc") }, specs(ws)), ctx(), ws)?.index, 1)
  })

  it("power_of_two_choices and peak_ewma pick the cheaper of the two sampled", () => {
    const vs = views([{ weight: 1, active: 10, ewma: 5 }, { weight: 1, active: 0, ewma: 500 }])
    assert.strictEqual(pick(makeBalancer({ algorithm: "power_of_two_choices", random: seeded(1) }, specs(vs)), ctx(), vs)?.index, 1)
    // peak ewma: 5*(10+1)=55 < 500*(0+1)
    assert.strictEqual(pick(makeBalancer({ algorithm: "peak_ewma", random: seeded(1) }, specs(vs)), ctx(), vs)?.index, 0)
  })

  it("sticky: pins by cookie, sets the cookie when missing or when the pinned target is out", () => {
    const ts: T[] = [{ weight: 1 }, { weight: 1 }, { weight: 1 }]
    const vs = views(ts)
    const b = makeBalancer({ algorithm: "sticky", sticky: { cookieName: "SRV", cookieTtlSecs: 60, cookieSameSite: "strict" } }, specs(vs))
    const first = pick(b, ctx(), vs)!
    assert.match(first.setCookie!, /^SRV=[0-9a-f]{8}; Path=\/; Max-Age=60; HttpOnly; Secure; SameSite=Strict$/)
    const token = first.setCookie!.split(";")[0].split("=")[1]
    assert.strictEqual(token, stickyToken(vs[first.index].id))
    for (let i = 0; i < 10; i++) {
      const again = pick(b, ctx({ cookies: { SRV: token } }), vs)!
      assert.strictEqual(again.index, first.index)
      assert.isUndefined(again.setCookie)
    }
    ts[first.index].ok = false
    const moved = pick(b, ctx({ cookies: { SRV: token } }), vs)!
    assert.notStrictEqual(moved.index, first.index)
    assert.include(moved.setCookie!, `SRV=${stickyToken(vs[moved.index].id)}`)
    // a forged cookie is just ignored
    assert.isDefined(pick(b, ctx({ cookies: { SRV: "not-a-token" } }), vs)?.setCookie)
  })

  it("parseAlgorithm accepts hyphens and Sentinel's aliases, and rejects unknown names clearly", () => {
    assert.strictEqual(parseAlgorithm("round-robin"), "round_robin")
    assert.strictEqual(parseAlgorithm("least-connections"), "least_connections")
    assert.strictEqual(parseAlgorithm("weighted_round_robin"), "weighted")
    assert.strictEqual(parseAlgorithm("weighted-round-robin"), "weighted")
    assert.strictEqual(parseAlgorithm("p2c"), "power_of_two_choices")
    assert.strictEqual(parseAlgorithm("wlc"), "weighted_least_connections")
    assert.strictEqual(parseAlgorithm("Peak-EWMA"), "peak_ewma")
    try {
      parseAlgorithm("least-conections")
      assert.fail("should throw")
    } catch (e) {
      assert.instanceOf(e, BalancerAlgorithmUnknown)
      assert.include((e as Error).message, 'did you mean "least_connections"')
    }
    assert.throws(() => parseAlgorithm("adaptive"), /not supported/)
    assert.throws(() => parseHashKey("query:x"), /invalid hash-key/)
  })

  it("PeakEwma jumps to slow samples and decays towards fast ones", () => {
    let t = 0
    const e = new PeakEwma(1000, () => t)
    e.observe(10)
    e.observe(200)
    assert.strictEqual(e.latencyMs, 200)
    t += 1000
    e.observe(10)
    assert.approximately(e.latencyMs, 200 * Math.exp(-1) + 10 * (1 - Math.exp(-1)), 1e-9)
  })
})
