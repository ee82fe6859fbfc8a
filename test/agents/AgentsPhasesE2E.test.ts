/**
 * Agents through the real proxy beyond the request head: request body
 * (buffered up to the cap; above it 413 fail-closed, skipped fail-open),
 * response headers, response body, request_complete; the reference agents
 * (echo, waf, auth) as built processes; reload of the agents block.
 * Needs `npm run build` (dist/agents-bin) for the reference agents.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { CancelReason } from "../../src/agents/Protocol.js"
import * as Effect from "effect/Effect"
import { afterEach, describe, expect, it } from "vitest"
import { makeConfig, type SentinelConfigInput } from "../../src/config/Schema.js"
import { patternBytes, sha256 } from "../support/origins.js"
import { request } from "../support/proxy.js"
import { closeAllEnvs, leaveWhileAgentDecides, metricReaches, metricValue, startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { eventually, socketDir, spawnRawAgent, stopAllAgents } from "./rawAgentHarness.js"

const children: Array<ChildProcess> = []

afterEach(async () => {
  await closeAllEnvs()
  await stopAllAgents()
  await Promise.all(
    children.splice(0).map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve()
          c.once("exit", () => resolve())
          c.kill("SIGKILL")
        })
    )
  )
})

const root = path.resolve(__dirname, "../..")

/** Starts dist/agents-bin/<name>/main.js and waits for its socket. */
const spawnReference = async (name: string, socket: string, args: ReadonlyArray<string> = []) => {
  const main = path.join(root, "dist/agents-bin", name, "main.js")
  if (!fs.existsSync(main)) throw new Error(`${main} missing: run 'npm run build' first`)
  const child = spawn(process.execPath, [main, "--socket", socket, ...args], { stdio: ["ignore", "ignore", "inherit"] })
  children.push(child)
  await eventually(() => fs.existsSync(socket), 20_000, `${name} socket`)
  return child
}

