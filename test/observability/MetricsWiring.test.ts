/**
 * Every metric family of Metrics.ts moved by real traffic through the real proxy
 * (in-process, port 0): real origins, named faults, a real agent process, a real
 * reload. A family defined but never recorded by the running proxy fails here
 * (a unit test calling `metrics.x.inc()` directly would not notice).
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterEach, describe, expect, it } from "vitest"
import { encodeKdl } from "../../src/config/KdlEncode.js"
import { loadConfigDetailed } from "../../src/config/Load.js"
import { makeReloader } from "../../src/config/Reload.js"
import type { SentinelConfig, SentinelConfigInput } from "../../src/config/Schema.js"
import { VERSION } from "../../src/Version.js"
import { eventually, socketDir, spawnRawAgent, stopAllAgents } from "../agents/rawAgentHarness.js"
import { hangingOrigin, refusingPort } from "../support/faults.js"
import { startEchoOrigin } from "../support/origins.js"
import { type ProxyHandle, request, startProxy, testConfig } from "../support/proxy.js"

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
  await stopAllAgents()
})

const start = async (config: SentinelConfig): Promise<ProxyHandle> => {
  const scope = Effect.runSync(Scope.make())
  cleanups.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  return Effect.runPromise(Scope.extend(startProxy(config), scope))
}

const scrape = (proxy: ProxyHandle): Promise<string> => proxy.metrics.registry.metrics()

/** Sum of the series of `name` whose labels include `labels`; undefined when there is none. */
const value = (text: string, name: string, labels: Record<string, string> = {}): number | undefined => {
  let sum: number | undefined
  for (const line of text.split("\n")) {
    if (!(line.startsWith(name + "{") || line.startsWith(name + " "))) continue
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1))
  }
  return sum
}

