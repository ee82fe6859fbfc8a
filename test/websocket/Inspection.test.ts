/**
 * Frame inspection by agents: a real agent process (test/support/rawAgent.mjs, which decides
 * by the frame's text) on a Unix socket, a `ws` client and origin through the proxy.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import * as Duration from "effect/Duration"
import { WebSocket } from "ws"
import { jsonLines, metricSum, openProxy, type ProxyHandle } from "../support/proxy.js"
import { socketDir, spawnRawAgent, stopAllAgents } from "../agents/rawAgentHarness.js"
import { closed, connectWs, nextMessage, sleep, startWsOrigin, until, wsConfig, type WsOrigin } from "./support.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
  await stopAllAgents()
})

interface Env {
  readonly proxy: ProxyHandle
  readonly origin: WsOrigin
  readonly agent: Awaited<ReturnType<typeof spawnRawAgent>>
  readonly audit: string
}

const start = async (options: { failureMode?: "open" | "closed"; timeoutMs?: number; inspection?: boolean; deflate?: boolean } = {}): Promise<Env> => {
  const dir = socketDir()
  const socket = path.join(dir, "ws.sock")
  const agent = await spawnRawAgent(socket)
  const origin = await startWsOrigin(undefined, { perMessageDeflate: options.deflate ?? false })
  cleanups.push(origin.close)
  const audit = path.join(dir, "audit.log")
  const config = wsConfig(
    origin.port,
    { websocket: true, websocketInspection: options.inspection ?? true, filters: ["inspect"] },
    {
      system: { gracefulShutdownTimeout: Duration.millis(200) },
      agents: [{ id: "raw", socketPath: socket, events: ["websocket_frame"], timeoutMs: options.timeoutMs ?? 5000, reconnectBaseMs: 20 }],
      filters: [{ id: "inspect", type: "agent", agent: "raw", failureMode: options.failureMode ?? "closed" }],
      observability: { logging: { accessLog: { enabled: false }, auditLog: { enabled: true, file: audit } } }
    }
  )
  const { proxy, close } = await openProxy(config)
  cleanups.push(close)
  await agent.waitFor((l) => l.event === "handshake")
  // the agent logs the handshake when it gets it: the proxy has the answer a moment later
  // (a frame before that fails as "not connected": 1011 on a loaded machine)
  await until(() => proxy.agentStatus().every((a) => a.client.ready > 0), "agent connected")
  return { proxy, origin, agent, audit }
}

const client = async (env: Env, options: ConstructorParameters<typeof WebSocket>[2] = {}) => {
  const ws = await connectWs(env.proxy.port, "/", options)
  cleanups.push(async () => ws.terminate())
  return ws
}

describe("WebSocket frame inspection", () => {
  it("every frame goes to the agent in order, both directions, with Sentinel's event fields", async () => {
    const env = await start()
    const ws = await client(env)
    ws.send("one")
    expect((await nextMessage(ws)).data.toString()).toBe("one")
    ws.send(Buffer.from([1, 2, 3]), { binary: true })
    await nextMessage(ws)
    ws.send("frag-", { fin: false })
    ws.send("end", { fin: true })
    expect((await nextMessage(ws)).data.toString()).toBe("frag-end")
    const frames = env.agent.lines.filter((l) => l.event === "ws_frame")
    const up = frames.filter((f) => f.client_to_server)
    expect(up.map((f) => [f.opcode, f.frame_index, f.fin, f.text])).toEqual([
      ["text", 0, true, "one"],
      ["binary", 1, true, "\u0001\u0002\u0003"],
      ["text", 2, false, "frag-"],
      ["continuation", 3, true, "end"]
    ])
    await until(() => env.agent.lines.filter((l) => l.event === "ws_frame" && !l.client_to_server).length === 3, "server frames")
    const down = env.agent.lines.filter((l) => l.event === "ws_frame" && !l.client_to_server)
    expect(down.map((f) => [f.opcode, f.frame_index, f.text])).toEqual([
      ["text", 0, "one"],
      ["binary", 1, "\u0001\u0002\u0003"],
      ["text", 2, "frag-end"]
    ])
    expect(up[0]).toMatchObject({ route_id: "r", client_ip: "127.0.0.1" })
    // the correlation id is the handshake's trace id, the same on every frame
    expect(new Set(frames.map((f) => f.correlation_id)).size).toBe(1)
    ws.close(1000)
    await closed(ws)
  })

  it("drop discards a frame (the next ones pass); close sends the agent's code both ways", async () => {
    const env = await start()
    const ws = await client(env)
    ws.send("drop me")
    ws.send("keep me")
    expect((await nextMessage(ws)).data.toString()).toBe("keep me")
    expect(await metricSum(env.proxy, "sentinel_websocket_frames_total", { direction: "client_to_server", decision: "drop" })).toBe(1)
    ws.send("close now")
    expect(await closed(ws)).toEqual({ code: 4000, reason: "agent says no" })
    await until(() => env.origin.closes.length === 1, "origin close")
    expect(env.origin.closes[0]).toEqual({ code: 4000, reason: "agent says no" })
    expect(await metricSum(env.proxy, "sentinel_websocket_closes_total", { reason: "agent_close" })).toBe(1)
    await until(() => jsonLines(env.audit).some((l) => l.phase === "websocket_frame" && l.result === "close"), "audit close")
    expect(jsonLines(env.audit).some((l) => l.phase === "websocket_frame" && l.result === "drop")).toBe(true)
  })

  it("a plain block answer (no websocket_decision) closes with 1008, never allows", async () => {
    const env = await start()
    const ws = await client(env)
    ws.send("block this")
    expect((await closed(ws)).code).toBe(1008)
  })

  it("an agent that hangs: failure mode closed closes the tunnel with 1011 after the timeout", async () => {
    const env = await start({ failureMode: "closed", timeoutMs: 300 })
    const ws = await client(env)
    const t0 = Date.now()
    ws.send("hang forever")
    const c = await closed(ws)
    expect(c.code).toBe(1011)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    expect(await metricSum(env.proxy, "sentinel_agent_timeouts_total", { event: "websocket_frame" })).toBe(1)
    expect(await metricSum(env.proxy, "sentinel_websocket_closes_total", { reason: "agent_failure" })).toBe(1)
  })

  it("an agent that hangs: failure mode open lets the frame pass after the timeout, in order", async () => {
    const env = await start({ failureMode: "open", timeoutMs: 200 })
    const ws = await client(env)
    ws.send("hang a bit")
    ws.send("after it")
    expect((await nextMessage(ws)).data.toString()).toBe("hang a bit")
    expect((await nextMessage(ws)).data.toString()).toBe("after it")
    expect(await metricSum(env.proxy, "sentinel_agent_fail_open_total", { agent: "raw" })).toBeGreaterThanOrEqual(1)
    ws.close()
    await closed(ws)
  })

  it("Sec-WebSocket-Extensions is removed upstream when inspecting: no compressed frames, even when both sides would deflate", async () => {
    const env = await start({ deflate: true })
    const ws = await client(env, { perMessageDeflate: true })
    expect(ws.extensions).toBe("")
    expect(env.origin.handshakes[0]["sec-websocket-extensions"]).toBeUndefined()
    ws.send("plain text please")
    expect((await nextMessage(ws)).data.toString()).toBe("plain text please")
    const f = env.agent.lines.find((l) => l.event === "ws_frame")
    expect(f?.text).toBe("plain text please")
    ws.close()
    await closed(ws)
  })

  it("without inspection the extensions pass and deflate works end to end", async () => {
    const env = await start({ deflate: true, inspection: false })
    const ws = await client(env, { perMessageDeflate: true })
    expect(ws.extensions).toContain("permessage-deflate")
    ws.send("x".repeat(5000))
    expect((await nextMessage(ws)).data.toString()).toBe("x".repeat(5000))
    await sleep(50)
    expect(env.agent.lines.filter((l) => l.event === "ws_frame")).toEqual([])
    ws.close()
    await closed(ws)
  })

  it("a message over websocket-max-message-size (fragmented) closes with 1009 when inspecting", async () => {
    const dir = socketDir()
    const socket = path.join(dir, "ws.sock")
    const agent = await spawnRawAgent(socket)
    const origin = await startWsOrigin()
    cleanups.push(origin.close)
    const { proxy, close } = await openProxy(
      wsConfig(origin.port, { websocket: true, websocketInspection: true, filters: ["inspect"] }, {
        system: { gracefulShutdownTimeout: Duration.millis(200) },
        limits: { websocketMaxMessageSize: 1000 },
        agents: [{ id: "raw", socketPath: socket, events: ["websocket_frame"] }],
        filters: [{ id: "inspect", type: "agent", agent: "raw" }]
      })
    )
    cleanups.push(close)
    await agent.waitFor((l) => l.event === "handshake")
    const ws = await connectWs(proxy.port)
    cleanups.push(async () => ws.terminate())
    ws.send("a".repeat(600), { fin: false })
    ws.send("b".repeat(600), { fin: true })
    expect((await closed(ws)).code).toBe(1009)
    expect(fs.existsSync(socket)).toBe(true)
  })
})

describe("WebSocket handshakes and the route's request stages", () => {
  it("a request-header agent's block answers the handshake with its status; the upstream never sees it", async () => {
    const dir = socketDir()
    const socket = path.join(dir, "block.sock")
    const agent = await spawnRawAgent(socket, ["--mode", "block", "--status", "451"])
    const origin = await startWsOrigin()
    cleanups.push(origin.close)
    const { proxy, close } = await openProxy(
      wsConfig(origin.port, { websocket: true, filters: ["gate"] }, {
        system: { gracefulShutdownTimeout: Duration.millis(200) },
        agents: [{ id: "gate", socketPath: socket, events: ["request_headers"] }],
        filters: [{ id: "gate", type: "agent", agent: "gate", failureMode: "closed" }]
      })
    )
    cleanups.push(close)
    await agent.waitFor((l) => l.event === "handshake")
    // the agent answers (a plain request is blocked too) before the handshake is tried
    await until(async () => (await fetch(`${proxy.url}/`)).status === 451, "agent ready")
    const err = (await connectWs(proxy.port).catch((e) => e)) as { status: number; body: string; headers: Record<string, string> }
    expect(err.status).toBe(451)
    expect(err.body).toBe("blocked by rawAgent")
    expect(err.headers["x-blocked-by"]).toBe("raw-agent")
    expect(origin.handshakes).toEqual([])
    const seen = await agent.waitFor((l) => l.event === "frame" && l.type === 0x10 && l.payload.headers["sec-websocket-key"] !== undefined)
    // the agent saw the handshake's headers as they go upstream (Upgrade is hop-by-hop)
    expect(seen.payload.headers["sec-websocket-key"]).toBeDefined()
  })

  it("a reload leaves an open tunnel on its configuration; new handshakes get the new one", async () => {
    const origin = await startWsOrigin()
    cleanups.push(origin.close)
    const config = wsConfig(origin.port, { websocket: true }, { system: { gracefulShutdownTimeout: Duration.millis(200) } })
    const { proxy, close } = await openProxy(config)
    cleanups.push(close)
    const ws = await connectWs(proxy.port)
    cleanups.push(async () => ws.terminate())
    const { Effect } = await import("effect")
    await Effect.runPromise(proxy.reload(wsConfig(origin.port, { websocket: false }, { system: { gracefulShutdownTimeout: Duration.millis(200) } })))
    ws.send("still here")
    expect((await nextMessage(ws)).data.toString()).toBe("still here")
    const err = (await connectWs(proxy.port).catch((e) => e)) as { status: number }
    expect(err.status).toBe(403)
    ws.close()
    await closed(ws)
  })
})
