/**
 * The `waf` reference agent (built, as a real process) inspecting WebSocket text frames through
 * the proxy, and the SDK's frame decisions.
 */
import * as ChildProcess from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import * as Duration from "effect/Duration"
import { frameAllow, frameClose, frameDrop } from "../../src/agents/sdk/Decision.js"
import { WebSocketTextScanner } from "../../agents/waf/Logic.js"
import { metricSum, openProxy } from "../support/proxy.js"
import { socketDir } from "../agents/rawAgentHarness.js"
import { closed, connectWs, nextMessage, startWsOrigin, until, wsConfig } from "./support.js"

const root = path.resolve(__dirname, "../..")
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
})

const startWaf = async (args: ReadonlyArray<string>): Promise<string> => {
  const socket = path.join(socketDir(), "waf.sock")
  const proc = ChildProcess.spawn(process.execPath, [path.join(root, "dist/agents-bin/waf/main.js"), "--socket", socket, ...args], { stdio: "ignore" })
  cleanups.push(async () => {
    proc.kill("SIGKILL")
  })
  await until(() => fs.existsSync(socket), "waf socket", 20_000)
  return socket
}

const env = async (args: ReadonlyArray<string> = []) => {
  const socket = await startWaf(args)
  const origin = await startWsOrigin()
  cleanups.push(origin.close)
  const { proxy, close } = await openProxy(
    wsConfig(origin.port, { websocket: true, websocketInspection: true, filters: ["waf"] }, {
      system: { gracefulShutdownTimeout: Duration.millis(200) },
      agents: [{ id: "waf", socketPath: socket, events: ["request_headers", "websocket_frame"], timeoutMs: 2000 }],
      filters: [{ id: "waf", type: "agent", agent: "waf", failureMode: "closed" }]
    })
  )
  cleanups.push(close)
  await until(async () => (await fetch(`${proxy.url}/`)).status === 200, "waf connected", 10_000)
  return { proxy, origin }
}

describe("waf agent on WebSocket frames", () => {
  it("benign text passes; an attack in a text frame closes the tunnel with 1008; binary frames are not scanned", async () => {
    const { proxy, origin } = await env()
    const ws = await connectWs(proxy.port)
    cleanups.push(async () => ws.terminate())
    ws.send("hello, how are you?")
    expect((await nextMessage(ws)).data.toString()).toBe("hello, how are you?")
    ws.send(Buffer.from("<script>alert(1)</script>"), { binary: true })
    expect((await nextMessage(ws)).data.toString()).toBe("<script>alert(1)</script>")
    ws.send("x' UNION SELECT password FROM users --")
    expect(await closed(ws)).toEqual({ code: 1008, reason: "blocked by waf" })
    await until(() => origin.closes.length === 1, "origin close")
    expect(origin.closes[0].code).toBe(1008)
    expect(await metricSum(proxy, "sentinel_agent_calls_total", { agent: "waf", event: "websocket_frame", result: "close" })).toBe(1)
  })

  it("an attack split across the fragments of a text message is still seen; --websocket-action drop drops the frame", async () => {
    const { proxy } = await env(["--websocket-action", "drop"])
    const ws = await connectWs(proxy.port)
    cleanups.push(async () => ws.terminate())
    ws.send("<scr", { fin: false })
    ws.send("ipt>steal()", { fin: true })
    ws.send("fine")
    // the first fragment passes (nothing in it yet); the second is dropped, an empty last fragment in its place
    expect((await nextMessage(ws)).data.toString()).toBe("<scr")
    expect((await nextMessage(ws)).data.toString()).toBe("fine")
    expect(await metricSum(proxy, "sentinel_websocket_frames_total", { direction: "client_to_server", decision: "drop" })).toBe(1)
    ws.terminate()
  })
})

describe("SDK frame decisions", () => {
  it("frameAllow / frameDrop / frameClose set websocket_decision; a close code an endpoint may not send is refused", () => {
    expect(frameAllow().toWire("c").websocket_decision).toBe("allow")
    expect(frameDrop().toWire("c").websocket_decision).toBe("drop")
    expect(frameClose(4001, "no").toWire("c").websocket_decision).toEqual({ close: { code: 4001, reason: "no" } })
    expect(frameClose().toWire("c")).toMatchObject({ decision: "allow", websocket_decision: { close: { code: 1008 } } })
    expect(() => frameClose(1006)).toThrow(RangeError)
  })

  it("the waf's text tracking: text and its continuations, with the previous fragment's tail; binary ignored; bounded", () => {
    const s = new WebSocketTextScanner(2)
    expect(s.frame("a", true, "binary", false, Buffer.from("x"))).toBeUndefined()
    expect(s.frame("a", true, "continuation", true, Buffer.from("x"))).toBeUndefined()
    expect(s.frame("a", true, "text", false, Buffer.from("<scr"))).toBe("<scr")
    expect(s.frame("a", false, "text", true, Buffer.from("other way"))).toBe("other way")
    expect(s.frame("a", true, "continuation", true, Buffer.from("ipt>"))).toBe("<script>")
    expect(s.tracked).toBe(0)
    for (const id of ["1", "2", "3"]) s.frame(id, true, "text", false, Buffer.from("t"))
    expect(s.tracked).toBe(2)
  })
})
