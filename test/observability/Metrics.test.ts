import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import fc from "fast-check"
import * as net from "node:net"
import { Counter, Histogram, Registry } from "prom-client"
import { BoundedCounter, BoundedHistogram, OVERFLOW_LABEL } from "../../src/observability/BoundedMetrics.js"
import { aggregateMetrics } from "../../src/observability/ClusterIpc.js"
import { makeMetrics, MetricsService } from "../../src/observability/Metrics.js"
import { startEchoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig } from "../support/proxy.js"

const sumOf = async (m: ReturnType<typeof makeMetrics>, name: string): Promise<number> => {
  const json = await m.registry.getSingleMetric(name)!.get()
  return json.values.reduce((a, v) => a + v.value, 0)
}

describe("Metrics", () => {
  it("exposes every Sentinel metric name on a fresh registry, with build info set", async () => {
    const m = makeMetrics({ defaultMetrics: false, version: "1.2.3" })
    const text = await m.render()
    for (const name of [
      "sentinel_requests_total",
      "sentinel_request_duration_seconds",
      "sentinel_active_requests",
      "sentinel_open_connections",
      "sentinel_rejected_requests_total",
      "sentinel_upstream_attempts_total",
      "sentinel_upstream_failures_total",
      "sentinel_upstream_health",
      "sentinel_circuit_breaker_state",
      "sentinel_circuit_breaker_transitions_total",
      "sentinel_upstream_retries_total",
      "sentinel_connection_pool_size",
      "sentinel_agent_calls_total",
      "sentinel_agent_latency_seconds",
      "sentinel_agent_timeouts_total",
      "sentinel_agent_failures_total",
      "sentinel_agent_fail_open_total",
      "sentinel_blocked_requests_total",
      "sentinel_rate_limited_total",
      "sentinel_config_reload_total",
      "sentinel_log_dropped_total",
      "sentinel_build_info"
    ]) {
      expect(text).toContain(`# TYPE ${name} `)
    }
    expect(text).toContain(`sentinel_build_info{version="1.2.3",node="${process.version}"} 1`)
  })

  it("two registries are independent (no global registry)", async () => {
    const a = makeMetrics({ defaultMetrics: false })
    const b = makeMetrics({ defaultMetrics: false })
    a.requests.inc("r1", "GET", 200)
    expect(await a.render()).toContain('sentinel_requests_total{route="r1",method="GET",status="200"} 1')
    expect(await b.render()).not.toContain('route="r1"')
  })

  it("default process metrics are collected when enabled", async () => {
    const m = makeMetrics()
    expect(await m.render()).toContain("process_cpu_user_seconds_total")
  })

  it("records labelled values through the hot-path methods", async () => {
    const m = makeMetrics({ defaultMetrics: false })
    m.requests.inc("api", "GET", 200)
    m.requests.inc("api", "GET", 200)
    m.requestDuration.observe(0.012, "api", "GET")
    m.circuitChanged("upstream", "10.0.0.1:80", "open")
    m.logDropped.add(5, "access")
    const text = await m.render()
    expect(text).toContain('sentinel_requests_total{route="api",method="GET",status="200"} 2')
    expect(text).toContain('sentinel_request_duration_seconds_count{route="api",method="GET"} 1')
    expect(text).toContain('sentinel_circuit_breaker_state{component="upstream",target="10.0.0.1:80"} 1')
    expect(text).toContain('sentinel_circuit_breaker_transitions_total{component="upstream",target="10.0.0.1:80",to="open"} 1')
    expect(text).toContain('sentinel_log_dropped_total{log="access"} 5')
    m.upstreamHealth.set(1, "u", "t")
    m.upstreamHealth.remove("u", "t")
    expect(await m.render()).not.toContain('sentinel_upstream_health{upstream="u"')
  })

  it("completed(): every answered request is counted once, past the per-route method cache too", async () => {
    const m = makeMetrics({ defaultMetrics: false })
    // more distinct (client-chosen) methods than the per-route cache keeps, each twice
    const methods = Array.from({ length: 40 }, (_, i) => `M${i}`)
    for (const method of [...methods, ...methods]) m.completed("r", method, 200, 0.01)
    m.completed("r", "GET", 404, 0.02)
    expect(await sumOf(m, "sentinel_requests_total")).toBe(81)
    const text = await m.render()
    for (const method of methods) {
      expect(text).toContain(`sentinel_requests_total{route="r",method="${method}",status="200"} 2`)
      expect(text).toContain(`sentinel_request_duration_seconds_count{route="r",method="${method}"} 2`)
    }
    expect(text).toContain('sentinel_requests_total{route="r",method="GET",status="404"} 1')
  })

  it("caps distinct label sets per metric; overflow goes to \"other\" and nothing is lost", async () => {
    // Invariant: series <= cap (+1 overflow series) and the sum of all series equals the number of increments.
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 8 }), fc.array(fc.string({ maxLength: 4 }), { maxLength: 60 }), async (cap, routes) => {
        const m = makeMetrics({ defaultMetrics: false, maxSeriesPerMetric: cap })
        for (const r of routes) m.rateLimited.inc(r)
        const json = await m.registry.getSingleMetric("sentinel_rate_limited_total")!.get()
        expect(json.values.length).toBeLessThanOrEqual(cap + 1)
        expect(await sumOf(m, "sentinel_rate_limited_total")).toBe(routes.length)
        const distinct = new Set(routes).size
        const overflowed = json.values.find((v) => v.labels.route === OVERFLOW_LABEL && !routes.includes(OVERFLOW_LABEL))
        if (distinct > cap) expect(overflowed).toBeDefined()
        else expect(overflowed).toBeUndefined()
        expect(m.rateLimited.series).toBeLessThanOrEqual(cap)
      }),
      { numRuns: 100 }
    )
  })

  it("counts overflows per metric", async () => {
    const m = makeMetrics({ defaultMetrics: false, maxSeriesPerMetric: 1 })
    m.blocked.inc("a")
    m.blocked.inc("b")
    m.blocked.inc("c")
    expect(await m.render()).toContain('sentinel_metric_series_overflow_total{metric="sentinel_blocked_requests_total"} 2')
  })

  it("aggregates worker registries: counters sum, circuit state takes the worst, health the lowest", async () => {
    const w1 = makeMetrics({ defaultMetrics: false })
    const w2 = makeMetrics({ defaultMetrics: false })
    w1.requests.inc("r", "GET", 200)
    w2.requests.add(2, "r", "GET", 200)
    w1.circuitChanged("upstream", "t", "closed")
    w2.circuitChanged("upstream", "t", "open")
    w1.upstreamHealth.set(1, "u", "t")
    w2.upstreamHealth.set(0, "u", "t")
    w1.activeRequests.set(3)
    w2.activeRequests.set(4)
    const merged = aggregateMetrics([await w1.registry.getMetricsAsJSON(), await w2.registry.getMetricsAsJSON()])
    const text = await merged.metrics()
    expect(text).toContain('sentinel_requests_total{route="r",method="GET",status="200"} 3')
    expect(text).toContain('sentinel_circuit_breaker_state{component="upstream",target="t"} 1')
    expect(text).toContain('sentinel_upstream_health{upstream="u",target="t"} 0')
    expect(text).toContain("sentinel_active_requests 7")
    expect(text).toMatch(/sentinel_build_info\{version="0.0.0",node="[^"]+"\} 1\n/)
  })

  it.effect("MetricsService.layerTest provides a registry", () =>
    Effect.gen(function* () {
      const m = yield* MetricsService
      m.configReloads.inc("success")
      const text = yield* Effect.promise(() => m.render())
      expect(text).toContain('sentinel_config_reload_total{result="success"} 1')
    }).pipe(Effect.provide(MetricsService.layerTest))
  )
})