const oneAgent = async (
  agent: Record<string, unknown>,
  filter: Record<string, unknown> = {},
  dir = socketDir()
) => {
  const env = await startAgentEnv(
    () => ({
      agents: [{ id: "a", socketPath: path.join(dir, "a.sock"), ...agent }],
      filters: [{ id: "fa", type: "agent", agent: "a", ...filter }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }),
    dir
  )
  await env.agentsReady()
  return env
}

describe("body and response phases", () => {
  it("request_body: the buffered body goes to the agent; its mutation is what the origin receives", async () => {
    const dir = socketDir()
    const agent = await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "replace-body"])
    const env = await oneAgent({ events: ["request_body"] }, { failureMode: "closed" }, dir)
    const body = patternBytes(100_000)
    const reply = await request(env.proxy.port, { method: "POST", path: "/upload", body })
    expect(reply.status).toBe(200)
    const replaced = Buffer.from("replaced by rawAgent")
    expect(JSON.parse(reply.body.toString())).toEqual({ bytes: replaced.length, sha256: sha256(replaced) })
    const frame = await agent.waitFor((l) => l.event === "frame" && l.type === 0x11)
    expect(Buffer.from(frame.payload.data, "base64").equals(body)).toBe(true)
    expect(frame.payload.is_last).toBe(true)
  })

  it("request_body over the cap: 413 when fail-closed (never forwarded), skipped and counted when fail-open", async () => {
    const dir = socketDir()
    await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "replace-body"])
    const env = await startAgentEnv(
      () => ({
        agents: [{ id: "a", socketPath: path.join(dir, "a.sock"), events: ["request_body"], maxRequestBodyBytes: 1000 }],
        filters: [
          { id: "closed", type: "agent", agent: "a", failureMode: "closed" },
          { id: "open", type: "agent", agent: "a", failureMode: "open" }
        ],
        routes: [upstreamRoute("closed", "/closed", { filters: ["closed"] }), upstreamRoute("open", "/open", { filters: ["open"] })]
      }),
      dir
    )
    await env.agentsReady()
    const body = patternBytes(300_000)
    const closed = await request(env.proxy.port, { method: "POST", path: "/closed/upload", body })
    expect(closed.status).toBe(413)
    async function* chunks() {
      for (let i = 0; i < body.length; i += 32_000) yield body.subarray(i, i + 32_000)
    }
    const open = await request(env.proxy.port, { method: "POST", path: "/open/upload", body: chunks() })
    expect(open.status).toBe(200)
    expect(JSON.parse(open.body.toString())).toEqual({ bytes: body.length, sha256: sha256(body) })
    expect(env.origin.requests.map((r) => r.url)).toEqual(["/open/upload"])
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_calls_total", { agent: "a", event: "request_body", result: "body-too-large" })).toBe(2)
    expect(metricValue(m, "sentinel_agent_fail_open_total", { agent: "a" })).toBe(1)
    await env.auditLine((l) => l.route_id === "closed" && l.status === 413 && l.result === "body-too-large")
  })

  it("a body past the agent's cap streams on within the route's limit; past that limit 413, and the connection closes (its rest is unread)", async () => {
    const dir = socketDir()
    await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "replace-body"])
    const env = await startAgentEnv(
      () => ({
        agents: [{ id: "a", socketPath: path.join(dir, "a.sock"), events: ["request_body"], maxRequestBodyBytes: 1000 }],
        filters: [{ id: "open", type: "agent", agent: "a", failureMode: "open" }],
        routes: [upstreamRoute("open", "/open", { filters: ["open"], policies: { maxBodySize: 5000 } })]
      }),
      dir
    )
    await env.agentsReady()
    const s = net.connect(env.proxy.port, "127.0.0.1")
    s.on("error", () => undefined)
    let out = ""
    const closed = new Promise<void>((resolve) => {
      s.on("data", (c: Buffer) => (out += c.toString("latin1")))
      s.on("close", () => resolve())
    })
    // 3 x 2000 bytes: the agent's 1000 are passed (fail-open), then the stream goes over 5000
    const chunk = "7d0\r\n" + "x".repeat(2000) + "\r\n"
    s.write(`POST /open/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}`)
    await eventually(() => env.origin.requests.length === 1, 5000, "the upload at the origin")
    s.write(chunk + chunk)
    await closed
    expect(out.startsWith("HTTP/1.1 413")).toBe(true)
    expect(out).toContain("body_too_large")
    s.destroy()
  })

  it("response_headers: mutations reach the client; a block replaces the upstream's answer", async () => {
    const dir = socketDir()
    await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "add-header", "--header", "x-resp=1", "--id", "a"])
    await spawnRawAgent(path.join(dir, "b.sock"), ["--mode", "block", "--status", "502", "--id", "b"])
    const env = await startAgentEnv(
      () => ({
        agents: [
          { id: "a", socketPath: path.join(dir, "a.sock"), events: ["response_headers"] },
          { id: "b", socketPath: path.join(dir, "b.sock"), events: ["response_headers"] }
        ],
        filters: [
          { id: "a", type: "agent", agent: "a", failureMode: "closed" },
          { id: "b", type: "agent", agent: "b", failureMode: "closed" }
        ],
        routes: [upstreamRoute("a", "/a", { filters: ["a"] }), upstreamRoute("b", "/b", { filters: ["b"] })]
      }),
      dir
    )
    await env.agentsReady()
    const a = await env.get("/a/x")
    expect(a.status).toBe(200)
    expect(a.headers["x-resp-response"]).toBe("1")
    expect(JSON.parse(a.body.toString()).url).toBe("/a/x")
    const b = await env.get("/b/big?n=2000000")
    expect(b.status).toBe(502)
    expect(b.body.toString()).toBe("blocked by rawAgent")
    expect(b.headers["x-blocked-by"]).toBe("b")
    expect(b.headers["x-origin"]).toBeUndefined()
    await env.auditLine((l) => l.agent === "b" && l.phase === "response_headers" && l.decision === "block")
  })

  it("a client that leaves while a response_headers agent holds the response: the agent gets Cancel, 499 counted", async () => {
    const dir = socketDir()
    const agent = await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "late:10000", "--id", "a"])
    const env = await oneAgent({ events: ["response_headers"] }, { failureMode: "closed" }, dir)
    // the origin answered; the head waits for the agent's ResponseHeaders decision
    const { frame, cancel } = await leaveWhileAgentDecides(env, agent, "/held", 0x12)
    expect(cancel.correlation_id).toBe(frame.correlation_id)
    expect(cancel.reason).toBe(CancelReason.ClientDisconnect)
    expect(await metricReaches(env, "sentinel_requests_total", { route: "r", method: "GET", status: "499" }, 1)).toBe(1)
  })

  it("response_body: the agent sees the buffered body and its mutation is what the client receives", async () => {
    const dir = socketDir()
    const agent = await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "replace-body"])
    const env = await oneAgent({ events: ["response_headers", "response_body"] }, { failureMode: "closed" }, dir)
    const reply = await env.get("/big?n=50000")
    expect(reply.status).toBe(200)
    expect(reply.body.toString()).toBe("replaced by rawAgent")
    expect(reply.headers["content-length"]).toBe(String("replaced by rawAgent".length))
    const frame = await agent.waitFor((l) => l.event === "frame" && l.type === 0x13)
    expect(Buffer.from(frame.payload.data, "base64").equals(patternBytes(50_000))).toBe(true)
    // the response-header event came first
    expect(agent.lines.findIndex((l) => l.event === "frame" && l.type === 0x12)).toBeLessThan(
      agent.lines.findIndex((l) => l.event === "frame" && l.type === 0x13)
    )
  })

  it("response_body over the cap, fail-open: the response streams through unchanged", async () => {
    const dir = socketDir()
    await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "replace-body"])
    const env = await oneAgent({ events: ["response_body"], maxResponseBodyBytes: 10_000 }, { failureMode: "open" }, dir)
    const reply = await env.get("/big?n=1000000")
    expect(reply.status).toBe(200)
    expect(sha256(reply.body)).toBe(sha256(patternBytes(1_000_000)))
  })

  it("request_complete (log): sent after the response with its status; the decision is ignored", async () => {
    const dir = socketDir()
    const agent = await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "block"])
    const env = await oneAgent({ events: ["request_complete"] }, { failureMode: "closed" }, dir)
    const reply = await env.get("/done")
    expect(reply.status).toBe(200)
    const frame = await agent.waitFor((l) => l.event === "frame" && l.type === 0x14)
    expect(frame.payload).toMatchObject({ correlation_id: reply.headers["x-request-id"], status: 200, upstream_attempts: 1 })
  })
})

