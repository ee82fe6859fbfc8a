/**
 * WebSocket tunnels end to end: a real `ws` client and `ws` origin through the proxy (HTTP/1.1
 * upgrade), and raw sockets for what a library would never send.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as http from "node:http"
import * as net from "node:net"
import { once } from "node:events"
import { afterEach, describe, expect, it } from "vitest"
import * as Duration from "effect/Duration"
import { WebSocket } from "ws"
import { Opcode } from "../../src/websocket/Frame.js"
import { encodeClose, encodeFrame } from "../../src/websocket/FrameEncode.js"
import { acceptKey } from "../../src/websocket/Handshake.js"
import { jsonLines, metricSum, openProxy, type ProxyHandle } from "../support/proxy.js"
import {
  closed,
  connectWs,
  echo,
  handshake,
  KEY,
  nextMessage,
  rawSocket,
  sleep,
  startWsOrigin,
  until,
  wsConfig,
  type WsOrigin
} from "./support.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
})

const origin = async (...args: Parameters<typeof startWsOrigin>): Promise<WsOrigin> => {
  const o = await startWsOrigin(...args)
  cleanups.push(o.close)
  return o
}

const proxyFor = async (config: Parameters<typeof openProxy>[0]): Promise<ProxyHandle> => {
  const p = await openProxy(config)
  cleanups.push(p.close)
  return p.proxy
}

const client = async (port: number, p = "/", options: Parameters<typeof connectWs>[2] = {}): Promise<WebSocket> => {
  const ws = await connectWs(port, p, options)
  cleanups.push(async () => ws.terminate())
  return ws
}

const short = { system: { gracefulShutdownTimeout: Duration.millis(200) } }

describe("WebSocket tunnels: messages both ways", () => {
  it("text, binary, fragmented messages and ping/pong pass unchanged", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const ws = await client(proxy.port)
    ws.send("hello")
    expect((await nextMessage(ws)).data.toString()).toBe("hello")
    const bin = Buffer.from([0, 1, 2, 255, 254])
    ws.send(bin, { binary: true })
    const m = await nextMessage(ws)
    expect(m.binary).toBe(true)
    expect(m.data).toEqual(bin)
    // a fragmented message: three frames, one message at the far end
    ws.send("frag-", { fin: false })
    ws.send("ment-", { fin: false })
    ws.send("ed", { fin: true })
    expect((await nextMessage(ws)).data.toString()).toBe("frag-ment-ed")
    const pong = new Promise<Buffer>((r) => ws.once("pong", (d: Buffer) => r(d)))
    ws.ping(Buffer.from("are you there"))
    expect((await pong).toString()).toBe("are you there")
    // the origin pings the client too
    const pinged = new Promise<Buffer>((r) => ws.once("ping", (d: Buffer) => r(d)))
    o.sockets[0].ping(Buffer.from("origin ping"))
    expect((await pinged).toString()).toBe("origin ping")
    ws.close(1000, "done")
    expect(await closed(ws)).toEqual({ code: 1000, reason: "done" })
  })

  it("a close from the client reaches the origin with its code, and one from the origin reaches the client", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const a = await client(proxy.port)
    a.close(4123, "client says bye")
    expect(await closed(a)).toEqual({ code: 4123, reason: "client says bye" })
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0]).toEqual({ code: 4123, reason: "client says bye" })

    const b = await client(proxy.port)
    await until(() => o.sockets.length === 2, "second origin socket")
    o.sockets[1].close(4321, "origin says bye")
    expect(await closed(b)).toEqual({ code: 4321, reason: "origin says bye" })
  })

  it("the upstream's subprotocol and headers come back in the 101; Sec-WebSocket-* go upstream", async () => {
    const o = await origin(echo, { handleProtocols: (p) => (p.has("chat.v2") ? "chat.v2" : false) })
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/chat`, ["chat.v1", "chat.v2"], { perMessageDeflate: false })
    cleanups.push(async () => ws.terminate())
    const upgrade = new Promise<http.IncomingMessage>((r) => ws.once("upgrade", r))
    await once(ws, "open")
    const res = await upgrade
    expect(ws.protocol).toBe("chat.v2")
    expect(res.headers["x-request-id"]).toMatch(/.+/)
    expect(o.handshakes[0]["sec-websocket-protocol"]).toBe("chat.v1,chat.v2")
    expect(o.handshakes[0]["x-forwarded-for"]).toBe("127.0.0.1")
    expect(o.handshakes[0]["x-request-id"]).toBe(res.headers["x-request-id"])
    ws.close()
    await closed(ws)
  })

  it("a 1 MiB frame passes; a larger one closes the tunnel with 1009 both ways", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const ws = await client(proxy.port)
    const mib = Buffer.alloc(1024 * 1024, 7)
    ws.send(mib, { binary: true })
    expect((await nextMessage(ws)).data.length).toBe(mib.length)
    ws.send(Buffer.alloc(1024 * 1024 + 1, 8), { binary: true })
    const c = await closed(ws)
    expect(c.code).toBe(1009)
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0].code).toBe(1009)
    await until(async () => (await metricSum(proxy, "sentinel_websocket_closes_total", { reason: "too_big" })) === 1, "close metric")
  })

  it("metrics: connections, the active gauge, frames and bytes by direction", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const ws = await client(proxy.port)
    expect(await metricSum(proxy, "sentinel_websocket_connections_total", { route: "r" })).toBe(1)
    expect(await metricSum(proxy, "sentinel_websocket_connections_active")).toBe(1)
    for (let i = 0; i < 5; i++) {
      ws.send(`m${i}`)
      await nextMessage(ws)
    }
    ws.close(1000)
    await closed(ws)
    await until(async () => (await metricSum(proxy, "sentinel_websocket_connections_active")) === 0, "gauge back to 0")
    // 5 messages and the close frame each way
    expect(await metricSum(proxy, "sentinel_websocket_frames_total", { direction: "client_to_server", decision: "allow" })).toBe(6)
    expect(await metricSum(proxy, "sentinel_websocket_frames_total", { direction: "server_to_client", decision: "allow" })).toBe(6)
    expect(await metricSum(proxy, "sentinel_websocket_bytes_total", { direction: "client_to_server" })).toBeGreaterThan(5 * 8)
    expect(await metricSum(proxy, "sentinel_websocket_closes_total", { reason: "close_handshake" })).toBe(1)
  })

  it("the handshake's access line is written when the tunnel ends, with its duration, bytes, frames and close code", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ws-log-"))
    const file = path.join(dir, "access.log")
    const o = await origin()
    const proxy = await proxyFor(
      wsConfig(o.port, { websocket: true }, { ...short, observability: { logging: { accessLog: { enabled: true, file, flushIntervalMs: 0 } } } })
    )
    const ws = await client(proxy.port, "/live?x=1")
    ws.send("abc")
    await nextMessage(ws)
    await sleep(100)
    expect(jsonLines(file)).toEqual([])
    ws.close(1000, "bye")
    await closed(ws)
    await until(() => jsonLines(file).length === 1, "access line")
    const line = jsonLines(file)[0] as Record<string, any>
    expect(line).toMatchObject({ method: "GET", path: "/live", status: 101, route_id: "r", upstream: "ws" })
    expect(line.duration_ms).toBeGreaterThanOrEqual(100)
    expect(line.websocket).toMatchObject({ frames_from_client: 2, frames_from_upstream: 2, close_code: 1000, close_reason: "bye", closed_by: "client", end_reason: "close_handshake" })
    expect(line.websocket.bytes_from_client).toBeGreaterThan(0)
    expect(line.body_bytes_sent).toBe(line.websocket.bytes_to_client)
  })
})

describe("WebSocket tunnels: failures on either side", () => {
  it("an upstream that refuses the upgrade has its answer relayed as a normal response", async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(401, { "content-type": "text/plain", "www-authenticate": "Bearer" })
      res.end("no token")
    })
    server.listen(0, "127.0.0.1")
    await once(server, "listening")
    cleanups.push(() => new Promise((r) => server.close(() => r())))
    const proxy = await proxyFor(wsConfig((server.address() as net.AddressInfo).port, { websocket: true }, short))
    const err = (await connectWs(proxy.port).catch((e) => e)) as { status: number; headers: http.IncomingHttpHeaders; body: string }
    expect(err.status).toBe(401)
    expect(err.headers["www-authenticate"]).toBe("Bearer")
    expect(err.headers["connection"]).toBe("close")
    expect(err.body).toBe("no token")
  })

  it("an upstream that is down answers 502 and the handshake never becomes a tunnel", async () => {
    const s = net.createServer()
    s.listen(0, "127.0.0.1")
    await once(s, "listening")
    const port = (s.address() as net.AddressInfo).port
    await new Promise((r) => s.close(r))
    const proxy = await proxyFor(wsConfig(port, { websocket: true }, short))
    const err = (await connectWs(proxy.port).catch((e) => e)) as { status: number }
    expect(err.status).toBe(502)
    expect(await metricSum(proxy, "sentinel_websocket_connections_total")).toBe(0)
  })

  it("an upstream whose 101 does not fit the key gets 502", async () => {
    const s = net.createServer((socket) => {
      socket.once("data", () =>
        socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm9wZQ==\r\n\r\n")
      )
    })
    s.listen(0, "127.0.0.1")
    await once(s, "listening")
    cleanups.push(() => new Promise((r) => s.close(() => r())))
    const proxy = await proxyFor(wsConfig((s.address() as net.AddressInfo).port, { websocket: true }, short))
    const err = (await connectWs(proxy.port).catch((e) => e)) as { status: number; body: string }
    expect(err.status).toBe(502)
  })

  it("a client leaving during the handshake aborts the upstream's (hanging) handshake and frees its slot", async () => {
    const upstreamClosed: Array<boolean> = []
    const s = net.createServer((socket) => {
      socket.on("error", () => undefined)
      socket.on("close", () => upstreamClosed.push(true))
      // read (and ignore) the handshake: a FIN from the proxy is then noticed
      socket.resume()
    })
    s.listen(0, "127.0.0.1")
    await once(s, "listening")
    cleanups.push(() => new Promise((r) => s.close(() => r())))
    const proxy = await proxyFor(
      wsConfig((s.address() as net.AddressInfo).port, { websocket: true }, { ...short, limits: { maxWebsocketTunnelsPerClient: 1 } })
    )
    const raw = await rawSocket(proxy.port)
    raw.socket.write(handshake())
    await sleep(100)
    raw.socket.destroy()
    await until(() => upstreamClosed.length >= 1, "upstream handshake aborted")
    // the slot is free again: a second handshake is not refused for the limit (it hangs upstream, then we leave)
    const again = await rawSocket(proxy.port)
    again.socket.write(handshake())
    await sleep(150)
    expect(again.received().toString()).not.toContain("503")
    again.socket.destroy()
  })

  it("an upstream dying mid-tunnel closes the client (1011)", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const ws = await client(proxy.port)
    ws.send("x")
    await nextMessage(ws)
    o.sockets[0].terminate()
    const c = await closed(ws)
    expect(c.code).toBe(1011)
    await until(async () => (await metricSum(proxy, "sentinel_websocket_closes_total", { reason: "upstream_gone" })) === 1, "metric")
  })

  it("a client vanishing mid-tunnel closes the upstream socket (1001 on the way)", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const ws = await client(proxy.port)
    ws.send("x")
    await nextMessage(ws)
    ws.terminate()
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0].code).toBe(1001)
    await until(async () => (await metricSum(proxy, "sentinel_websocket_connections_active")) === 0, "gauge")
  })

  it("back-pressure: a client that does not read pauses the origin; the proxy holds a bounded amount", async () => {
    let sent = 0
    let paused = false
    const o = await origin((ws) => {
      const chunk = Buffer.alloc(64 * 1024, 1)
      const pump = () => {
        // ws buffers what the socket does not take: stop once it holds 4 MiB
        while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 4 * 1024 * 1024 && sent < 256 * 1024 * 1024) {
          ws.send(chunk, { binary: true })
          sent += chunk.length
        }
        if (ws.readyState === WebSocket.OPEN && sent < 256 * 1024 * 1024) {
          paused = true
          setTimeout(pump, 20)
        }
      }
      ws.on("message", () => pump())
    })
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    // a raw client that completes the handshake, asks for the flood, then stops reading
    const raw = await rawSocket(proxy.port)
    raw.socket.write(handshake())
    await until(() => raw.received().includes("\r\n\r\n"), "101")
    raw.socket.pause()
    raw.socket.write(encodeFrame({ opcode: Opcode.Text, payload: Buffer.from("go"), mask: Buffer.from([1, 2, 3, 4]) }))
    await until(() => paused, "origin blocked")
    await sleep(500)
    const at = sent
    await sleep(500)
    // the origin cannot get rid of more: kernel buffers, the proxy's socket buffers and the origin's own 4 MiB
    expect(sent - at).toBeLessThan(1024 * 1024)
    expect(sent).toBeLessThan(40 * 1024 * 1024)
    // reading again lets it flow
    raw.socket.resume()
    await until(() => sent > at + 8 * 1024 * 1024, "flowing again", 10_000)
    raw.socket.destroy()
  })
})

describe("WebSocket handshakes refused", () => {
  it("403 on a route without websocket, audited and counted, never reaching the upstream", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ws-audit-"))
    const file = path.join(dir, "audit.log")
    const o = await origin()
    const proxy = await proxyFor(
      wsConfig(o.port, {}, { ...short, observability: { logging: { accessLog: { enabled: false }, auditLog: { enabled: true, file } } } })
    )
    const err = (await connectWs(proxy.port).catch((e) => e)) as { status: number; body: string }
    expect(err.status).toBe(403)
    expect(JSON.parse(err.body)).toMatchObject({ reason: "websocket_not_enabled" })
    expect(o.handshakes).toEqual([])
    expect(await metricSum(proxy, "sentinel_rejected_requests_total", { reason: "websocket_not_enabled" })).toBe(1)
    await until(() => jsonLines(file).length === 1, "audit line")
    expect(jsonLines(file)[0]).toMatchObject({ event_type: "websocket_refused", decision: "block", status: 403, route_id: "r" })
    // plain requests on that route still work
    const res = await fetch(`${proxy.url}/`)
    expect(await res.text()).toBe("plain http")
  })

  const rawCases: ReadonlyArray<readonly [string, string, number, string]> = [
    ["not GET", handshake("/").replace("GET", "POST"), 400, "websocket_method_not_get"],
    ["no key", handshake("/", [], ["Host: x", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]), 400, "websocket_invalid_key"],
    ["a key that is not 16 bytes", handshake("/", [], ["Host: x", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: c2hvcnQ=", "Sec-WebSocket-Version: 13"]), 400, "websocket_invalid_key"],
    ["version 8", handshake("/", [], ["Host: x", "Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Key: ${KEY}`, "Sec-WebSocket-Version: 8"]), 426, "websocket_unsupported_version"],
    ["no version", handshake("/", [], ["Host: x", "Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Key: ${KEY}`]), 426, "websocket_unsupported_version"],
    ["Connection without upgrade", handshake("/", [], ["Host: x", "Upgrade: websocket", "Connection: keep-alive", `Sec-WebSocket-Key: ${KEY}`, "Sec-WebSocket-Version: 13"]), 400, "websocket_connection_not_upgrade"],
    ["HTTP/1.0", handshake("/").replace("HTTP/1.1", "HTTP/1.0"), 400, "websocket_http_version"],
    ["a body", handshake("/", ["Content-Length: 5"]) + "hello", 400, "websocket_request_body"]
  ]

  for (const [what, request, status, reason] of rawCases) {
    it(`raw handshake with ${what}: ${status} ${reason}`, async () => {
      const o = await origin()
      const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
      const raw = await rawSocket(proxy.port)
      raw.socket.write(request)
      await until(() => raw.received().includes("\r\n\r\n"), "answer")
      const text = raw.received().toString()
      expect(text.startsWith(`HTTP/1.1 ${status} `)).toBe(true)
      expect(text).toContain(reason)
      if (status === 426) expect(text.toLowerCase()).toContain("sec-websocket-version: 13")
      expect(o.handshakes).toEqual([])
      raw.socket.destroy()
    })
  }

  it("h2c upgrades stay ordinary requests (Upgrade removed as hop-by-hop)", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const raw = await rawSocket(proxy.port)
    raw.socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    await until(() => raw.received().includes("plain http"), "plain answer")
    expect(raw.received().toString().startsWith("HTTP/1.1 200 ")).toBe(true)
    raw.socket.destroy()
  })

  it("tunnels per client IP past the limit get 503", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, { ...short, limits: { maxWebsocketTunnelsPerClient: 2 } }))
    const a = await client(proxy.port)
    const b = await client(proxy.port)
    const err = (await connectWs(proxy.port).catch((e) => e)) as { status: number; body: string }
    expect(err.status).toBe(503)
    expect(err.body).toContain("websocket_tunnels_per_client")
    a.close()
    await closed(a)
    await until(async () => (await metricSum(proxy, "sentinel_websocket_connections_active")) === 1, "one left")
    const c = await client(proxy.port)
    c.send("ok")
    expect((await nextMessage(c)).data.toString()).toBe("ok")
    b.terminate()
  })
})

describe("WebSocket framing rules (raw client frames)", () => {
  const mask = Buffer.from([9, 8, 7, 6])
  const cases: ReadonlyArray<readonly [string, Buffer, number]> = [
    ["an unmasked frame", encodeFrame({ opcode: Opcode.Text, payload: Buffer.from("hi") }), 1002],
    ["RSV1 without an extension", encodeFrame({ opcode: Opcode.Text, rsv: 0x40, payload: Buffer.from("hi"), mask }), 1002],
    ["a reserved opcode", encodeFrame({ opcode: 0x3, payload: Buffer.from("hi"), mask }), 1002],
    ["a control frame over 125 bytes", encodeFrame({ opcode: Opcode.Ping, payload: Buffer.alloc(126), mask }), 1002],
    ["a fragmented control frame", encodeFrame({ opcode: Opcode.Ping, fin: false, payload: Buffer.from("p"), mask }), 1002],
    ["a continuation outside a message", encodeFrame({ opcode: Opcode.Continuation, payload: Buffer.from("c"), mask }), 1002],
    ["an invalid close code", encodeFrame({ opcode: Opcode.Close, payload: Buffer.from([0x03, 0xed]), mask }), 1002]
  ]
  for (const [what, frame, code] of cases) {
    it(`${what} closes the tunnel with ${code}`, async () => {
      const o = await origin()
      const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
      const raw = await rawSocket(proxy.port)
      raw.socket.write(handshake())
      await until(() => raw.received().includes("\r\n\r\n"), "101")
      const head = raw.received().toString("latin1")
      expect(head).toContain(acceptKey(KEY))
      const start = raw.received().length
      raw.socket.write(frame)
      await raw.ended
      const rest = raw.received().subarray(start)
      // the proxy's close frame: FIN + close opcode, unmasked, with the code
      expect(rest[0]).toBe(0x88)
      expect(rest.readUInt16BE(2)).toBe(code)
      await until(() => o.closes.length === 1, "origin close")
      expect(o.closes[0].code).toBe(code)
    })
  }

  it("a proper close frame from a raw client is relayed and answered", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, short))
    const raw = await rawSocket(proxy.port)
    raw.socket.write(handshake())
    await until(() => raw.received().includes("\r\n\r\n"), "101")
    const start = raw.received().length
    raw.socket.write(encodeClose(3001, "raw bye", Buffer.from([1, 2, 3, 4])))
    await raw.ended
    const rest = raw.received().subarray(start)
    expect(rest[0]).toBe(0x88)
    expect(rest.readUInt16BE(2)).toBe(3001)
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0]).toEqual({ code: 3001, reason: "raw bye" })
  })
})

describe("WebSocket tunnels: drain and limits over time", () => {
  it("drain: an open tunnel gets 1001 after the graceful timeout, new handshakes are refused meanwhile", async () => {
    const o = await origin()
    const { proxy, close } = await openProxy(wsConfig(o.port, { websocket: true }, { system: { gracefulShutdownTimeout: Duration.millis(600) } }))
    const ws = await connectWs(proxy.port)
    const started = Date.now()
    const draining = close()
    const c = await closed(ws)
    expect(c.code).toBe(1001)
    expect(Date.now() - started).toBeGreaterThanOrEqual(500)
    await draining
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0].code).toBe(1001)
  })

  it("a tunnel idle for websocket-idle-timeout-secs is closed with 1001", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, { ...short, limits: { websocketIdleTimeout: Duration.millis(300) } }))
    const ws = await client(proxy.port)
    const started = Date.now()
    const c = await closed(ws)
    expect(c.code).toBe(1001)
    expect(c.reason).toBe("idle timeout")
    expect(Date.now() - started).toBeLessThan(3000)
    expect(await metricSum(proxy, "sentinel_websocket_closes_total", { reason: "idle_timeout" })).toBe(1)
  })

  it("websocket-max-lifetime-secs closes a busy tunnel too", async () => {
    const o = await origin()
    const proxy = await proxyFor(wsConfig(o.port, { websocket: true }, { ...short, limits: { websocketMaxLifetime: Duration.millis(500) } }))
    const ws = await client(proxy.port)
    const timer = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("keep busy"), 50)
    cleanups.push(async () => clearInterval(timer))
    const c = await closed(ws)
    expect(c).toEqual({ code: 1001, reason: "maximum lifetime reached" })
  })
})
