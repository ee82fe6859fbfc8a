/**
 * `response-body-mode "stream"` through the real proxy, with a real agent
 * process written with the SDK (test/support/sdkBodyAgent.mjs) over a Unix
 * socket and over gRPC: each upstream chunk reaches the agent before the
 * client, with growing chunk_index, cumulative bytes and the last flagged; the
 * agent may decide early (allow without needs_more: the rest streams without
 * it); a block before anything was written is a clean answer, a block after
 * the head went out cuts the response (the client never sees a complete
 * body); chunk-timeout-ms bounds each chunk; fail-open vs fail-closed; the
 * agent's body cap; an HTTP/1.0 client, which could not tell a cut, gets
 * nothing before the agent is done; buffer-mode agents beside stream ones.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import type { AddressInfo } from "node:net"
import { fileURLToPath } from "node:url"
import { afterEach, describe, expect, it } from "vitest"
import { type AgentEnv, closeAllEnvs, startAgentEnv } from "./agentProxyHarness.js"
import { type AgentLine, type AgentProcess, eventually, socketDir, spawnAgentProcess, spawnRawAgent, stopAll, stopAllAgents } from "./rawAgentHarness.js"

const agentScript = fileURLToPath(new URL("../support/sdkBodyAgent.mjs", import.meta.url))
const running = new Set<AgentProcess>()
const origins: Array<PartsOrigin> = []

afterEach(async () => {
  await closeAllEnvs()
  await stopAll(running)
  await stopAllAgents()
  await Promise.all(origins.splice(0).map((o) => o.close()))
})

// ---------------------------------------------------------------------------
// an origin answering in parts, each written when the test lets it

interface PartsPlan {
  readonly parts: ReadonlyArray<string>
  /** Awaited before part i (i >= 1). */
  readonly between?: (i: number) => Promise<void>
  /** Content-Length of the whole (else chunked). */
  readonly contentLength?: boolean
}

interface PartsOrigin {
  readonly address: string
  plan: PartsPlan
  /** Parts written so far (of the last request). */
  written: number
  readonly close: () => Promise<void>
}

const startPartsOrigin = async (): Promise<PartsOrigin> => {
  const server = http.createServer((req, res) => {
    req.resume()
    const plan = origin.plan
    origin.written = 0
    const headers: Record<string, string> = { "content-type": "text/plain" }
    if (plan.contentLength) headers["content-length"] = String(plan.parts.reduce((n, p) => n + Buffer.byteLength(p), 0))
    res.writeHead(200, headers)
    void (async () => {
      for (let i = 0; i < plan.parts.length; i++) {
        if (i > 0 && plan.between) await plan.between(i)
        if (res.destroyed) return
        res.write(plan.parts[i])
        origin.written++
      }
      res.end()
    })().catch(() => res.destroy())
  })
  const sockets = new Set<net.Socket>()
  server.on("connection", (s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const origin: PartsOrigin = {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    plan: { parts: [] },
    written: 0,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      })
  }
  origins.push(origin)
  return origin
}

// ---------------------------------------------------------------------------
// the SDK agent, over a Unix socket or gRPC

type Transport = "uds" | "grpc"

const spawnBodyAgent = async (transport: Transport, args: ReadonlyArray<string>, dir: string) => {
  const socket = path.join(dir, "b.sock")
  const where = transport === "uds" ? ["--socket", socket] : ["--grpc", "127.0.0.1:0"]
  const { agent, ready } = await spawnAgentProcess([agentScript, ...where, ...args], {
    name: "sdkBodyAgent",
    ready: (_l, text) => {
      if (transport === "uds") return text.includes(`listening on ${socket}`) ? { socketPath: socket } : undefined
      const m = /serving gRPC on 127\.0\.0\.1:(\d+)/.exec(text)
      return m === null ? undefined : { grpc: { address: `http://127.0.0.1:${m[1]}` } }
    },
    registry: running
  })
  return { agent, transport: ready }
}

const readLines = (file: string): Array<Record<string, unknown>> =>
  fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>) : []

const chunks = (agent: AgentProcess): Array<AgentLine> => agent.lines.filter((l) => l.event === "chunk")

interface Setup {
  readonly env: AgentEnv
  readonly agent: AgentProcess
  readonly origin: PartsOrigin
}

