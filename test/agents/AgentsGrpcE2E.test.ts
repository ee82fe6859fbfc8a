/**
 * gRPC agents through the real proxy: an agent written directly against the
 * .proto with @grpc/grpc-js (test/support/grpcRawAgent.mjs, not the SDK) and
 * the reference agents built with the SDK serving `--grpc`, both as real
 * processes on loopback. Allow, block, redirect, header mutations, audit
 * tags, the package fallback, the agent's `config`, timeouts, the filter's
 * overrides.
 */
import { afterEach, describe, expect, it } from "vitest"
import * as Effect from "effect/Effect"
import { makeConfig, type SentinelConfigInput } from "../../src/config/Schema.js"
import { closeAllEnvs, metricValue, upstreamRoute } from "./agentProxyHarness.js"
import { type GrpcAgentFilter as Filter, type GrpcAgentProcess, spawnGrpcRawAgent, spawnSdkGrpcAgent, stopAllGrpcAgents, withGrpcAgent } from "./grpcAgentHarness.js"

afterEach(async () => {
  await closeAllEnvs()
  await stopAllGrpcAgents()
})

describe("a gRPC agent written against the .proto (not the SDK)", () => {
  it("allow with header mutations: request ops reach the origin, response ops the client; the event carries the request", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "add-header"])
    const env = await withGrpcAgent(agent)
    const reply = await env.get("/hello?q=1", { "x-remove-me": "1", "x-kept": "k" })
    expect(reply.status).toBe(200)
    const seen = JSON.parse(reply.body.toString())
    expect(seen.headers["x-grpc-agent"]).toBe("seen")
    expect(seen.headers["x-grpc-added"]).toBe("1")
    expect(seen.headers["x-remove-me"]).toBeUndefined()
    expect(seen.headers["x-kept"]).toBe("k")
    expect(reply.headers["x-grpc-agent-response"]).toBe("seen")
    const ev = await agent.waitFor((l) => l.event === "event" && l.kind === "request_headers")
    expect(ev.method).toBe("GET")
    expect(ev.uri).toBe("/hello?q=1")
    expect(ev.correlation_id).toBe(reply.headers["x-request-id"])
    expect(ev.metadata).toMatchObject({ client_ip: "127.0.0.1", route_id: "r", upstream_id: "origin", protocol: "HTTP/1.1" })
    expect(ev.headers).toContainEqual({ name: "x-kept", value: "k" })
    const hs = await agent.waitFor((l) => l.event === "handshake")
    expect(hs.versions).toEqual([2])
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_calls_total", { agent: "g", event: "request_headers", result: "allow" })).toBe(1)
  })

  it("block: the agent's status, body and headers; nothing upstream; audited with its tags and rule ids", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "block", "--status", "451", "--id", "g"])
    const env = await withGrpcAgent(agent)
    const reply = await env.get("/search?q=x")
    expect(reply.status).toBe(451)
    expect(reply.body.toString()).toBe("blocked by grpcRawAgent")
    expect(reply.headers["x-blocked-by"]).toBe("g")
    expect(env.origin.requests).toEqual([])
    const line = await env.auditLine((l) => l.agent === "g")
    expect(line).toMatchObject({
      trace_id: reply.headers["x-request-id"],
      decision: "block",
      status: 451,
      rule_ids: ["942100"],
      tags: ["grpc-raw", "blocked"],
      reason_codes: ["SQLI"],
      route_id: "r"
    })
    expect(line.confidence).toBeCloseTo(0.5)
  })

  it("redirect: its status and Location; challenge: 403 with the challenge described", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "redirect"])
    const env = await withGrpcAgent(agent)
    const r = await env.get("/go")
    expect(r.status).toBe(302)
    expect(r.headers.location).toBe("https://example.test/login")
    const c = await env.get("/c", { "x-raw-mode": "challenge" })
    expect(c.status).toBe(403)
    expect(String(c.headers["x-sentinel-challenge"])).toContain("captcha")
    expect(env.origin.requests).toEqual([])
  })

  it("an invalid header mutation is a failure (503 closed), never an allow", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    const env = await withGrpcAgent(agent)
    const r = await env.get("/bad", { "x-raw-mode": "garbage-header" })
    expect(r.status).toBe(503)
    expect(env.origin.requests).toEqual([])
    expect((await env.get("/fine")).status).toBe(200)
  })

  it("an agent serving the original sentinel.agent.v2 package is found (UNIMPLEMENTED on zentinel, then sentinel)", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "add-header", "--package", "sentinel"])
    const env = await withGrpcAgent(agent)
    const reply = await env.get("/old")
    expect(reply.status).toBe(200)
    expect(JSON.parse(reply.body.toString()).headers["x-grpc-agent"]).toBe("seen")
  })

  it("timeout-ms is each decision's deadline: 504 closed, Cancel(timeout) sent, the next call answered", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    const env = await withGrpcAgent(agent, { timeoutMs: 300 })
    const started = Date.now()
    const late = await env.get("/late", { "x-raw-mode": "late:1500" })
    expect(late.status).toBe(504)
    expect(Date.now() - started).toBeLessThan(1400)
    const cancel = await agent.waitFor((l) => l.event === "cancel")
    expect(cancel.reason).toBe(2)
    expect((await env.get("/next")).status).toBe(200)
    expect(env.origin.requests.map((r) => r.url)).toEqual(["/next"])
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_timeouts_total", { agent: "g", event: "request_headers" })).toBe(1)
  })

  it("the filter's timeout-ms overrides the agent's, and its failure-mode the agent's", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    const env = await withGrpcAgent(agent, { timeoutMs: 5000 }, { timeoutMs: 200, failureMode: "open" })
    const started = Date.now()
    const r = await env.get("/slow", { "x-raw-mode": "late:2000" })
    expect(r.status).toBe(200)
    expect(Date.now() - started).toBeLessThan(1500)
    await env.auditLine((l) => l.decision === "fail-open" && l.result === "timeout")
  })

  it("the agent's config {} arrives in the handshake and as the initial ConfigureEvent", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    await withGrpcAgent(agent, { config: { threshold: 5, mode: "block" } })
    const hs = await agent.waitFor((l) => l.event === "handshake")
    expect(JSON.parse(hs.config_json)).toEqual({ threshold: 5, mode: "block" })
    const conf = await agent.waitFor((l) => l.event === "configure")
    expect(conf.is_initial).toBe(true)
    expect(JSON.parse(conf.config_json)).toEqual({ threshold: 5, mode: "block" })
  })
})

