/**
 * gRPC agents breaking on purpose, through the real proxy: killed under load
 * (fail-closed never answers 200, fail-open answers 200 and audits), absent,
 * restarted on the same port (the streams come back with backoff), refusing
 * the handshake; and TLS / mTLS to the agent.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { makeCerts } from "../support/certs.js"
import { type AgentEnv, closeAllEnvs, metricValue, startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { spawnGrpcRawAgent, stopAllGrpcAgents } from "./grpcAgentHarness.js"
import { eventually } from "./rawAgentHarness.js"

afterEach(async () => {
  await closeAllEnvs()
  await stopAllGrpcAgents()
})

/** Agent "a" at `address` behind /closed (filter fail-closed) and /open (filter fail-open). */
const setup = async (address: string, agent: Record<string, unknown> = {}, ready = true): Promise<AgentEnv> => {
  const env = await startAgentEnv(() => ({
    agents: [{ id: "a", grpc: { address }, timeoutMs: 5000, reconnectBaseMs: 20, reconnectMaxMs: 200, ...agent } as never],
    filters: [
      { id: "closed", type: "agent", agent: "a", failureMode: "closed" },
      { id: "open", type: "agent", agent: "a", failureMode: "open" }
    ],
    routes: [upstreamRoute("closed", "/closed", { filters: ["closed"] }), upstreamRoute("open", "/open", { filters: ["open"] })]
  }))
  if (ready) await env.agentsReady()
  return env
}

const reached = (env: AgentEnv) => env.origin.requests.map((r) => r.url)

describe("gRPC agent faults through the proxy", () => {
  it("killed (SIGKILL) under load: every call in flight fails at once; closed never answers 200, open answers 200 and audits", async () => {
    // the agent holds every answer: no request can be legitimately allowed before the kill
    const agent = await spawnGrpcRawAgent(["--mode", "late:20000"])
    const env = await setup(agent.address)
    const n = 24
    const started = Date.now()
    const pending = Array.from({ length: n }, (_, i) => env.get(i % 2 === 0 ? `/closed/${i}` : `/open/${i}`))
    await eventually(() => agent.lines.filter((l) => l.event === "event").length === n, 10_000, "all events at the agent")
    agent.signal("SIGKILL")
    const replies = await Promise.all(pending)
    // failed at once, not at the 5 s deadline
    expect(Date.now() - started).toBeLessThan(4000)
    const closed = replies.filter((_, i) => i % 2 === 0).map((r) => r.status)
    const open = replies.filter((_, i) => i % 2 === 1).map((r) => r.status)
    expect(closed).toEqual(closed.map(() => 503))
    expect(open).toEqual(open.map(() => 200))
    // and while it is down
    const more = await Promise.all(Array.from({ length: 10 }, (_, i) => env.get(i % 2 === 0 ? `/closed/after-${i}` : `/open/after-${i}`)))
    for (const [i, r] of more.entries()) expect({ i, status: r.status }).toEqual({ i, status: i % 2 === 0 ? 503 : 200 })
    expect(reached(env).filter((u) => u.startsWith("/closed"))).toEqual([])
    expect(reached(env).filter((u) => u.startsWith("/open")).length).toBe(n / 2 + 5)
    // audit lines are written after the answers, by the log's writer: wait for them, then check
    await eventually(() => env.audit().filter((l) => l.route_id === "open").length >= n / 2 + 5, 5000, "audit lines")
    const lines = env.audit().filter((l) => l.route_id === "open")
    expect(lines.length).toBe(n / 2 + 5)
    for (const l of lines) expect(l).toMatchObject({ decision: "fail-open", agent: "a" })
    const m = await env.metrics()
    expect(metricValue(m, "sentinel_agent_fail_open_total", { agent: "a" })).toBe(n / 2 + 5)
  })

  it("restart on the same port: closed answers 503 while it is down, then the agent's decisions apply again", async () => {
    const first = await spawnGrpcRawAgent(["--mode", "allow"])
    const env = await setup(first.address)
    expect((await env.get("/closed/before")).status).toBe(200)
    await first.stop()
    await eventually(() => env.proxy.agentStatus()[0].client.ready === 0, 5000, "streams dropped")
    expect((await env.get("/closed/down")).status).toBe(503)
    expect((await env.get("/open/down")).status).toBe(200)
    const second = await spawnGrpcRawAgent(["--mode", "add-header"], first.port)
    await env.agentsReady()
    const after = await env.get("/closed/after")
    expect(after.status).toBe(200)
    expect(JSON.parse(after.body.toString()).headers["x-grpc-agent"]).toBe("seen")
    expect(second.lines.filter((l) => l.event === "handshake").length).toBeGreaterThanOrEqual(1)
    expect(reached(env)).toEqual(["/closed/before", "/open/down", "/closed/after"])
    // every stream is back, none pending
    await eventually(() => env.proxy.agentStatus()[0].client.ready === 4, 5000, "all streams back")
    expect(env.proxy.agentStatus()[0].client.pending).toBe(0)
  })

  it("absent at start: 503 closed / 200 open until it appears, then it decides", async () => {
    const probe = await spawnGrpcRawAgent(["--mode", "allow"])
    const port = probe.port
    await probe.stop()
    const env = await setup(`http://127.0.0.1:${port}`, {}, false)
    expect((await env.get("/closed/before")).status).toBe(503)
    expect((await env.get("/open/before")).status).toBe(200)
    await spawnGrpcRawAgent(["--mode", "block"], port)
    await env.agentsReady()
    expect((await env.get("/closed/after")).status).toBe(403)
  })

  it("a refused handshake: the agent's reason, 503 closed", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "reject-handshake"])
    const env = await setup(agent.address, {}, false)
    await agent.waitFor((l) => l.event === "handshake")
    const r = await env.get("/closed/x")
    expect(r.status).toBe(503)
    await eventually(() => (env.proxy.agentStatus()[0].client.lastError ?? "").includes("go away"), 5000, "refusal recorded")
  })

  it("a frozen agent (SIGSTOP): 504 at the deadline, then recovery when it resumes", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow"])
    const env = await setup(agent.address, { timeoutMs: 300 })
    agent.signal("SIGSTOP")
    expect((await env.get("/closed/frozen")).status).toBe(504)
    expect((await env.get("/open/frozen")).status).toBe(200)
    agent.signal("SIGCONT")
    await eventually(() => true, 10)
    let ok = 0
    for (let i = 0; i < 20 && ok === 0; i++) {
      if ((await env.get(`/closed/resumed-${i}`)).status === 200) ok++
      else await new Promise((r) => setTimeout(r, 100))
    }
    expect(ok).toBe(1)
  })
})

