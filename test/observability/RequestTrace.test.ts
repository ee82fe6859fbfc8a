/**
 * Request tracing through the real proxy (in-process, port 0) to a fake OTLP
 * collector: spans per stage with the right parent/child ids, the
 * `traceparent` the origin and the agents receive, and what happens when a
 * request is not sampled.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as http from "node:http"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterEach, describe, expect, it } from "vitest"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import { allow } from "../../src/agents/sdk/Decision.js"
import { serveAgent } from "../../src/agents/sdk/AgentServer.js"
import { parseTraceparent } from "../../src/observability/Tracing.js"
import { setTraceparent } from "../../src/observability/RequestTrace.js"
import { refusingPort } from "../support/faults.js"
import { startOtlpCollector, type ExportedSpan, type OtlpCollector } from "../support/otlpCollector.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"

const SERVER = 2
const CLIENT = 3
const ERROR = 2

const INCOMING_SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
const INCOMING_UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f()
})

const polls = async (cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

interface Env {
  readonly proxy: ProxyHandle
  readonly collector: OtlpCollector
  /** Closes the proxy: its tracer flushes every span to the collector. */
  readonly stop: () => Promise<void>
}

const start = async (
  collector: OtlpCollector,
  tracing: Record<string, unknown> | undefined,
  input: Partial<SentinelConfigInput>
): Promise<Env> => {
  const config = testConfig({
    ...input,
    observability: {
      logging: { accessLog: { enabled: false } },
      ...(tracing !== undefined ? { tracing: { endpoint: collector.url, ...tracing } } : {})
    }
  } as Partial<SentinelConfigInput>)
  const scope = Effect.runSync(Scope.make())
  const proxy = await Effect.runPromise(Scope.extend(startProxy(config), scope))
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
  cleanups.push(stop)
  return { proxy, collector, stop }
}

const collector = async (): Promise<OtlpCollector> => {
  const c = await startOtlpCollector()
  cleanups.push(c.close)
  return c
}

const echo = async (): Promise<EchoOrigin> => {
  const o = await startEchoOrigin("origin")
  cleanups.push(o.close)
  return o
}

const proxied = (address: string | ReadonlyArray<string>, extra: Record<string, unknown> = {}): Partial<SentinelConfigInput> =>
  ({
    upstreams: [{ id: "u", targets: (typeof address === "string" ? [address] : address).map((a) => ({ address: a })) }],
    routes: [{ id: "r", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "u", ...extra }]
  }) as Partial<SentinelConfigInput>

/** The `traceparent` values the origin received with request `i`. */
const originTraceparents = (origin: EchoOrigin, i: number): Array<string> => {
  const raw = origin.requests[i].rawHeaders
  const out: Array<string> = []
  for (let k = 0; k < raw.length; k += 2) if (raw[k].toLowerCase() === "traceparent") out.push(raw[k + 1])
  return out
}

const byName = (spans: ReadonlyArray<ExportedSpan>, name: string) => spans.filter((s) => s.name === name)
const server = (spans: ReadonlyArray<ExportedSpan>) => spans.filter((s) => s.kind === SERVER)

/** Each span id exported once: no span ended (and exported) twice. */
const expectUniqueSpans = (spans: ReadonlyArray<ExportedSpan>) =>
  expect(new Set(spans.map((s) => s.spanId)).size).toBe(spans.length)

