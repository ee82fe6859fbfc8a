/**
 * Agents through the real proxy, request-header phase: decisions, header
 * mutations, failure modes (filter > route > agent) and their audit lines
 * and metrics. Real agent processes (test/support/rawAgent.mjs) on real
 * Unix sockets; the origin records what reached it.
 */
import * as path from "node:path"
import { CancelReason } from "../../src/agents/Protocol.js"
import { afterEach, describe, expect, it } from "vitest"
import { closeAllEnvs, leaveWhileAgentDecides, metricReaches, metricValue, startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { socketDir, spawnRawAgent, stopAllAgents } from "./rawAgentHarness.js"

afterEach(async () => {
  await closeAllEnvs()
  await stopAllAgents()
})

const agentFilter = (id: string, agent: string, failureMode?: "open" | "closed") => ({
  id,
  type: "agent" as const,
  agent,
  ...(failureMode ? { failureMode } : {})
})

/** One agent "a" (raw agent with `args`) on every path; fail-closed so that a missing agent cannot pass for an allow. */
const withAgent = async (args: ReadonlyArray<string>) => (await withAgentProcess(args)).env

/** `withAgent`, with the agent process (its log lines) as well. */
const withAgentProcess = async (args: ReadonlyArray<string>) => {
  const dir = socketDir()
  const agent = await spawnRawAgent(path.join(dir, "a.sock"), args)
  const env = await startAgentEnv(
    (dir) => ({
      agents: [{ id: "a", socketPath: path.join(dir, "a.sock"), failureMode: "closed" }],
      filters: [agentFilter("fa", "a")],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }),
    dir
  )
  await env.agentsReady()
  return { env, agent }
}

describe("agent decisions through the proxy", () => {
  it("a client that leaves while the agent decides: the agent gets Cancel(client disconnect), nothing goes upstream, 499 counted", async () => {
    const { env, agent } = await withAgentProcess(["--mode", "late:10000"])
    const { frame, cancel } = await leaveWhileAgentDecides(env, agent, "/leaving", 0x10)
    expect(cancel.correlation_id).toBe(frame.correlation_id)
    expect(cancel.reason).toBe(CancelReason.ClientDisconnect)
    expect(await metricReaches(env, "sentinel_requests_total", { route: "r", method: "GET", status: "499" }, 1)).toBe(1)
    expect(env.origin.requests.map((r) => r.url)).not.toContain("/leaving")
  })

  it("allow with header mutations: request ops reach the origin, response ops reach the client", async () => {
    const env = await withAgent(["--mode", "add-header", "--header", "x-raw-agent=seen"])
    const reply = await env.get("/hello", { "x-remove-me": "1" })
    expect(reply.status).toBe(200)
    const seen = JSON.parse(reply.body.toString())
    expect(seen.headers["x-raw-agent"]).toBe("seen")
    expect(seen.headers["x-remove-me"]).toBeUndefined()
    expect(reply.headers["x-raw-agent-response"]).toBe("seen")
    // an allow is counted, not audited
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_calls_total", { agent: "a", event: "request_headers", result: "allow" })).toBe(1)
    expect(env.audit()).toEqual([])
  })

  it("agents see the request headers as the filters before them left them (filter order)", async () => {
    const dir = socketDir()
    const agent = await spawnRawAgent(path.join(dir, "a.sock"), ["--mode", "allow"])
    const env = await startAgentEnv(
      (dir) => ({
        agents: [{ id: "a", socketPath: path.join(dir, "a.sock"), failureMode: "closed" }],
        filters: [
          { id: "hq", type: "headers", set: [["X-Added", "by-filter"]], remove: ["X-Secret"] },
          agentFilter("fa", "a"),
          { id: "after", type: "headers", set: [["X-After", "later"]] }
        ],
        routes: [upstreamRoute("r", "/", { filters: ["hq", "fa", "after"] })]
      }),
      dir
    )
    await env.agentsReady()
    const reply = await env.get("/order", { "x-secret": "s3cret", "x-kept": "1" })
    expect(reply.status).toBe(200)
    const frame = await agent.waitFor((l) => l.event === "frame" && l.type === 16)
    const headers = (frame as unknown as { payload: { headers: Record<string, Array<string>> } }).payload.headers
    expect(headers["x-added"]).toEqual(["by-filter"])
    expect(headers["x-secret"]).toBeUndefined()
    expect(headers["x-kept"]).toEqual(["1"])
    // a filter placed after the agent has not run yet
    expect(headers["x-after"]).toBeUndefined()
    const seen = JSON.parse(reply.body.toString())
    expect(seen.headers["x-after"]).toBe("later")
  })

  it("block: the agent's status, body and headers; the origin sees nothing; audited and counted", async () => {
    const env = await withAgent(["--mode", "block", "--status", "403", "--id", "a"])
    const reply = await env.get("/search?q=x")
    expect(reply.status).toBe(403)
    expect(reply.body.toString()).toBe("blocked by rawAgent")
    expect(reply.headers["x-blocked-by"]).toBe("a")
    expect(reply.headers["content-type"]).toMatch(/^text\/plain/)
    expect(env.origin.requests).toEqual([])
    const line = await env.auditLine((l) => l.agent === "a")
    expect(line).toMatchObject({
      trace_id: reply.headers["x-request-id"],
      agent: "a",
      source: "agent:a",
      decision: "block",
      status: 403,
      rule_ids: ["942100"],
      tags: ["raw"],
      reason_codes: ["SQLI"],
      route_id: "r",
      path: "/search",
      client_ip: "127.0.0.1"
    })
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_calls_total", { agent: "a", result: "block" })).toBe(1)
    expect(metricValue(m, "sentinel_blocked_requests_total", { reason: "agent-block" })).toBe(1)
  })

  it("redirect answers its status with Location; challenge answers 403 describing the challenge", async () => {
    const env = await withAgent([])
    const redirect = await env.get("/x", { "x-raw-mode": "redirect" })
    expect(redirect.status).toBe(302)
    expect(redirect.headers.location).toBe("https://login.example/")
    const challenge = await env.get("/x", { "x-raw-mode": "challenge" })
    expect(challenge.status).toBe(403)
    expect(challenge.headers["x-sentinel-challenge"]).toBe("captcha")
    expect(JSON.parse(challenge.body.toString())).toEqual({ challenge: { type: "captcha", params: { site: "k" } } })
    expect(env.origin.requests).toEqual([])
    await env.auditLine((l) => l.decision === "redirect" && l.status === 302)
    await env.auditLine((l) => l.decision === "challenge" && l.status === 403)
  })

  it("request headers: agents run in parallel; the first non-allow in filter order wins; mutations apply in filter order", async () => {
    const dir = socketDir()
    const slow = await spawnRawAgent(path.join(dir, "slow.sock"), ["--mode", "block", "--delay", "600", "--status", "451", "--header", "x-order=slow", "--id", "slow"])
    const fast = await spawnRawAgent(path.join(dir, "fast.sock"), ["--mode", "block", "--status", "403", "--header", "x-order=fast", "--id", "fast"])
    const env = await startAgentEnv(
      (dir) => ({
        agents: [
          { id: "slow", socketPath: path.join(dir, "slow.sock"), timeoutMs: 5000 },
          { id: "fast", socketPath: path.join(dir, "fast.sock"), timeoutMs: 5000 }
        ],
        filters: [agentFilter("f-slow", "slow"), agentFilter("f-fast", "fast")],
        routes: [upstreamRoute("r", "/", { filters: ["f-slow", "f-fast"] })]
      }),
      dir
    )
    await env.agentsReady()

    // both block; the fast one answers first, but the slow one is first in filter order
    const pending = env.get("/p")
    // parallel: the second agent has the event while the first one (600 ms) has not answered yet
    const fastFrame = await fast.waitFor((l) => l.event === "frame")
    expect(slow.lines.some((l) => l.event === "answer")).toBe(false)
    await fast.waitFor((l) => l.event === "answer" && l.correlation_id === fastFrame.correlation_id)
    await slow.waitFor((l) => l.event === "frame" && l.correlation_id === fastFrame.correlation_id)
    const reply = await pending
    expect(reply.status).toBe(451)

    // both allow with a `set`: applied in filter order, so the later filter's value stays
    const allowed = await env.get("/q", { "x-raw-mode": "add-header" })
    expect(allowed.status).toBe(200)
    expect(JSON.parse(allowed.body.toString()).headers["x-order"]).toBe("fast")
    expect(env.origin.requests.map((r) => r.url)).toEqual(["/q"])
  })
})

describe("failure modes: filter, else route policies, else agent", () => {
  const setup = () =>
    startAgentEnv((dir) => ({
      agents: [
        // nothing listens on these sockets
        { id: "agent-closed", socketPath: path.join(dir, "none-1.sock"), failureMode: "closed", reconnectMaxMs: 200 },
        { id: "agent-open", socketPath: path.join(dir, "none-2.sock"), reconnectMaxMs: 200 }
      ],
      filters: [
        agentFilter("filter-closed", "agent-open", "closed"),
        agentFilter("filter-open", "agent-closed", "open"),
        agentFilter("plain-closed", "agent-closed"),
        agentFilter("plain-open", "agent-open")
      ],
      routes: [
        upstreamRoute("by-filter-closed", "/fc", { filters: ["filter-closed"], policies: { failureMode: "open" } }),
        upstreamRoute("by-filter-open", "/fo", { filters: ["filter-open"], policies: { failureMode: "closed" } }),
        upstreamRoute("by-route-open", "/ro", { filters: ["plain-closed"], policies: { failureMode: "open" } }),
        upstreamRoute("by-route-closed", "/rc", { filters: ["plain-open"], policies: { failureMode: "closed" } }),
        upstreamRoute("by-agent-closed", "/ac", { filters: ["plain-closed"] }),
        upstreamRoute("by-agent-open", "/ao", { filters: ["plain-open"] })
      ]
    }))

  it("closed answers 503 and never forwards; open forwards, audits and counts", async () => {
    const env = await setup()
    const expectations: Array<[string, number]> = [
      ["/fc", 503],
      ["/fo", 200],
      ["/ro", 200],
      ["/rc", 503],
      ["/ac", 503],
      ["/ao", 200]
    ]
    for (const [p, status] of expectations) {
      const reply = await env.get(p)
      expect({ p, status: reply.status }).toEqual({ p, status })
      if (status === 503) expect(reply.headers["x-request-id"]).toBeDefined()
    }
    expect(env.origin.requests.map((r) => r.url).sort()).toEqual(["/ao", "/fo", "/ro"])
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_fail_open_total", { agent: "agent-closed" })).toBe(2)
    expect(metricValue(m, "sentinel_agent_fail_open_total", { agent: "agent-open" })).toBe(1)
    expect(metricValue(m, "sentinel_agent_failures_total", { agent: "agent-closed", reason: "unavailable" })).toBe(3)
    expect(metricValue(m, "sentinel_blocked_requests_total", { reason: "agent-failure" })).toBe(3)
    await env.auditLine((l) => l.route_id === "by-filter-open" && l.decision === "fail-open" && l.result === "unavailable")
    await env.auditLine((l) => l.route_id === "by-agent-closed" && l.decision === "fail-closed" && l.status === 503)
  })
})
