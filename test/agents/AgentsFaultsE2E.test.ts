/**
 * Agents breaking on purpose, through the real proxy: killed (SIGKILL),
 * frozen (SIGSTOP), answering garbage, late, without the correlation id,
 * absent at start. Fail-closed never forwards (the origin saw nothing),
 * fail-open always does; the concurrency bound holds under load; nothing is
 * left pending after many failures.
 */
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { type AgentEnv, closeAllEnvs, metricValue, startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { eventually, type RawAgent, socketDir, spawnRawAgent, stopAllAgents } from "./rawAgentHarness.js"

afterEach(async () => {
  await closeAllEnvs()
  await stopAllAgents()
})

interface Setup {
  readonly env: AgentEnv
  readonly agent: RawAgent | undefined
  readonly socket: string
}

/** Agent "a" behind two routes: /closed (filter fail-closed) and /open (filter fail-open). */
const setup = async (
  agentArgs: ReadonlyArray<string> | undefined,
  agent: Record<string, unknown> = {}
): Promise<Setup> => {
  const dir = socketDir()
  const socket = path.join(dir, "a.sock")
  const proc = agentArgs === undefined ? undefined : await spawnRawAgent(socket, [...agentArgs, "--id", "a"])
  const env = await startAgentEnv(
    () => ({
      agents: [{ id: "a", socketPath: socket, timeoutMs: 400, reconnectBaseMs: 20, reconnectMaxMs: 100, ...agent }],
      filters: [
        { id: "closed", type: "agent", agent: "a", failureMode: "closed" },
        { id: "open", type: "agent", agent: "a", failureMode: "open" }
      ],
      routes: [upstreamRoute("closed", "/closed", { filters: ["closed"] }), upstreamRoute("open", "/open", { filters: ["open"] })]
    }),
    dir
  )
  if (proc !== undefined) await env.agentsReady()
  return { env, agent: proc, socket }
}

const reached = (env: AgentEnv) => env.origin.requests.map((r) => r.url)

describe("agent faults through the proxy", () => {
  it("agent killed (SIGKILL) mid-call: closed answers 503 without forwarding; open forwards", async () => {
    const { env, agent } = await setup(["--mode", "allow"], { timeoutMs: 5000 })
    const pending = env.get("/closed/k", { "x-raw-mode": "late:4000" })
    await agent!.waitFor((l) => l.event === "frame")
    agent!.signal("SIGKILL")
    const reply = await pending
    expect(reply.status).toBe(503)
    const open = await env.get("/open/k")
    expect(open.status).toBe(200)
    expect(reached(env)).toEqual(["/open/k"])
    await env.auditLine((l) => l.route_id === "open" && l.decision === "fail-open")
  })

  it("agent frozen (SIGSTOP): closed answers 504 at the agent's timeout; open forwards; timeouts counted", async () => {
    const { env, agent } = await setup(["--mode", "allow"])
    agent!.signal("SIGSTOP")
    const closed = await env.get("/closed/f")
    expect(closed.status).toBe(504)
    const open = await env.get("/open/f")
    expect(open.status).toBe(200)
    expect(reached(env)).toEqual(["/open/f"])
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_timeouts_total", { agent: "a", event: "request_headers" })).toBe(2)
    expect(metricValue(m, "sentinel_agent_fail_open_total", { agent: "a" })).toBe(1)
    const line = await env.auditLine((l) => l.route_id === "open")
    expect(line).toMatchObject({ decision: "fail-open", result: "timeout", agent: "a" })
    expect(line.trace_id).toBe(open.headers["x-request-id"])
  })

  it("garbage answers are failures, never allows", async () => {
    const { env } = await setup(["--mode", "allow"], { timeoutMs: 2000 })
    for (const kind of ["bad-json", "unknown-type", "zero-length", "malformed"]) {
      const closed = await env.get(`/closed/${kind}`, { "x-raw-mode": `garbage:${kind}` })
      expect({ kind, status: closed.status }).toEqual({ kind, status: 503 })
      await env.agentsReady()
    }
    const open = await env.get("/open/g", { "x-raw-mode": "garbage:bad-json" })
    expect(open.status).toBe(200)
    expect(reached(env)).toEqual(["/open/g"])
  })

  it("a late answer times out (504) and is ignored when it comes; the next call is answered", async () => {
    const { env, agent } = await setup(["--mode", "allow"])
    const late = await env.get("/closed/late", { "x-raw-mode": "late:900" })
    expect(late.status).toBe(504)
    // the agent got a Cancel for it
    await agent!.waitFor((l) => l.event === "cancel")
    const next = await env.get("/closed/next")
    expect(next.status).toBe(200)
    expect(reached(env)).toEqual(["/closed/next"])
  })

  it("an answer without the correlation id matches nothing: 504 closed, 200 open", async () => {
    const { env } = await setup(["--mode", "allow"])
    expect((await env.get("/closed/nc", { "x-raw-mode": "no-correlation" })).status).toBe(504)
    expect((await env.get("/open/nc", { "x-raw-mode": "no-correlation" })).status).toBe(200)
    expect(reached(env)).toEqual(["/open/nc"])
  })

  it("socket missing at start: closed answers 503 until the agent appears, then its decisions apply", async () => {
    const { env, socket } = await setup(undefined)
    expect((await env.get("/closed/before")).status).toBe(503)
    expect((await env.get("/open/before")).status).toBe(200)
    await spawnRawAgent(socket, ["--mode", "add-header", "--header", "x-late-agent=1", "--id", "a"])
    await env.agentsReady()
    const after = await env.get("/closed/after")
    expect(after.status).toBe(200)
    expect(JSON.parse(after.body.toString()).headers["x-late-agent"]).toBe("1")
    expect(reached(env)).toEqual(["/open/before", "/closed/after"])
  })
})

describe("fail-closed answers are proxy-made errors", () => {
  /** JSON with the status, the reason and the trace id the client got in X-Request-Id (errorBody). */
  const expectJsonError = (reply: { status: number; headers: Record<string, unknown>; body: Buffer }, status: number, error: string) => {
    expect(reply.status).toBe(status)
    expect(reply.headers["content-type"]).toBe("application/json")
    const body = JSON.parse(reply.body.toString())
    expect(body).toEqual({ error, reason: "agent-failure", trace_id: reply.headers["x-request-id"] })
    expect(typeof body.trace_id).toBe("string")
  }

  it("a dead agent (no socket) answers 503 JSON with the trace id", async () => {
    const { env } = await setup(undefined)
    expectJsonError(await env.get("/closed/dead", { "x-request-id": "trace-dead-1" }), 503, "503 Service Unavailable")
    expect(reached(env)).toEqual([])
  })

  it("a hanging agent answers 504 JSON with the trace id at the agent's timeout", async () => {
    const { env, agent } = await setup(["--mode", "allow"])
    agent!.signal("SIGSTOP")
    const reply = await env.get("/closed/hang")
    expectJsonError(reply, 504, "504 Gateway Timeout")
    expect(reached(env)).toEqual([])
  })
})

describe("agent load and leaks", () => {
  it("max-concurrent-calls bounds the calls in flight; a full queue fails by failure mode", async () => {
    const dir = socketDir()
    const bounded = await spawnRawAgent(path.join(dir, "b.sock"), ["--mode", "allow", "--delay", "60", "--id", "b"])
    await spawnRawAgent(path.join(dir, "q.sock"), ["--mode", "allow", "--delay", "1500", "--id", "q"])
    const env = await startAgentEnv(
      () => ({
        agents: [
          { id: "b", socketPath: path.join(dir, "b.sock"), timeoutMs: 10_000, maxConcurrentCalls: 2, maxQueuedCalls: 100 },
          { id: "q", socketPath: path.join(dir, "q.sock"), timeoutMs: 5000, maxConcurrentCalls: 1, maxQueuedCalls: 0 }
        ],
        filters: [
          { id: "b", type: "agent", agent: "b", failureMode: "closed" },
          { id: "q", type: "agent", agent: "q", failureMode: "closed" }
        ],
        routes: [upstreamRoute("b", "/b", { filters: ["b"] }), upstreamRoute("q", "/q", { filters: ["q"] })]
      }),
      dir
    )
    await env.agentsReady()
    const replies = await Promise.all(Array.from({ length: 16 }, (_, i) => env.get(`/b/${i}`)))
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 200))
    const frames = bounded.lines.filter((l) => l.event === "frame")
    expect(frames.length).toBe(16)
    expect(Math.max(...frames.map((l) => l.inflight as number))).toBeLessThanOrEqual(2)

    // one slot, no queue: while one call is in flight the others are refused (503), never forwarded
    const first = env.get("/q/first")
    await eventually(() => env.proxy.agentStatus().find((a) => a.id === "q")!.runtime.inflight === 1, 5000, "q in flight")
    const refused = await Promise.all(Array.from({ length: 4 }, (_, i) => env.get(`/q/refused-${i}`)))
    expect(refused.map((r) => r.status)).toEqual([503, 503, 503, 503])
    expect((await first).status).toBe(200)
    expect(reached(env).filter((u) => u.startsWith("/q"))).toEqual(["/q/first"])
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_failures_total", { agent: "q", reason: "overloaded" })).toBe(4)
  })

  it("after many failures nothing is left pending, and the open circuit is exported", async () => {
    const { env } = await setup(["--mode", "garbage:bad-json"], { timeoutMs: 1000 })
    for (let round = 0; round < 5; round++) {
      const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => env.get(`/closed/${round}-${i}`)))
      for (const r of replies) expect(r.status).toBe(503)
    }
    expect(reached(env)).toEqual([])
    const [status] = env.proxy.agentStatus()
    expect(status.runtime.inflight).toBe(0)
    expect(status.runtime.queued).toBe(0)
    expect(status.client.pending).toBe(0)
    // pings and reconnects only: a few timers per connection, not one per failed call
    expect(status.client.timers).toBeLessThanOrEqual(2 * 4 + 2)
    expect(status.runtime.circuit).toBe("open")
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_circuit_breaker_state", { component: "agent", target: "a" })).toBe(1)
    expect(metricValue(m, "sentinel_agent_failures_total", { agent: "a", reason: "circuit-open" })).toBeGreaterThan(0)
  })
})