describe("request tracing (sampled)", () => {
  it("server span child of the incoming traceparent, upstream span child of it, origin gets the upstream span's id", async () => {
    // Invariant: one trace across caller -> proxy (server) -> attempt (client) -> origin, ids chained.
    const c = await collector()
    const origin = await echo()
    const env = await start(c, { samplingRate: 1, serviceName: "sentinel-test" }, proxied(origin.address))
    const reply = await request(env.proxy.port, { path: "/hello?x=1", headers: { traceparent: INCOMING_SAMPLED } })
    expect(reply.status).toBe(200)
    await env.stop()

    const spans = c.spans()
    expectUniqueSpans(spans)
    const [srv] = server(spans)
    const incoming = parseTraceparent(INCOMING_SAMPLED)!
    expect(srv).toBeDefined()
    expect(srv.serviceName).toBe("sentinel-test")
    expect(srv.traceId).toBe(incoming.traceId)
    expect(srv.parentSpanId).toBe(incoming.spanId)
    expect(srv.name).toBe("GET r")
    expect(srv.attributes).toMatchObject({
      "http.request.method": "GET",
      "url.path": "/hello",
      "http.route": "r",
      "http.response.status_code": 200,
      "server.address": "127.0.0.1",
      "client.address": "127.0.0.1"
    })
    expect(typeof srv.attributes["sentinel.trace_id"]).toBe("string")
    expect(reply.headers["x-request-id"]).toBe(srv.attributes["sentinel.trace_id"])
    expect(srv.status?.code ?? 0).not.toBe(ERROR)

    const ups = byName(spans, "sentinel.upstream")
    expect(ups).toHaveLength(1)
    const up = ups[0]
    expect(up.kind).toBe(CLIENT)
    expect(up.traceId).toBe(incoming.traceId)
    expect(up.parentSpanId).toBe(srv.spanId)
    expect(up.attributes).toMatchObject({
      "sentinel.upstream.id": "u",
      "sentinel.upstream.target": origin.address,
      "sentinel.upstream.attempt": 1,
      "server.address": "127.0.0.1",
      "server.port": origin.port,
      "http.response.status_code": 200
    })

    // the origin gets exactly one traceparent: same trace, parent = the upstream span
    const sent = originTraceparents(origin, 0)
    expect(sent).toHaveLength(1)
    const tp = parseTraceparent(sent[0])!
    expect(tp.traceId).toBe(incoming.traceId)
    expect(tp.spanId).toBe(up.spanId)
    expect(tp.sampled).toBe(true)
  })

  it("without an incoming traceparent: a new root trace, propagated to the origin", async () => {
    const c = await collector()
    const origin = await echo()
    const env = await start(c, { samplingRate: 1 }, proxied(origin.address))
    expect((await request(env.proxy.port, { path: "/" })).status).toBe(200)
    await env.stop()
    const spans = c.spans()
    const [srv] = server(spans)
    expect(srv.parentSpanId ?? "").toBe("")
    const [up] = byName(spans, "sentinel.upstream")
    const tp = parseTraceparent(originTraceparents(origin, 0)[0])!
    expect(tp.traceId).toBe(srv.traceId)
    expect(tp.spanId).toBe(up.spanId)
  })

  it("fail-over: one span per attempt (attempt number, error reason), the origin sees the last one", async () => {
    // Invariant: each attempt is its own child span; a refused connection is recorded as an error.
    const c = await collector()
    const dead = await refusingPort()
    const origin = await echo()
    const env = await start(c, { samplingRate: 1 }, proxied([`127.0.0.1:${dead.port}`, origin.address]))
    // round robin over two targets: within two requests one starts on the dead target
    for (let i = 0; i < 2; i++) expect((await request(env.proxy.port, { path: `/f${i}` })).status).toBe(200)
    await env.stop()
    const spans = c.spans()
    expectUniqueSpans(spans)
    const failedOver = server(spans).find((s) => s.attributes["sentinel.upstream.attempts"] === 2)
    expect(failedOver).toBeDefined()
    const attempts = byName(spans, "sentinel.upstream")
      .filter((s) => s.parentSpanId === failedOver!.spanId)
      .sort((a, b) => Number(a.attributes["sentinel.upstream.attempt"]) - Number(b.attributes["sentinel.upstream.attempt"]))
    expect(attempts.map((s) => s.attributes["sentinel.upstream.attempt"])).toEqual([1, 2])
    expect(attempts[0].attributes["server.port"]).toBe(dead.port)
    expect(attempts[0].status?.code).toBe(ERROR)
    expect(attempts[0].attributes["error.type"]).toMatch(/connect|refused/)
    expect(attempts[1].attributes["http.response.status_code"]).toBe(200)
    const url = failedOver!.attributes["url.path"]
    const i = origin.requests.findIndex((r) => r.url === url)
    expect(parseTraceparent(originTraceparents(origin, i)[0])!.spanId).toBe(attempts[1].spanId)
  })

  it("an upstream failure: server span 502 with error status, the attempt span with the reason", async () => {
    const c = await collector()
    const dead = await refusingPort()
    const env = await start(c, { samplingRate: 1 }, proxied(`127.0.0.1:${dead.port}`))
    expect((await request(env.proxy.port, { path: "/" })).status).toBe(502)
    await env.stop()
    const spans = c.spans()
    const [srv] = server(spans)
    expect(srv.attributes["http.response.status_code"]).toBe(502)
    expect(srv.status?.code).toBe(ERROR)
    const [up] = byName(spans, "sentinel.upstream")
    expect(up.parentSpanId).toBe(srv.spanId)
    expect(up.status?.code).toBe(ERROR)
    expect(typeof up.attributes["error.type"]).toBe("string")
  })

  it("client abort: every span ended exactly once, server span 499 with error status", async () => {
    // Invariant: the client going away mid-exchange still ends (and exports) each span once.
    const c = await collector()
    const origin = await echo()
    const env = await start(c, { samplingRate: 1 }, proxied(origin.address))
    const req = http.request({ host: "127.0.0.1", port: env.proxy.port, path: "/hold", agent: false })
    req.on("error", () => {})
    req.end()
    await origin.arrived("/hold")
    req.destroy()
    await origin.aborted("/hold")
    await env.stop()
    const spans = c.spans()
    expectUniqueSpans(spans)
    const [srv] = server(spans)
    expect(srv.attributes["http.response.status_code"]).toBe(499)
    expect(srv.status?.code).toBe(ERROR)
    const ups = byName(spans, "sentinel.upstream")
    expect(ups).toHaveLength(1)
    expect(ups[0].parentSpanId).toBe(srv.spanId)
    expect(ups[0].status?.code).toBe(ERROR)
    expect(ups[0].attributes["error.type"]).toBe("client_closed")
  })
})