describe("reference agents end to end", () => {
  it("echo: X-Agent-Processed reaches the origin", async () => {
    const dir = socketDir()
    await spawnReference("echo", path.join(dir, "a.sock"))
    const env = await oneAgent({}, { failureMode: "closed" }, dir)
    const reply = await env.get("/echo")
    expect(reply.status).toBe(200)
    expect(JSON.parse(reply.body.toString()).headers["x-agent-processed"]).toBe("true")
  })

  it("waf: a SQL injection in the query is blocked 403 with an audit line; a clean query passes", async () => {
    const dir = socketDir()
    await spawnReference("waf", path.join(dir, "a.sock"))
    const env = await oneAgent({ type: "waf" }, { failureMode: "closed" }, dir)
    const attack = await env.get(`/search?q=${encodeURIComponent("1 UNION SELECT password FROM users")}`)
    expect(attack.status).toBe(403)
    const line = await env.auditLine((l) => l.agent === "a")
    expect(line.trace_id).toBe(attack.headers["x-request-id"])
    expect(line.decision).toBe("block")
    expect(line.rule_ids).toContain("942100")
    expect(line.tags).toContain("waf")
    const clean = await env.get("/search?q=shoes")
    expect(clean.status).toBe(200)
    expect(env.origin.requests.map((r) => r.url)).toEqual(["/search?q=shoes"])
  })

  it("auth: no token is rejected 401 with WWW-Authenticate; never forwarded", async () => {
    const dir = socketDir()
    await spawnReference("auth", path.join(dir, "a.sock"), ["--secret", "e2e-secret-0123456789abcdef0123456789"])
    const env = await oneAgent({ type: "auth" }, { failureMode: "closed" }, dir)
    const reply = await env.get("/private")
    expect(reply.status).toBe(401)
    expect(reply.headers["www-authenticate"]).toMatch(/^Bearer realm="sentinel"/)
    expect(env.origin.requests).toEqual([])
  })
})

describe("reload", () => {
  it("a changed agents block gets a new manager; an unchanged one keeps its connections", async () => {
    const dir = socketDir()
    const first = await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "allow"])
    const blocker = await spawnRawAgent(path.join(dir, "b.sock"), ["--mode", "block", "--status", "418"])
    const input = (socket: string): Partial<SentinelConfigInput> => ({
      agents: [{ id: "a", socketPath: path.join(dir, socket) }],
      filters: [{ id: "fa", type: "agent", agent: "a", failureMode: "closed" }]
    })
    const env = await oneAgent({}, { failureMode: "closed" }, dir)
    expect((await env.get("/x")).status).toBe(200)
    const base = {
      listeners: [{ id: "main", address: "127.0.0.1:0" }],
      upstreams: [{ id: "origin", targets: [{ address: env.origin.address }] }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })],
      observability: { logging: { accessLog: { enabled: false }, auditLog: { file: env.auditFile } } }
    }
    const next = (socket: string) => makeConfig({ ...input(socket), ...base } as SentinelConfigInput)
    const connections = () => first.lines.filter((l) => l.event === "connection").length
    const before = connections()
    await Effect.runPromise(env.proxy.reload(next("a.sock")))
    expect((await env.get("/x2")).status).toBe(200)
    expect(connections()).toBe(before)
    await Effect.runPromise(env.proxy.reload(next("b.sock")))
    await env.agentsReady()
    expect((await env.get("/y")).status).toBe(418)
    await blocker.waitFor((l) => l.event === "frame")
  })
})