describe("the agent filter's body overrides", () => {
  const postBody = async (port: number, p: string, size: number) => {
    const { request } = await import("../support/proxy.js")
    return request(port, { method: "POST", path: p, body: Buffer.alloc(size, 0x61) })
  }
  const bodyEvents = (a: GrpcAgentProcess) => a.lines.filter((l) => l.event === "event" && l.kind === "request_body_chunk")

  it("inspect-body #false: no body to an agent subscribed to request_body; #true: the body to one that is not", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    const off = await withGrpcAgent(agent, { events: ["request_headers", "request_body"] }, { inspectBody: false } as Partial<Filter>)
    expect((await postBody(off.proxy.port, "/off/upload", 100)).status).toBe(200)
    expect(bodyEvents(agent)).toEqual([])
    await closeAllEnvs()
    const on = await withGrpcAgent(agent, { events: ["request_headers"] }, { inspectBody: true } as Partial<Filter>)
    expect((await postBody(on.proxy.port, "/on/upload", 100)).status).toBe(200)
    await agent.waitFor((l) => l.event === "event" && l.kind === "request_body_chunk" && l.size === 100)
  })

  it("max-body-bytes: the filter's cap, not the agent's (413 closed above it; the agent sees nothing)", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    const env = await withGrpcAgent(agent, { events: ["request_headers", "request_body"], maxRequestBodyBytes: 1_000_000 }, { maxBodyBytes: 1000 } as Partial<Filter>)
    expect((await postBody(env.proxy.port, "/small/upload", 1000)).status).toBe(200)
    expect((await postBody(env.proxy.port, "/large/upload", 1001)).status).toBe(413)
    expect(bodyEvents(agent).map((l) => l.size)).toEqual([1000])
    expect(env.origin.requests.map((r) => r.url)).toEqual(["/small/upload"])
  })
})

describe("reload", () => {
  it("a changed config {} is pushed again: new streams, handshake and ConfigureEvent carry the new config", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    const env = await withGrpcAgent(agent, { config: { level: 1 } })
    await agent.waitFor((l) => l.event === "configure")
    const next = makeConfig({
      listeners: [{ id: "main", address: "127.0.0.1:0" }],
      upstreams: [{ id: "origin", targets: [{ address: env.origin.address }] }],
      agents: [{ id: "g", grpc: { address: agent.address }, failureMode: "closed", config: { level: 2 } }],
      filters: [{ id: "fg", type: "agent", agent: "g" }],
      routes: [upstreamRoute("r", "/", { filters: ["fg"] })],
      observability: { logging: { accessLog: { enabled: false }, auditLog: { file: env.auditFile } } }
    } as SentinelConfigInput)
    await Effect.runPromise(env.proxy.reload(next))
    const conf = await agent.waitFor((l) => l.event === "configure" && JSON.parse(l.config_json).level === 2)
    expect(conf.is_initial).toBe(true)
    await agent.waitFor((l) => l.event === "handshake" && JSON.parse(l.config_json).level === 2)
    await env.agentsReady()
    expect((await env.get("/after-reload")).status).toBe(200)
  })
})

describe("reference agents (SDK) over gRPC", () => {
  it("echo: allows and adds X-Agent-Processed; audit tag echo is passed on", async () => {
    const agent = await spawnSdkGrpcAgent("echo")
    const env = await withGrpcAgent(agent)
    const reply = await env.get("/echo")
    expect(reply.status).toBe(200)
    expect(JSON.parse(reply.body.toString()).headers["x-agent-processed"]).toBe("true")
  })

  it("waf: blocks an SQL injection in the query (403) and lets a clean request through", async () => {
    const agent = await spawnSdkGrpcAgent("waf")
    const env = await withGrpcAgent(agent, { events: ["request_headers", "request_body"] })
    const bad = await env.get("/search?q=1%27%20OR%20%271%27%3D%271")
    expect(bad.status).toBe(403)
    const line = await env.auditLine((l) => l.agent === "g" && l.decision === "block")
    expect(line.tags.length).toBeGreaterThan(0)
    expect(line.rule_ids.length).toBeGreaterThan(0)
    const ok = await env.get("/search?q=shoes")
    expect(ok.status).toBe(200)
    expect(env.origin.requests.map((r) => r.url)).toEqual(["/search?q=shoes"])
  })
})