describe("request tracing (not sampled)", () => {
  it("sampling-rate 0, no incoming traceparent: no spans, the origin gets no traceparent", async () => {
    // Decision (documented in RequestTrace.ts): an unsampled request invents no trace context.
    const c = await collector()
    const origin = await echo()
    const env = await start(c, { samplingRate: 0 }, proxied(origin.address))
    for (let i = 0; i < 3; i++) expect((await request(env.proxy.port, { path: `/n${i}` })).status).toBe(200)
    await env.stop()
    expect(c.spans()).toEqual([])
    for (let i = 0; i < 3; i++) expect(originTraceparents(origin, i)).toEqual([])
  })

  it("an incoming unsampled traceparent is propagated unchanged (parent-based, even at sampling-rate 1)", async () => {
    const c = await collector()
    const origin = await echo()
    const env = await start(c, { samplingRate: 1 }, proxied(origin.address))
    expect((await request(env.proxy.port, { path: "/", headers: { traceparent: INCOMING_UNSAMPLED } })).status).toBe(200)
    await env.stop()
    expect(c.spans()).toEqual([])
    expect(originTraceparents(origin, 0)).toEqual([INCOMING_UNSAMPLED])
  })

  it("sampling-rate 0 with an incoming sampled traceparent and parent-based off: propagated unchanged", async () => {
    const c = await collector()
    const origin = await echo()
    const env = await start(c, { samplingRate: 0, parentBased: false }, proxied(origin.address))
    expect((await request(env.proxy.port, { path: "/", headers: { traceparent: INCOMING_SAMPLED } })).status).toBe(200)
    await env.stop()
    expect(c.spans()).toEqual([])
    expect(originTraceparents(origin, 0)).toEqual([INCOMING_SAMPLED])
  })

  it("tracing not configured: the proxy is transparent to traceparent", async () => {
    const c = await collector()
    const origin = await echo()
    const env = await start(c, undefined, proxied(origin.address))
    expect((await request(env.proxy.port, { path: "/", headers: { traceparent: INCOMING_SAMPLED } })).status).toBe(200)
    expect((await request(env.proxy.port, { path: "/2" })).status).toBe(200)
    await env.stop()
    expect(c.bodies).toEqual([])
    expect(originTraceparents(origin, 0)).toEqual([INCOMING_SAMPLED])
    expect(originTraceparents(origin, 1)).toEqual([])
  })
})