describe("metrics from real traffic", () => {
  it.live("each answered request is timed in sentinel_request_duration_seconds; sentinel_active_requests counts what is in flight", () =>
    Effect.gen(function* () {
      const origin = yield* Effect.promise(() => startEchoOrigin())
      const scope = yield* Scope.make()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
          routes: [{ id: "api", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }]
        })
      ).pipe(Scope.extend(scope))
      for (let i = 0; i < 3; i++) expect((yield* Effect.promise(() => request(proxy.port, { path: `/m${i}` }))).status).toBe(200)
      const held = net.connect(proxy.port, "127.0.0.1")
      held.write("GET /metrics-held/hold HTTP/1.1\r\nHost: x\r\n\r\n")
      yield* Effect.promise(() => origin.arrived("/metrics-held/hold"))
      const during = yield* Effect.promise(() => proxy.metrics.render())
      expect(during).toContain('sentinel_request_duration_seconds_count{route="api",method="GET"} 3')
      expect(during).toMatch(/sentinel_request_duration_seconds_bucket\{le="\+Inf",route="api",method="GET"\} 3/)
      expect(during).toContain("sentinel_active_requests 1")
      held.destroy()
      yield* Effect.promise(() => origin.aborted("/metrics-held/hold"))
      // the aborted one is answered (499) and timed too; nothing is left in flight
      for (let i = 0; i < 100; i++) {
        if ((yield* Effect.promise(() => proxy.metrics.render())).includes("sentinel_active_requests 0")) break
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
      }
      const after = yield* Effect.promise(() => proxy.metrics.render())
      expect(after).toContain("sentinel_active_requests 0")
      expect(after).toContain('sentinel_request_duration_seconds_count{route="api",method="GET"} 4')
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => origin.close())
    })
  )
})

