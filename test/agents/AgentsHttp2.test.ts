/**
 * Agents over HTTP/2 and TLS: a request arriving as an HTTP/2 stream on an `https` listener
 * (ALPN h2) goes through the route's agents like an HTTP/1.1 one (header mutations both ways,
 * a block answered with the agent's status), and the agent's request metadata carries what
 * Sentinel's protocol has for it: `protocol` "HTTP/2", `server_name` (SNI), `tls_version`,
 * `tls_cipher`. Real agent process, real Unix socket, real TLS client.
 */
import * as fs from "node:fs"
import * as http2 from "node:http2"
import * as path from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { standardCerts, type CertSet } from "../support/certs.js"
import { sha256 } from "../support/origins.js"
import { closeAllEnvs, startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { socketDir, spawnRawAgent, stopAllAgents } from "./rawAgentHarness.js"

let certs: CertSet<"ca" | "default" | "api" | "wildcard" | "shared" | "expired" | "soon" | "client" | "mismatched">
beforeAll(() => {
  certs = standardCerts()
})
afterAll(() => certs.cleanup())
afterEach(async () => {
  await closeAllEnvs()
  await stopAllAgents()
})

const withAgentOverTls = async (args: ReadonlyArray<string>, agentExtra: Record<string, unknown> = {}) => {
  const dir = socketDir()
  const agent = await spawnRawAgent(path.join(dir, "a.sock"), args)
  const env = await startAgentEnv(
    (dir) => ({
      listeners: [
        {
          id: "tls",
          address: "127.0.0.1:0",
          protocol: "https",
          tls: {
            certFile: certs.files.default.cert,
            keyFile: certs.files.default.key,
            sni: [{ hostnames: ["api.example.com"], priority: false, certFile: certs.files.api.cert, keyFile: certs.files.api.key }]
          }
        }
      ],
      agents: [{ id: "a", socketPath: path.join(dir, "a.sock"), failureMode: "closed", ...agentExtra }],
      filters: [{ id: "fa", type: "agent", agent: "a" }],
      routes: [upstreamRoute("r", "/", { filters: ["fa"] })]
    }) as never,
    dir
  )
  await env.agentsReady()
  return { env, agent }
}

const h2get = (port: number, servername: string, p: string) =>
  new Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { ca: fs.readFileSync(certs.files.ca.cert), servername })
    session.on("error", reject)
    const req = session.request({ ":path": p, ":authority": servername }, { endStream: true })
    let status = 0
    let headers: http2.IncomingHttpHeaders = {}
    const chunks: Array<Buffer> = []
    req.on("response", (h) => {
      headers = h
      status = Number(h[":status"])
    })
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      session.close()
      resolve({ status, headers, body: Buffer.concat(chunks).toString() })
    })
    req.on("error", reject)
  })

describe("agents over HTTP/2 and TLS", () => {
  it("header mutations both ways; the agent sees protocol HTTP/2, the SNI name, the TLS version and cipher", async () => {
    const { env, agent } = await withAgentOverTls(["--mode", "add-header", "--header", "x-raw-agent=seen"])
    const reply = await h2get(env.proxy.port, "api.example.com", "/over-h2")
    expect(reply.status).toBe(200)
    expect(JSON.parse(reply.body).headers["x-raw-agent"]).toBe("seen")
    expect(reply.headers["x-raw-agent-response"]).toBe("seen")
    const frame = await agent.waitFor((l) => l.event === "frame" && l.payload?.uri === "/over-h2")
    const meta = frame.payload.metadata as Record<string, unknown>
    expect(meta.protocol).toBe("HTTP/2")
    expect(meta.server_name).toBe("api.example.com")
    expect(meta.tls_version).toBe("TLSv1.3")
    expect(typeof meta.tls_cipher === "string" && (meta.tls_cipher as string).startsWith("TLS_")).toBe(true)
  })

  it("a block answers the HTTP/2 stream with the agent's status; nothing reaches the upstream", async () => {
    const { env } = await withAgentOverTls(["--mode", "block"])
    const reply = await h2get(env.proxy.port, "localhost", "/blocked-h2")
    expect(reply.status).toBe(403)
    expect(reply.body).toContain("blocked by rawAgent")
    expect(env.origin.requests.some((r) => r.url === "/blocked-h2")).toBe(false)
  })

  it("a request body without Content-Length (HTTP/2 frames it) reaches a body-inspecting agent; its mutation is what the origin gets", async () => {
    const { env, agent } = await withAgentOverTls(["--mode", "replace-body"], { events: ["request_headers", "request_body"] })
    const body = Buffer.from("id=1' OR '1'='1".repeat(200))
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${env.proxy.port}`, { ca: fs.readFileSync(certs.files.ca.cert), servername: "localhost" })
      session.on("error", reject)
      // no content-length: the body is known only from DATA frames and END_STREAM
      const req = session.request({ ":method": "POST", ":path": "/h2/upload", ":authority": "localhost" })
      const chunks: Array<Buffer> = []
      let status = 0
      req.on("response", (h) => (status = Number(h[":status"])))
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        session.close()
        resolve({ status, body: Buffer.concat(chunks).toString() })
      })
      req.on("error", reject)
      req.write(body.subarray(0, 1000))
      setImmediate(() => req.end(body.subarray(1000)))
    })
    expect(reply.status).toBe(200)
    const frame = await agent.waitFor((l) => l.event === "frame" && l.type === 0x11)
    expect(Buffer.from(frame.payload.data, "base64").equals(body)).toBe(true)
    // the origin hashed what it received: the agent's replacement, not the client's body
    const replaced = Buffer.from("replaced by rawAgent")
    expect(JSON.parse(reply.body)).toEqual({ bytes: replaced.length, sha256: sha256(replaced) })
  })
})
