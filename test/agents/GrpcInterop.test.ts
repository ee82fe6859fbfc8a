/**
 * The proxy's gRPC client (src/agents/GrpcHttp2.ts, on node:http2) against a gRPC server that
 * is not grpc-js: an agent on gRPC's C-core (python3-grpcio, test/support/grpcCoreAgent.py),
 * stubs generated from proto/ by its protoc. The handshake, allow with header mutations both
 * ways, block, messages larger than one HTTP/2 frame each way, many calls in flight at once on
 * the one connection, and the agent dying (fail-closed) then coming back.
 */
import { createHash } from "node:crypto"
import { afterEach, describe, expect, it } from "vitest"
import { request } from "../support/proxy.js"
import { closeAllEnvs, metricValue } from "./agentProxyHarness.js"
import { type GrpcAgentProcess, spawnGrpcCoreAgent, stopAllGrpcAgents, withGrpcAgent } from "./grpcAgentHarness.js"

/** The C-core agent as agent "g", its deadline long enough for a loaded machine (timeouts are not under test here). */
const withCoreAgent = (agent: GrpcAgentProcess, extra: Parameters<typeof withGrpcAgent>[1] = {}) => withGrpcAgent(agent, { timeoutMs: 5000, ...extra })

afterEach(async () => {
  await closeAllEnvs()
  await stopAllGrpcAgents()
})

describe("gRPC interop: an agent on gRPC's C-core", () => {
  it("handshake, then allow with a request header set for the origin and a response header added", async () => {
    const agent = await spawnGrpcCoreAgent()
    const env = await withCoreAgent(agent)
    const hs = await agent.waitFor((l) => l.event === "handshake")
    expect(hs.versions).toEqual([2])
    const reply = await env.get("/hello?q=1")
    expect(reply.status).toBe(200)
    expect(JSON.parse(reply.body.toString()).headers["x-core-agent"]).toBe("seen /hello?q=1")
    expect(reply.headers["x-core-agent-response"]).toBe("1")
    const ev = await agent.waitFor((l) => l.event === "request_headers")
    expect(ev).toMatchObject({ uri: "/hello?q=1", method: "GET", correlation_id: reply.headers["x-request-id"] })
    expect(metricValue(await env.metrics(), "sentinel_agent_calls_total", { agent: "g", event: "request_headers", result: "allow" })).toBe(1)
  })

  it("block: the agent's status and body, nothing upstream; a 100 KiB block body arrives whole (many DATA frames)", async () => {
    const agent = await spawnGrpcCoreAgent()
    const env = await withCoreAgent(agent)
    const small = await env.get("/x", { "x-block": "451" })
    expect(small.status).toBe(451)
    expect(small.body.toString()).toBe("b".repeat(16))
    const big = await env.get("/y", { "x-block": "403", "x-block-size": String(100 * 1024) })
    expect(big.status).toBe(403)
    expect(big.body.equals(Buffer.alloc(100 * 1024, "b"))).toBe(true)
    expect(env.origin.requests).toEqual([])
  })

  it("a 200 KiB request body goes to the agent in one message larger than a frame, then upstream", async () => {
    const agent = await spawnGrpcCoreAgent()
    const env = await withCoreAgent(agent, { events: ["request_headers", "request_body"], maxRequestBodyBytes: 1_000_000 })
    const body = Buffer.alloc(200 * 1024, 7)
    const reply = await request(env.proxy.port, { method: "POST", path: "/upload", headers: { "content-type": "application/octet-stream" }, body })
    expect(reply.status).toBe(200)
    // (its stdout line can trail the answer it sent over gRPC)
    await agent.waitFor((l) => l.event === "request_body_chunk" && l.is_last === true)
    const chunks = agent.lines.filter((l) => l.event === "request_body_chunk")
    expect(chunks.reduce((n, l) => n + l.size, 0)).toBe(body.length)
    expect(chunks.at(-1)?.is_last).toBe(true)
    // read whole (under the agent's cap): one event of 200 KiB, far more than one 16 KiB DATA frame
    expect(chunks.length).toBe(1)
    expect(JSON.parse(reply.body.toString())).toEqual({ bytes: body.length, sha256: createHash("sha256").update(body).digest("hex") })
    const raw = env.origin.requests[0].rawHeaders
    expect(raw[raw.findIndex((h) => h.toLowerCase() === "x-core-body-bytes") + 1]).toBe(String(chunks.at(-1)?.size))
  })

  it("100 requests at once share the one connection: every one answered by its own decision", async () => {
    const agent = await spawnGrpcCoreAgent()
    const env = await withCoreAgent(agent)
    const replies = await Promise.all(
      Array.from({ length: 100 }, (_, i) => env.get(`/n/${i}`, i % 10 === 0 ? { "x-block": String(400 + (i % 30)) } : {}))
    )
    replies.forEach((r, i) => {
      if (i % 10 === 0) expect(r.status).toBe(400 + (i % 30))
      else {
        expect(r.status).toBe(200)
        expect(JSON.parse(r.body.toString()).headers["x-core-agent"]).toBe(`seen /n/${i}`)
      }
    })
    expect(env.origin.requests.length).toBe(90)
  })

  it("the agent dies: fail-closed answers, never a pass; a new agent on the same port is used again", async () => {
    const agent = await spawnGrpcCoreAgent()
    const env = await withCoreAgent(agent)
    expect((await env.get("/before")).status).toBe(200)
    await agent.stop()
    const during = await env.get("/during")
    expect([502, 503, 504]).toContain(during.status)
    expect(env.origin.requests.map((r) => r.url)).toEqual(["/before"])
    const again = await spawnGrpcCoreAgent(agent.port)
    await env.agentsReady()
    const after = await env.get("/after")
    expect(after.status).toBe(200)
    expect(JSON.parse(after.body.toString()).headers["x-core-agent"]).toBe("seen /after")
    await again.waitFor((l) => l.event === "handshake")
  })
})