describe("TLS to the gRPC agent", () => {
  const certs = makeCerts({
    ca: { ca: true, cn: "Agent Test CA" },
    agent: { cn: "agent.test", sans: ["localhost", "IP:127.0.0.1"] },
    proxy: { cn: "proxy-1", client: true },
    other: { ca: true, cn: "Other CA" },
    stranger: { cn: "stranger", client: true, issuer: "other" }
  })
  afterAll(() => certs.cleanup())
  const f = certs.files
  const ca = `${certs.dir}/ca.crt`

  it("https:// with ca-cert: the agent's certificate is verified and its decisions apply", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "add-header", "--tls-cert", f.agent.cert, "--tls-key", f.agent.key])
    const env = await startAgentEnv(() => ({
      agents: [{ id: "a", grpc: { address: `https://127.0.0.1:${agent.port}`, tls: { caCert: ca } }, failureMode: "closed" } as never],
      filters: [{ id: "fa", type: "agent", agent: "a" }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }))
    await env.agentsReady()
    const r = await env.get("/tls")
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body.toString()).headers["x-grpc-agent"]).toBe("seen")
  })

  it("an untrusted agent certificate is refused (503 closed); tls-insecure accepts it", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow", "--tls-cert", f.agent.cert, "--tls-key", f.agent.key])
    const strict = await startAgentEnv(() => ({
      agents: [{ id: "a", grpc: { address: `https://127.0.0.1:${agent.port}`, tls: { caCert: `${certs.dir}/other.crt` } }, failureMode: "closed", reconnectBaseMs: 50 } as never],
      filters: [{ id: "fa", type: "agent", agent: "a" }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }))
    expect((await strict.get("/untrusted")).status).toBe(503)
    expect(strict.origin.requests).toEqual([])
    const insecure = await startAgentEnv(() => ({
      agents: [{ id: "a", grpc: { address: `https://127.0.0.1:${agent.port}`, tls: { insecure: true } }, failureMode: "closed" } as never],
      filters: [{ id: "fa", type: "agent", agent: "a" }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }))
    await insecure.agentsReady()
    expect((await insecure.get("/insecure")).status).toBe(200)
  })

  it("mTLS: with client-cert / client-key the agent accepts the proxy; without, the handshake never happens", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "allow", "--tls-cert", f.agent.cert, "--tls-key", f.agent.key, "--client-ca", ca])
    const withCert = await startAgentEnv(() => ({
      agents: [{
        id: "a",
        grpc: { address: `https://127.0.0.1:${agent.port}`, tls: { caCert: ca, clientCert: f.proxy.cert, clientKey: f.proxy.key } },
        failureMode: "closed"
      } as never],
      filters: [{ id: "fa", type: "agent", agent: "a" }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }))
    await withCert.agentsReady()
    expect((await withCert.get("/mtls")).status).toBe(200)
    const handshakes = agent.lines.filter((l) => l.event === "handshake").length
    const without = await startAgentEnv(() => ({
      agents: [{ id: "a", grpc: { address: `https://127.0.0.1:${agent.port}`, tls: { caCert: ca } }, failureMode: "closed", reconnectBaseMs: 50 } as never],
      filters: [{ id: "fa", type: "agent", agent: "a" }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }))
    expect((await without.get("/no-cert")).status).toBe(503)
    expect(agent.lines.filter((l) => l.event === "handshake").length).toBe(handshakes)
  })
})
