/**
 * `request-body-mode "stream"` through the real proxy: chunks reach the agent
 * as they arrive (growing chunk_index, the last one flagged), the agent may
 * decide before the end (a block with needs_more false answers at once, the
 * rest of the body unread), an allow with needs_more false settles it, and
 * `chunk-timeout-ms` bounds each chunk. Over gRPC (grpcRawAgent.mjs) and over
 * a Unix socket (the waf reference agent, SDK).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { type AgentEnv, closeAllEnvs, startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { spawnGrpcRawAgent, stopAllGrpcAgents } from "./grpcAgentHarness.js"
import { eventually, socketDir } from "./rawAgentHarness.js"

const children: Array<ChildProcess> = []
afterEach(async () => {
  await closeAllEnvs()
  await stopAllGrpcAgents()
  for (const c of children.splice(0)) c.kill("SIGKILL")
})

const env = (agent: Record<string, unknown>) =>
  startAgentEnv(() => ({
    agents: [{ id: "s", events: ["request_headers", "request_body"], requestBodyMode: "stream", failureMode: "closed", ...agent } as never],
    filters: [{ id: "fs", type: "agent", agent: "s" }],
    routes: [upstreamRoute("r", "/", { filters: ["fs"] })]
  }))

/** A POST whose body is written in parts, `between(i)` awaited before part i (i >= 1); `end: false` never ends it. */
const post = (e: AgentEnv, parts: ReadonlyArray<string>, between: (i: number) => Promise<void>, end = true) =>
  new Promise<{ status: number; body: string; ended: boolean }>((resolve, reject) => {
    let ended = false
    const req = http.request({ host: "127.0.0.1", port: e.proxy.port, method: "POST", path: "/upload", agent: false, headers: { "transfer-encoding": "chunked" } }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (body += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ended }))
    })
    req.on("error", reject)
    void (async () => {
      for (let i = 0; i < parts.length; i++) {
        if (i > 0) await between(i)
        if (req.destroyed) return
        req.write(parts[i])
      }
      if (end) {
        ended = true
        req.end()
      }
    })()
  })

describe("request-body-mode stream (gRPC agent)", () => {
  it("chunks arrive as they are sent, with growing chunk_index; the last is flagged; the origin gets the whole body", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "stream-body"])
    const e = await env({ grpc: { address: agent.address } })
    await e.agentsReady()
    const chunkSeen = (n: number) => eventually(() => agent.lines.filter((l) => l.kind === "request_body_chunk").length >= n, 5000, `chunk ${n}`)
    const r = await post(e, ["alpha-", "beta-", "gamma"], (i) => chunkSeen(i))
    expect(r.status).toBe(200)
    expect(JSON.parse(r.body)).toEqual({ bytes: 16, sha256: createHash("sha256").update("alpha-beta-gamma").digest("hex") })
    const chunks = agent.lines.filter((l) => l.kind === "request_body_chunk")
    expect(chunks.map((c) => c.chunk_index)).toEqual(chunks.map((_, i) => i))
    expect(chunks.length).toBeGreaterThanOrEqual(3)
    expect(chunks.at(-1)!.is_last).toBe(true)
    expect(chunks.slice(0, -1).every((c) => c.is_last === false)).toBe(true)
  })

  it("an early block (needs_more false) answers before the body is all sent; nothing reaches the origin", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "stream-body"])
    const e = await env({ grpc: { address: agent.address } })
    await e.agentsReady()
    const r = await post(
      e,
      ["harmless-", "EVIL-", "never-sent"],
      async (i) => {
        await eventually(() => agent.lines.filter((l) => l.kind === "request_body_chunk").length >= i, 5000, "chunk")
        // the third part would wait for ever: the answer must come first
        if (i === 2) await new Promise((res) => setTimeout(res, 10_000))
      },
      false
    )
    expect(r.status).toBe(403)
    expect(r.body).toBe("early block at chunk 1")
    expect(r.ended).toBe(false)
    expect(e.origin.requests).toEqual([])
    await e.auditLine((l) => l.decision === "block" && (l.rule_ids as Array<string>).includes("stream-evil"))
  })

  it("Content-Length bodies: the chunk that completes it is the last (no empty trailer chunk)", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "stream-body"])
    const e = await env({ grpc: { address: agent.address } })
    await e.agentsReady()
    const { request } = await import("../support/proxy.js")
    const r = await request(e.proxy.port, { method: "POST", path: "/cl/upload", body: Buffer.from("x".repeat(5000)) })
    expect(r.status).toBe(200)
    const chunks = agent.lines.filter((l) => l.kind === "request_body_chunk")
    expect(chunks.at(-1)).toMatchObject({ is_last: true })
    expect(chunks.reduce((n, c) => n + (c.size as number), 0)).toBe(5000)
    expect(chunks.at(-1)!.size).toBeGreaterThan(0)
  })

  it("chunk-timeout-ms bounds each chunk (not timeout-ms): 504 closed", async () => {
    const agent = await spawnGrpcRawAgent(["--mode", "no-answer"])
    const e = await env({ grpc: { address: agent.address }, events: ["request_body"], timeoutMs: 10_000, chunkTimeoutMs: 200 })
    await e.agentsReady()
    const started = Date.now()
    const { request } = await import("../support/proxy.js")
    const r = await request(e.proxy.port, { method: "POST", path: "/t/upload", body: Buffer.from("body") })
    expect(r.status).toBe(504)
    expect(Date.now() - started).toBeLessThan(3000)
    expect(e.origin.requests).toEqual([])
  })
})

describe("request-body-mode stream (Unix socket, waf reference agent)", () => {
  it("the SDK agent decides at the chunk with the attack (needs_more until then)", async () => {
    const dir = socketDir()
    const socket = path.join(dir, "waf.sock")
    const main = path.resolve(__dirname, "../../dist/agents-bin/waf/main.js")
    const child = spawn(process.execPath, [main, "--socket", socket], { stdio: "ignore" })
    children.push(child)
    await eventually(() => fs.existsSync(socket), 20_000, "waf socket")
    const e = await env({ socketPath: socket })
    await e.agentsReady()
    const clean = await post(e, ["name=alice&", "city=paris"], () => new Promise((r) => setTimeout(r, 50)))
    expect(clean.status).toBe(200)
    const r = await post(
      e,
      ["name=bob&", "q=1' UNION SELECT password FROM users--&", "rest"],
      async (i) => {
        await new Promise((res) => setTimeout(res, 100))
        if (i === 2) await new Promise((res) => setTimeout(res, 10_000))
      },
      false
    )
    expect(r.status).toBe(403)
    expect(r.ended).toBe(false)
    expect(e.origin.requests.map((q) => q.url)).toEqual(["/upload"])
  })
})