/** Polls the scrape until `check` holds (bounded), then returns that scrape. */
const until = async (proxy: ProxyHandle, check: (text: string) => boolean, what: string): Promise<string> => {
  let text = ""
  const deadline = Date.now() + 5000
  for (;;) {
    text = await scrape(proxy)
    if (check(text)) return text
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${text}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const route = (id: string, prefix: string, upstream: string, extra: object = {}) => ({
  id,
  priority: prefix.length,
  matches: [{ _tag: "PathPrefix" as const, prefix }],
  upstream,
  ...extra
})

describe("metrics moved by real traffic", () => {
  it("requests, upstream attempts/latency/failures/retries, circuit state, health, pool, rejections, connections", async () => {
    const good = await startEchoOrigin("good")
    cleanups.push(() => good.close())
    const dead = await refusingPort()
    const deadHc = await refusingPort()
    const hanging = await hangingOrigin()
    cleanups.push(() => hanging.close())
    const goodT = good.address
    const deadT = `127.0.0.1:${dead.port}`
    const deadHcT = `127.0.0.1:${deadHc.port}`
    const config = testConfig({
      upstreams: [
        // the dead target fails once, its breaker opens (threshold 1) and stays open
        { id: "u", targets: [{ address: deadT }, { address: goodT }], circuitBreaker: { failureThreshold: 1, openTimeoutMs: 60_000 } },
        {
          id: "hc",
          targets: [{ address: deadHcT }],
          healthCheck: { type: { kind: "tcp" }, intervalMs: 20, timeoutMs: 200, unhealthyThreshold: 1, healthyThreshold: 1 }
        },
        { id: "slow", targets: [{ address: `127.0.0.1:${hanging.port}` }] }
      ],
      filters: [{ id: "rl", type: "rate-limit", maxRps: 1, burst: 1 }],
      routes: [route("r", "/p", "u"), route("limited", "/limited", "u", { filters: ["rl"] }), route("hang", "/hang", "slow")]
    } as Partial<SentinelConfigInput>)
    const proxy = await start(config)

    // build info and the initial topology are there before any traffic
    const initial = await scrape(proxy)
    expect(value(initial, "sentinel_build_info", { version: VERSION, node: process.version })).toBe(1)
    expect(value(initial, "sentinel_upstream_health", { upstream: "u", target: goodT })).toBe(1)
    expect(value(initial, "sentinel_circuit_breaker_state", { component: "upstream:u", target: deadT })).toBe(0)

    for (let i = 0; i < 4; i++) {
      const r = await request(proxy.port, { path: `/p/${i}` })
      expect(r.status).toBe(200)
    }
    expect((await request(proxy.port, { path: "/limited/a" })).status).toBe(200)
    expect((await request(proxy.port, { path: "/limited/b" })).status).toBe(429)

    // the active health check takes the refusing "hc" target out of rotation
    let m = await until(proxy, (t) => value(t, "sentinel_upstream_health", { upstream: "hc", target: deadHcT }) === 0, "hc unhealthy")

    expect(value(m, "sentinel_requests_total", { route: "r", method: "GET", status: "200" })).toBe(4)
    expect(value(m, "sentinel_requests_total", { route: "limited", method: "GET", status: "429" })).toBe(1)
    expect(value(m, "sentinel_request_duration_seconds_count", { route: "r", method: "GET" })).toBe(4)
    // first request: dead (refused, breaker opens) then good; the next three go to good only
    expect(value(m, "sentinel_upstream_attempts_total", { upstream: "u", route: "r" })).toBe(5)
    expect(value(m, "sentinel_upstream_failures_total", { upstream: "u", route: "r", reason: "connect_refused" })).toBe(1)
    expect(value(m, "sentinel_upstream_retries_total", { upstream: "u", route: "r", reason: "nothing-sent" })).toBe(1)
    expect(value(m, "sentinel_upstream_duration_seconds_count", { upstream: "u", target: goodT })).toBe(5)
    expect(value(m, "sentinel_upstream_duration_seconds_count", { upstream: "u", target: deadT })).toBe(1)
    expect(value(m, "sentinel_circuit_breaker_state", { component: "upstream:u", target: deadT })).toBe(1)
    expect(value(m, "sentinel_circuit_breaker_state", { component: "upstream:u", target: goodT })).toBe(0)
    expect(value(m, "sentinel_circuit_breaker_transitions_total", { component: "upstream:u", target: deadT, to: "open" })).toBe(1)
    expect(value(m, "sentinel_upstream_health", { upstream: "u", target: goodT })).toBe(1)
    expect(value(m, "sentinel_connection_pool_size", { upstream: "u" })).toBeGreaterThan(0)
    expect(value(m, "sentinel_rate_limited_total", { route: "limited" })).toBe(1)
    expect(value(m, "sentinel_rejected_requests_total", { reason: "rate-limited" })).toBe(1)

    // no route (answered, not a rejection); a header validation drops; a head the parser
    // refuses (answered by the listener itself)
    expect((await request(proxy.port, { path: "/elsewhere" })).status).toBe(404)
    expect((await request(proxy.port, { path: "/p/u", headers: { x_under: "1" } })).status).toBe(200)
    const raw = net.connect(proxy.port, "127.0.0.1")
    raw.on("error", () => {})
    raw.resume() // read the 400 so the end (and the close) arrive
    raw.write("NOT HTTP AT ALL\r\n\r\n")
    await new Promise((r) => raw.once("close", r))
    m = await until(proxy, (t) => value(t, "sentinel_rejected_requests_total", { reason: "bad_request" }) === 1, "bad_request")
    expect(value(m, "sentinel_rejected_requests_total", { reason: "underscore_header_dropped" })).toBe(1)
    expect(value(m, "sentinel_requests_total", { route: "none", method: "GET", status: "404" })).toBe(1)

    // in flight and open connections are read as they are, and go back to 0
    expect(value(m, "sentinel_active_requests")).toBe(0)
    const held = net.connect(proxy.port, "127.0.0.1")
    held.on("error", () => {})
    held.write("GET /hang/x HTTP/1.1\r\nhost: t\r\n\r\n")
    m = await until(proxy, (t) => value(t, "sentinel_active_requests") === 1 && value(t, "sentinel_open_connections") === 1, "in flight")
    held.destroy()
    await until(proxy, (t) => value(t, "sentinel_active_requests") === 0 && value(t, "sentinel_open_connections") === 0, "drained")
  })

  it("agents: calls, latency, timeouts, failures, fail-open, blocks, agent circuit state", async () => {
    const origin = await startEchoOrigin("origin")
    cleanups.push(() => origin.close())
    const dir = socketDir()
    const socket = path.join(dir, "a.sock")
    await spawnRawAgent(socket, ["--mode", "allow", "--id", "a"])
    const proxy = await start(
      testConfig({
        observability: { logging: { accessLog: { enabled: false }, auditLog: { enabled: false } } },
        upstreams: [{ id: "origin", targets: [{ address: origin.address }] }],
        agents: [{ id: "a", socketPath: socket, timeoutMs: 150, reconnectBaseMs: 20, reconnectMaxMs: 100 }],
        filters: [{ id: "af", type: "agent", agent: "a", failureMode: "open" }],
        routes: [route("ag", "/", "origin", { filters: ["af"] })]
      } as Partial<SentinelConfigInput>)
    )
    await eventually(() => proxy.agentStatus().every((a) => a.client.ready > 0), 10_000, "agent connected")

    expect((await request(proxy.port, { path: "/ok" })).status).toBe(200)
    expect((await request(proxy.port, { path: "/no", headers: { "x-raw-mode": "block" } })).status).toBe(403)
    // answers after the agent's 150 ms timeout: the fail-open filter lets the request through
    expect((await request(proxy.port, { path: "/late", headers: { "x-raw-mode": "late:1000" } })).status).toBe(200)

    const m = await scrape(proxy)
    const ev = { agent: "a", event: "request_headers" }
    expect(value(m, "sentinel_agent_calls_total", { ...ev, result: "allow" })).toBe(1)
    expect(value(m, "sentinel_agent_calls_total", { ...ev, result: "block" })).toBe(1)
    expect(value(m, "sentinel_agent_calls_total", { ...ev, result: "timeout" })).toBe(1)
    expect(value(m, "sentinel_agent_latency_seconds_count", ev)).toBe(3)
    expect(value(m, "sentinel_agent_timeouts_total", ev)).toBe(1)
    expect(value(m, "sentinel_agent_failures_total", { agent: "a", reason: "timeout" })).toBe(1)
    expect(value(m, "sentinel_agent_fail_open_total", { agent: "a" })).toBe(1)
    expect(value(m, "sentinel_blocked_requests_total", { reason: "agent-block" })).toBe(1)
    expect(value(m, "sentinel_circuit_breaker_state", { component: "agent", target: "a" })).toBe(0)
  })

  it("config reloads by result, and a reload drops the gauges of what it removed", async () => {
    const origin = await startEchoOrigin("origin")
    cleanups.push(() => origin.close())
    const blocker = net.createServer()
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()))
    cleanups.push(() => new Promise((r) => blocker.close(r)))
    const busy = (blocker.address() as net.AddressInfo).port
    const cfg = (upstreams: Array<string>, extraListener = false) =>
      testConfig({
        ...(extraListener
          ? { listeners: [{ id: "main", address: "127.0.0.1:0" }, { id: "busy", address: `127.0.0.1:${busy}` }] }
          : {}),
        upstreams: upstreams.map((id) => ({ id, targets: [{ address: origin.address }] })),
        routes: upstreams.map((id) => route(id, `/${id}`, id))
      } as Partial<SentinelConfigInput>)

    const dir = socketDir()
    const file = path.join(dir, "sentinel.kdl")
    fs.writeFileSync(file, encodeKdl(cfg(["a", "b"])))
    const loaded = await Effect.runPromise(loadConfigDetailed(file))
    const proxy = await start(loaded.config)
    const scope = Effect.runSync(Scope.make())
    cleanups.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
    const reloader = await Effect.runPromise(
      Scope.extend(
        makeReloader({
          file,
          initial: loaded,
          metrics: proxy.metrics,
          pollMs: 60_000,
          apply: (next) => proxy.reload(next).pipe(Effect.mapError((e) => ({ message: e._tag }))),
          check: async () => []
        }),
        scope
      )
    )
    expect((await request(proxy.port, { path: "/b/x" })).status).toBe(200)
    let m = await scrape(proxy)
    expect(value(m, "sentinel_config_reload_total", { result: "success" })).toBe(0)
    expect(value(m, "sentinel_config_reload_total", { result: "error" })).toBe(0)
    expect(value(m, "sentinel_upstream_health", { upstream: "b" })).toBe(1)
    expect(value(m, "sentinel_connection_pool_size", { upstream: "b" })).toBeGreaterThan(0)

    // unparsable file, then a listener that cannot bind: both refused and counted as errors
    fs.writeFileSync(file, "listeners {")
    expect((await Effect.runPromise(reloader.reload("manual")))._tag).toBe("Rejected")
    fs.writeFileSync(file, encodeKdl(cfg(["a", "b"], true)))
    expect((await Effect.runPromise(reloader.reload("manual")))._tag).toBe("Rejected")
    // upstream "b" removed: its health, circuit and pool series go
    fs.writeFileSync(file, encodeKdl(cfg(["a"])))
    expect((await Effect.runPromise(reloader.reload("manual")))._tag).toBe("Applied")

    m = await scrape(proxy)
    expect(value(m, "sentinel_config_reload_total", { result: "success" })).toBe(1)
    expect(value(m, "sentinel_config_reload_total", { result: "error" })).toBe(2)
    expect(value(m, "sentinel_upstream_health", { upstream: "b" })).toBeUndefined()
    expect(value(m, "sentinel_circuit_breaker_state", { component: "upstream:b" })).toBeUndefined()
    expect(value(m, "sentinel_connection_pool_size", { upstream: "b" })).toBeUndefined()
    expect(value(m, "sentinel_upstream_health", { upstream: "a" })).toBe(1)
    // counters keep their history
    expect(value(m, "sentinel_upstream_attempts_total", { upstream: "b", route: "b" })).toBe(1)
  })

  it("label sets beyond max-series-per-metric are counted as overflow", async () => {
    const origin = await startEchoOrigin("origin")
    cleanups.push(() => origin.close())
    const proxy = await start(
      testConfig({
        observability: { logging: { accessLog: { enabled: false } }, metrics: { maxSeriesPerMetric: 2 } },
        upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
        routes: ["a", "b", "c"].map((id) => route(id, `/${id}`, "o"))
      } as Partial<SentinelConfigInput>)
    )
    for (const id of ["a", "b", "c"]) expect((await request(proxy.port, { path: `/${id}` })).status).toBe(200)
    const m = await scrape(proxy)
    expect(value(m, "sentinel_requests_total", { route: "other", method: "other", status: "other" })).toBe(1)
    expect(value(m, "sentinel_metric_series_overflow_total", { metric: "sentinel_requests_total" })).toBe(1)
  })
})