const setup = async (
  transport: Transport,
  mode: string,
  agent: Record<string, unknown> = {},
  extra: { readonly others?: ReadonlyArray<Record<string, unknown>>; readonly filters?: ReadonlyArray<string>; readonly accessLog?: boolean } = {}
): Promise<Setup> => {
  const dir = socketDir()
  const origin = await startPartsOrigin()
  const spawned = await spawnBodyAgent(transport, ["--mode", mode], dir)
  const env = await startAgentEnv(
    () => ({
      upstreams: [{ id: "parts", targets: [{ address: origin.address }] }],
      agents: [
        { id: "s", events: ["response_body"], responseBodyMode: "stream", failureMode: "closed", ...spawned.transport, ...agent } as never,
        ...((extra.others ?? []) as Array<never>)
      ],
      filters: [{ id: "fs", type: "agent", agent: "s" }, ...(extra.others ?? []).map((o) => ({ id: `f-${o.id}`, type: "agent" as const, agent: o.id as string }))],
      routes: [{ id: "r", priority: 1, matches: [{ _tag: "PathPrefix" as const, prefix: "/" }], upstream: "parts", filters: extra.filters ?? ["fs", ...(extra.others ?? []).map((o) => `f-${o.id}`)] }]
    }),
    dir,
    { accessLog: extra.accessLog === true }
  )
  await env.agentsReady()
  return { env, agent: spawned.agent, origin }
}

interface Received {
  readonly status: number
  readonly body: string
  /** The body ended as announced (not cut). */
  readonly complete: boolean
  readonly headers: http.IncomingHttpHeaders
}

/** GET on its own connection; `onData(bodySoFar)` on every piece; resolves at the end or the cut. */
const fetchParts = (e: AgentEnv, onData: (soFar: string) => void = () => {}, httpVersion: "1.0" | "1.1" = "1.1"): Promise<Received> =>
  // node's client always speaks 1.1; an HTTP/1.0 request is written by hand
  httpVersion === "1.0" ? rawHttp10(e) : new Promise<Received>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: e.proxy.port, path: "/parts", agent: false }, (res) => {
      let body = ""
      let settled = false
      const done = () => {
        if (settled) return
        settled = true
        resolve({ status: res.statusCode ?? 0, body, complete: res.complete, headers: res.headers })
      }
      res.setEncoding("latin1")
      res.on("data", (c: string) => {
        body += c
        onData(body)
      })
      res.on("end", done)
      res.on("error", done)
      res.on("close", done)
    })
    req.on("error", reject)
    req.end()
  })

/** An HTTP/1.0 GET written by hand: the status, the body, whether the server said how long it is. */
const rawHttp10 = (e: AgentEnv): Promise<Received> =>
  new Promise((resolve, reject) => {
    const s = net.connect(e.proxy.port, "127.0.0.1")
    let raw = ""
    s.setEncoding("latin1")
    s.on("data", (c: string) => (raw += c))
    s.on("error", reject)
    s.on("close", () => {
      const i = raw.indexOf("\r\n\r\n")
      const head = raw.slice(0, i)
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
      const headers: http.IncomingHttpHeaders = {}
      for (const line of head.split("\r\n").slice(1)) {
        const c = line.indexOf(":")
        headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim()
      }
      const body = raw.slice(i + 4)
      const cl = headers["content-length"]
      resolve({ status, body, complete: cl !== undefined && Number(cl) === Buffer.byteLength(body, "latin1"), headers })
    })
    s.write("GET /parts HTTP/1.0\r\nHost: x\r\n\r\n")
  })

const seenChunks = (agent: AgentProcess, n: number) => eventually(() => chunks(agent).length >= n, 10_000, `${n} chunks at the agent`)

// ---------------------------------------------------------------------------