describe("request tracing with agents", () => {
  it("a sentinel.agents span; the agent's RequestHeaders traceparent names it; unsampled requests pass the caller's", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-"))
    cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }))
    const socketPath = path.join(dir, "a.sock")
    const seen: Array<string | undefined> = []
    const agentScope = Effect.runSync(Scope.make())
    cleanups.push(() => Effect.runPromise(Scope.close(agentScope, Exit.void)))
    await Effect.runPromise(
      serveAgent({
        socketPath,
        info: { agentId: "a", name: "trace test agent", version: "1" },
        handlers: {
          onRequestHeaders: (event) =>
            Effect.sync(() => {
              seen.push((event.metadata as { traceparent?: string }).traceparent)
              return allow()
            })
        }
      }).pipe(Scope.extend(agentScope))
    )
    const c = await collector()
    const origin = await echo()
    const env = await start(c, { samplingRate: 1 }, {
      ...proxied(origin.address, { filters: ["fa"] }),
      agents: [{ id: "a", socketPath, failureMode: "closed" }],
      filters: [{ id: "fa", type: "agent", agent: "a" }]
    } as Partial<SentinelConfigInput>)
    await polls(() => env.proxy.agentStatus().every((a) => a.client.ready > 0), "agent connected", 10_000)

    expect((await request(env.proxy.port, { path: "/a", headers: { traceparent: INCOMING_SAMPLED } })).status).toBe(200)
    expect((await request(env.proxy.port, { path: "/b", headers: { traceparent: INCOMING_UNSAMPLED } })).status).toBe(200)
    await env.stop()

    const spans = c.spans()
    expectUniqueSpans(spans)
    const [srv] = server(spans)
    const [agents] = byName(spans, "sentinel.agents")
    const [up] = byName(spans, "sentinel.upstream")
    expect(agents.parentSpanId).toBe(srv.spanId)
    expect(agents.attributes).toMatchObject({ "sentinel.agents": ["a"], "sentinel.agents.decision": "continue" })
    expect(up.parentSpanId).toBe(srv.spanId)
    expect(seen).toHaveLength(2)
    const tp = parseTraceparent(seen[0])!
    expect(tp.traceId).toBe(parseTraceparent(INCOMING_SAMPLED)!.traceId)
    expect(tp.spanId).toBe(agents.spanId)
    expect(seen[1]).toBe(INCOMING_UNSAMPLED)
    expect(parseTraceparent(originTraceparents(origin, 0)[0])!.spanId).toBe(up.spanId)
    expect(originTraceparents(origin, 1)).toEqual([INCOMING_UNSAMPLED])
  })
})

describe("setTraceparent", () => {
  it("replaces the caller's value (any case, duplicates dropped) or appends one", () => {
    const h = ["host", "x", "TraceParent", "a", "accept", "*/*", "traceparent", "b"]
    setTraceparent(h, "new")
    expect(h).toEqual(["host", "x", "TraceParent", "new", "accept", "*/*"])
    const e = ["host", "x"]
    setTraceparent(e, "new")
    expect(e).toEqual(["host", "x", "traceparent", "new"])
  })
})