describe("fast series children", () => {
  it("property: export exactly what prom-client's own inc/observe give, across resets and removals", async () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant("inc" as const), a: fc.constantFrom("r1", "r2", "r3"), b: fc.constantFrom("GET", "POST"), n: fc.oneof(fc.constant(1), fc.nat({ max: 5 })) }),
      fc.record({ k: fc.constant("obs" as const), a: fc.constantFrom("r1", "r2"), b: fc.constantFrom("GET", "POST"), n: fc.double({ min: 0, max: 20, noNaN: true }) }),
      fc.record({ k: fc.constant("reset" as const) }),
      fc.record({ k: fc.constant("remove" as const), a: fc.constantFrom("r1", "r2"), b: fc.constantFrom("GET", "POST") })
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
        const labelNames = ["route", "method"] as const
        const make = () => {
          const registry = new Registry()
          const c = new Counter({ name: "c_total", help: "c", labelNames, registers: [registry] })
          const h = new Histogram({ name: "h_seconds", help: "h", labelNames, buckets: [0.5, 1, 5, 10], registers: [registry] })
          return { registry, c, h }
        }
        const fast = make()
        const plain = make()
        const fc_ = new BoundedCounter<typeof labelNames>(fast.c, "c_total", 2, 100, () => {}, labelNames)
        const fh = new BoundedHistogram<typeof labelNames>(fast.h, "h_seconds", 2, 100, () => {}, labelNames)
        for (const o of ops) {
          if (o.k === "inc") {
            fc_.add(o.n, o.a, o.b)
            plain.c.inc({ route: o.a, method: o.b }, o.n)
          } else if (o.k === "obs") {
            fh.observe(o.n, o.a, o.b)
            plain.h.observe({ route: o.a, method: o.b }, o.n)
          } else if (o.k === "reset") {
            fast.c.reset(); fast.h.reset(); plain.c.reset(); plain.h.reset()
          } else {
            fast.c.remove(o.a, o.b); fast.h.remove(o.a, o.b); plain.c.remove(o.a, o.b); plain.h.remove(o.a, o.b)
          }
        }
        expect(await fast.registry.metrics()).toBe(await plain.registry.metrics())
      }),
      { numRuns: 200 }
    )
  })
})