describe.each(["uds", "grpc"] as const)("response-body-mode stream (SDK agent, %s)", (transport) => {
  it("each chunk reaches the agent before the client (growing chunk_index, cumulative bytes, the last flagged); the client gets the whole body as it streams", async () => {
    const { env, agent, origin } = await setup(transport, "scan")
    let clientSaw = ""
    origin.plan = {
      parts: ["alpha-", "beta-", "gamma"],
      contentLength: true,
      // the client has part i-1 before the origin writes part i: the body streams, it is not held
      between: (i) => eventually(() => clientSaw.length >= ["alpha-", "beta-", "gamma"].slice(0, i).join("").length, 10_000, `client part ${i - 1}`)
    }
    const r = await fetchParts(env, (b) => (clientSaw = b))
    expect(r).toMatchObject({ status: 200, body: "alpha-beta-gamma", complete: true })
    const seen = chunks(agent)
    expect(seen.map((c) => c.chunk_index)).toEqual([0, 1, 2])
    expect(seen.map((c) => c.text)).toEqual(["alpha-", "beta-", "gamma"])
    expect(seen.map((c) => c.bytes)).toEqual([6, 11, 16])
    expect(seen.map((c) => c.is_last)).toEqual([false, false, true])
    expect(seen.every((c) => c.total_size === 16)).toBe(true)
  })

  it("a chunked body of unknown size ends with an empty last chunk", async () => {
    const { env, agent, origin } = await setup(transport, "scan")
    origin.plan = { parts: ["one-", "two"], between: () => seenChunks(agent, 1) }
    const r = await fetchParts(env)
    expect(r).toMatchObject({ status: 200, body: "one-two", complete: true })
    // the agent's lines come over its stdout, which may trail the response the client got
    await eventually(() => chunks(agent).at(-1)?.is_last === true, 10_000, "the last chunk's line from the agent")
    const seen = chunks(agent)
    expect(seen.at(-1)).toMatchObject({ is_last: true, size: 0, bytes: 7, total_size: null })
    expect(seen.slice(0, -1).every((c) => c.is_last === false)).toBe(true)
  })

  it("an early decision (allow without needs_more) settles the agent: the rest streams without it", async () => {
    const { env, agent, origin } = await setup(transport, "settle")
    origin.plan = { parts: ["first-", "second-", "third"], between: () => new Promise((r) => setTimeout(r, 30)) }
    const r = await fetchParts(env)
    expect(r).toMatchObject({ status: 200, body: "first-second-third", complete: true })
    expect(chunks(agent).map((c) => c.chunk_index)).toEqual([0])
  })

  it("a block at the first chunk, before anything was written, is a clean answer (the agent's status and body)", async () => {
    const { env, origin } = await setup(transport, "scan")
    origin.plan = { parts: ["EVIL-start", "-rest"] }
    const r = await fetchParts(env)
    expect(r).toMatchObject({ status: 403, body: "blocked at chunk 0", complete: true })
    await env.auditLine((l) => l.phase === "response_body" && l.decision === "block" && (l.rule_ids as Array<string>).includes("body-evil"))
  })

  it("a block mid-stream cuts the response: the client has the 200 head and the chunks passed, never the blocked one, and no complete body", async () => {
    for (const contentLength of [true, false]) {
      const { env, agent, origin } = await setup(transport, "scan", {}, { accessLog: true })
      let clientSaw = ""
      origin.plan = {
        parts: ["harmless-", "EVIL-", "never-sent"],
        contentLength,
        between: async (i) => {
          if (i === 1) await eventually(() => clientSaw === "harmless-", 10_000, "first part at the client")
          if (i === 2) await seenChunks(agent, 2)
        }
      }
      const r = await fetchParts(env, (b) => (clientSaw = b))
      expect(r.status).toBe(200)
      expect(r.body).toBe("harmless-")
      expect(r.complete).toBe(false)
      expect(chunks(agent).map((c) => c.text)).toEqual(["harmless-", "EVIL-"])
      await env.auditLine((l) => l.phase === "response_body" && l.decision === "block")
      // the access line: the status the client got, and why it was cut (not a client that left)
      const accessFile = path.join(env.dir, "access.log")
      let line: Record<string, unknown> | undefined
      await eventually(() => (line = readLines(accessFile).find((l) => l.path === "/parts")) !== undefined, 5000, "access line")
      expect(line).toMatchObject({ status: 200, error: "agent-block" })
      await env.close()
    }
  })

  it("needs_more with a block is not final: the response passes", async () => {
    const { env, agent, origin } = await setup(transport, "soft-block")
    origin.plan = { parts: ["a-", "b-", "c"], contentLength: true, between: (i) => seenChunks(agent, i) }
    const r = await fetchParts(env)
    expect(r).toMatchObject({ status: 200, body: "a-b-c", complete: true })
    expect(chunks(agent)).toHaveLength(3)
  })

  it("chunk-timeout-ms bounds each chunk (not timeout-ms): closed = 504 before the head, a cut after it", async () => {
    const first = await setup(transport, "hang", { timeoutMs: 10_000, chunkTimeoutMs: 200 })
    first.origin.plan = { parts: ["only"] }
    const started = Date.now()
    const r = await fetchParts(first.env)
    expect(r.status).toBe(504)
    expect(Date.now() - started).toBeLessThan(3000)
    await first.env.auditLine((l) => l.phase === "response_body" && l.decision === "fail-closed" && l.result === "timeout")
    await first.env.close()

    const later = await setup(transport, "hang-at:1", { timeoutMs: 10_000, chunkTimeoutMs: 200 })
    later.origin.plan = { parts: ["passed-", "stuck-", "rest"], between: (i) => seenChunks(later.agent, i) }
    const cut = await fetchParts(later.env)
    expect(cut).toMatchObject({ status: 200, body: "passed-", complete: false })
  })

  it("an agent that hangs, fail-open: the whole response passes, the failure audited", async () => {
    const { env, agent, origin } = await setup(transport, "hang", { failureMode: "open", chunkTimeoutMs: 150 })
    origin.plan = { parts: ["x-", "y-", "z"], contentLength: true }
    const r = await fetchParts(env)
    expect(r).toMatchObject({ status: 200, body: "x-y-z", complete: true })
    // failed once, then skipped for the rest of the body
    expect(chunks(agent)).toHaveLength(1)
    await env.auditLine((l) => l.phase === "response_body" && l.action === "fail-open")
  })

  it("the agent's body cap: fail-closed answers 413 when it is passed before the head went out; fail-open skips the agent", async () => {
    const closed = await setup(transport, "scan", { maxResponseBodyBytes: 8 })
    closed.origin.plan = { parts: ["0123456789abcdef"] }
    expect(await fetchParts(closed.env)).toMatchObject({ status: 413, complete: true })
    expect(chunks(closed.agent)).toHaveLength(0)
    await closed.env.close()

    const open = await setup(transport, "scan", { maxResponseBodyBytes: 8, failureMode: "open" })
    open.origin.plan = { parts: ["0123", "4567", "89ab-EVIL"], between: (i) => seenChunks(open.agent, i) }
    const r = await fetchParts(open.env)
    expect(r).toMatchObject({ status: 200, body: "012345678" + "9ab-EVIL", complete: true })
    expect(chunks(open.agent).map((c) => c.text)).toEqual(["0123", "4567"])
  })
})

describe("response-body-mode stream: the client's view", () => {
  it("an HTTP/1.0 client of a body of unknown size could not tell a cut: it gets nothing until the agent is done (a block stays a clean 403)", async () => {
    const { env, agent, origin } = await setup("uds", "scan")
    origin.plan = { parts: ["harmless-", "EVIL-", "rest"], between: (i) => seenChunks(agent, i) }
    const r = await fetchParts(env, undefined, "1.0")
    expect(r.status).toBe(403)
    expect(r.body).toBe("blocked at chunk 1")
    expect(r.complete).toBe(true)
    // and a clean body arrives whole
    origin.plan = { parts: ["harmless-", "still-fine"], between: () => new Promise((res) => setTimeout(res, 20)) }
    expect(await fetchParts(env, undefined, "1.0")).toMatchObject({ status: 200, body: "harmless-still-fine" })
  })

  it("a response_headers agent decides the head first; the stream-mode agent then sees the body", async () => {
    const dir = socketDir()
    const raw = await spawnRawAgent(path.join(dir, "h.sock"), ["--mode", "add-header"])
    const { env, agent, origin } = await setup("uds", "scan", {}, {
      others: [{ id: "h", socketPath: path.join(dir, "h.sock"), events: ["response_headers"], failureMode: "closed" }]
    })
    origin.plan = { parts: ["p1-", "p2"], contentLength: true, between: () => seenChunks(agent, 1) }
    const r = await fetchParts(env)
    expect(r).toMatchObject({ status: 200, body: "p1-p2", complete: true })
    expect(r.headers["x-raw-agent-response"]).toBe("seen")
    await raw.waitFor((l) => l.event === "frame" && l.type === 0x12)
    expect(chunks(agent)).toHaveLength(2)
  })

  it("buffer-mode agents beside a stream-mode one get the held body after the stream agent passed it; their mutation is what the client gets", async () => {
    const dir = socketDir()
    const raw = await spawnRawAgent(path.join(dir, "m.sock"), ["--mode", "replace-body"])
    const { env, agent, origin } = await setup("uds", "scan", {}, {
      others: [{ id: "m", socketPath: path.join(dir, "m.sock"), events: ["response_body"], failureMode: "closed" }]
    })
    origin.plan = { parts: ["orig-", "inal"], between: () => seenChunks(agent, 1) }
    const r = await fetchParts(env)
    expect(r).toMatchObject({ status: 200, body: "replaced by rawAgent", complete: true })
    expect(chunks(agent).map((c) => c.text)).toEqual(["orig-", "inal", ""])
    const frame = await raw.waitFor((l) => l.event === "frame" && l.type === 0x13)
    expect(Buffer.from(frame.payload.data, "base64").toString()).toBe("orig-inal")
  })
})
