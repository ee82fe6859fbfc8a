/**
 * WebSockets over HTTP/2 (RFC 8441 extended CONNECT), end to end: node's http2 client opens a
 * stream with `:protocol websocket` on a cleartext `protocol "h2"` listener or a TLS listener
 * whose ALPN chose h2, a `ws` client speaks over that stream, and a real `ws` origin answers an
 * HTTP/1.1 upgrade made by the proxy. Raw frames (test/support/h2frames.ts) for what node's
 * client refuses to send.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as http2 from "node:http2"
import type { AddressInfo } from "node:net"
import { once } from "node:events"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import * as Duration from "effect/Duration"
import { WebSocket } from "ws"
import { acceptKey } from "../../src/websocket/Handshake.js"
import { connectRaw, ErrorCode, headersFrame, hpackBlock, isResponse, isRst, rstCodeOf, Setting, serverSettings, statusOf } from "../support/h2frames.js"
import { standardCerts } from "../support/certs.js"
import { jsonLines, metricSum, openProxy, type ProxyHandle } from "../support/proxy.js"
import { socketDir, spawnRawAgent, stopAllAgents } from "../agents/rawAgentHarness.js"
import { closed, connectWsH2, echo, h2Session, nextMessage, sleep, startWsOrigin, until, wsConfig, type H2Refusal, type WsOrigin } from "./support.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
  await stopAllAgents()
})

let certs: ReturnType<typeof standardCerts>
let dir: string
beforeAll(() => {
  certs = standardCerts()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ws-h2-"))
})
afterAll(() => {
  certs.cleanup()
  fs.rmSync(dir, { recursive: true, force: true })
})

const origin = async (...args: Parameters<typeof startWsOrigin>): Promise<WsOrigin> => {
  const o = await startWsOrigin(...args)
  cleanups.push(o.close)
  return o
}

type Listener = "h2" | "https"

let n = 0
interface Env {
  readonly proxy: ProxyHandle
  readonly url: string
  readonly accessLog: string
  readonly audit: string
  readonly close: () => Promise<void>
}

/** A proxy with one listener (`h2` cleartext, or `https` with ALPN) in front of `o`, route `r` with `route` fields. */
const start = async (o: Pick<WsOrigin, "port">, listener: Listener, route: object = { websocket: true }, extra: Record<string, unknown> = {}): Promise<Env> => {
  const accessLog = path.join(dir, `access-${n}.log`)
  const audit = path.join(dir, `audit-${n++}.log`)
  const l =
    listener === "h2"
      ? { id: "main", address: "127.0.0.1:0", protocol: "h2" }
      : { id: "main", address: "127.0.0.1:0", protocol: "https", tls: { certFile: certs.files.default.cert, keyFile: certs.files.default.key } }
  const config = wsConfig(o.port, route, {
    listeners: [l],
    system: { gracefulShutdownTimeout: Duration.millis(200) },
    observability: {
      logging: { accessLog: { enabled: true, file: accessLog, flushIntervalMs: 0 }, auditLog: { enabled: true, file: audit } }
    },
    ...extra
  } as never)
  let closedAlready = false
  const { proxy, close } = await openProxy(config)
  const closeOnce = async () => {
    if (closedAlready) return
    closedAlready = true
    await close()
  }
  cleanups.push(closeOnce)
  return { proxy, url: `${listener === "h2" ? "http" : "https"}://127.0.0.1:${proxy.port}`, accessLog, audit, close: closeOnce }
}

const session = async (env: Env): Promise<http2.ClientHttp2Session> => {
  const s = await h2Session(env.url, env.url.startsWith("https") ? { ca: fs.readFileSync(certs.files.ca.cert), servername: "localhost" } : {})
  cleanups.push(async () => void s.destroy())
  return s
}

const tunnel = async (s: http2.ClientHttp2Session, p = "/", headers: http2.OutgoingHttpHeaders = {}) => {
  const t = await connectWsH2(s, p, headers)
  cleanups.push(async () => t.ws.terminate())
  return t
}

const refusal = async (s: http2.ClientHttp2Session, p = "/", headers: http2.OutgoingHttpHeaders = {}): Promise<H2Refusal> => {
  const e = (await connectWsH2(s, p, headers).then(
    () => new Error("expected a refusal"),
    (err) => err
  )) as H2Refusal
  if (e.status === undefined) throw e
  return e
}

describe.each<Listener>(["h2", "https"])("WebSockets over HTTP/2 (%s listener)", (listener) => {
  it("the server announces extended CONNECT; text, binary, fragmented messages and ping/pong pass; the origin gets an HTTP/1.1 upgrade with a key of the proxy's", async () => {
    const o = await origin()
    const env = await start(o, listener)
    const s = await session(env)
    expect(s.remoteSettings.enableConnectProtocol).toBe(true)
    const { ws, headers } = await tunnel(s, "/chat?room=1")
    expect(headers[":status"]).toBe(200)
    expect(headers["sec-websocket-accept"]).toBeUndefined()
    expect(headers["x-request-id"]).toMatch(/.+/)
    ws.send("hello")
    expect((await nextMessage(ws)).data.toString()).toBe("hello")
    const bin = Buffer.from([0, 1, 2, 255])
    ws.send(bin, { binary: true })
    const m = await nextMessage(ws)
    expect([m.binary, m.data]).toEqual([true, bin])
    ws.send("frag-", { fin: false })
    ws.send("ment-", { fin: false })
    ws.send("ed", { fin: true })
    expect((await nextMessage(ws)).data.toString()).toBe("frag-ment-ed")
    const pong = new Promise<Buffer>((r) => ws.once("pong", (d: Buffer) => r(d)))
    ws.ping(Buffer.from("there?"))
    expect((await pong).toString()).toBe("there?")
    // the upstream leg: GET with Upgrade, a valid key of ours, version 13, the request's path
    const h = o.handshakes[0]
    expect(h["upgrade"]).toBe("websocket")
    expect(h["sec-websocket-version"]).toBe("13")
    expect(h["sec-websocket-key"]).toMatch(/^[A-Za-z0-9+/]{21}[AQgw]==$/)
    expect(acceptKey(String(h["sec-websocket-key"]))).toMatch(/.+/)
    expect(h["x-forwarded-for"]).toBe("127.0.0.1")
    ws.close(1000, "bye")
    expect(await closed(ws)).toEqual({ code: 1000, reason: "bye" })
    await until(() => jsonLines(env.accessLog).length === 1, "access line")
    const line = jsonLines(env.accessLog)[0]
    expect(line).toMatchObject({ protocol: "HTTP/2.0", method: "GET", path: "/chat", status: 200 })
    expect(await metricSum(env.proxy, "sentinel_websocket_connections_total", { route: "r" })).toBe(1)
    await until(async () => (await metricSum(env.proxy, "sentinel_websocket_connections_active")) === 0, "gauge")
    // the session still serves plain requests
    const plain = s.request({ ":path": "/plain" }, { endStream: true })
    const status = await new Promise<number>((r) => plain.once("response", (hh) => r(Number(hh[":status"]))))
    expect(status).toBe(200)
  })

  it("close codes both ways: the client's reaches the origin, the origin's reaches the client", async () => {
    const o = await origin()
    const env = await start(o, listener)
    const s = await session(env)
    const a = await tunnel(s)
    a.ws.close(4001, "client says")
    expect(await closed(a.ws)).toEqual({ code: 4001, reason: "client says" })
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0]).toEqual({ code: 4001, reason: "client says" })
    // a second tunnel on the same session: the origin closes it
    const b = await tunnel(s)
    b.ws.send("x")
    await nextMessage(b.ws)
    o.sockets[1].close(4002, "origin says")
    expect(await closed(b.ws)).toEqual({ code: 4002, reason: "origin says" })
    // the stream ended cleanly (END_STREAM both ways, no reset)
    await until(() => b.stream.closed, "stream closed")
    expect(b.stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR)
    await until(async () => (await metricSum(env.proxy, "sentinel_websocket_closes_total", { reason: "close_handshake" })) === 2, "close metric")
  })

  it("a 1 MiB frame passes; a larger one closes the tunnel with 1009 both ways", async () => {
    const o = await origin()
    const env = await start(o, listener)
    const s = await session(env)
    const { ws } = await tunnel(s)
    const mib = Buffer.alloc(1024 * 1024, 7)
    ws.send(mib, { binary: true })
    expect((await nextMessage(ws)).data).toEqual(mib)
    ws.send(Buffer.alloc(1024 * 1024 + 1, 8), { binary: true })
    expect((await closed(ws)).code).toBe(1009)
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0].code).toBe(1009)
    await until(async () => (await metricSum(env.proxy, "sentinel_websocket_closes_total", { reason: "too_big" })) === 1, "metric")
  })

  it("the client resetting its stream closes the upstream socket (1001 on the way); the session lives on", async () => {
    const o = await origin()
    const env = await start(o, listener)
    const s = await session(env)
    const { ws, stream } = await tunnel(s)
    ws.send("x")
    await nextMessage(ws)
    stream.close(http2.constants.NGHTTP2_CANCEL)
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0].code).toBe(1001)
    await until(async () => (await metricSum(env.proxy, "sentinel_websocket_connections_active")) === 0, "gauge")
    expect(await metricSum(env.proxy, "sentinel_websocket_closes_total", { reason: "client_gone" })).toBe(1)
    const again = await tunnel(s)
    again.ws.send("still here")
    expect((await nextMessage(again.ws)).data.toString()).toBe("still here")
  })

  it("an upstream dying mid-tunnel closes the client (1011) and ends its stream", async () => {
    const o = await origin()
    const env = await start(o, listener)
    const s = await session(env)
    const { ws, stream } = await tunnel(s)
    ws.send("x")
    await nextMessage(ws)
    o.sockets[0].terminate()
    expect((await closed(ws)).code).toBe(1011)
    await until(() => stream.closed, "stream closed")
    await until(async () => (await metricSum(env.proxy, "sentinel_websocket_closes_total", { reason: "upstream_gone" })) === 1, "metric")
  })

  it("403 on a route without websocket: audited and counted, never reaching the upstream", async () => {
    const o = await origin()
    const env = await start(o, listener, {})
    const s = await session(env)
    const e = await refusal(s)
    expect(e.status).toBe(403)
    expect(JSON.parse(e.body)).toMatchObject({ reason: "websocket_not_enabled" })
    expect(o.handshakes).toEqual([])
    expect(await metricSum(env.proxy, "sentinel_rejected_requests_total", { reason: "websocket_not_enabled" })).toBe(1)
    await until(() => jsonLines(env.audit).some((l) => l.event_type === "websocket_refused"), "audit line")
    expect(jsonLines(env.audit).find((l) => l.event_type === "websocket_refused")).toMatchObject({ decision: "block", status: 403, route_id: "r" })
  })

  it("drain: an open tunnel gets 1001 after the graceful timeout", async () => {
    const o = await origin()
    const env = await start(o, listener, { websocket: true }, { system: { gracefulShutdownTimeout: Duration.millis(600) } })
    const s = await session(env)
    const { ws } = await tunnel(s)
    const started = Date.now()
    const draining = env.close()
    const c = await closed(ws)
    expect(c.code).toBe(1001)
    expect(Date.now() - started).toBeGreaterThanOrEqual(500)
    await draining
    await until(() => o.closes.length === 1, "origin close")
    expect(o.closes[0].code).toBe(1001)
  })
})

describe("WebSockets over HTTP/2: refusals and limits", () => {
  it("a version other than 13, or none, is a 400 naming version 13; the upstream never sees it", async () => {
    const o = await origin()
    const env = await start(o, "h2")
    const s = await session(env)
    for (const version of ["8", undefined]) {
      const e = await refusal(s, "/", version === undefined ? { "sec-websocket-version": undefined as never } : { "sec-websocket-version": version })
      expect(e.status).toBe(400)
      expect(e.headers["sec-websocket-version"]).toBe("13")
      expect(JSON.parse(e.body)).toMatchObject({ reason: "websocket_unsupported_version" })
    }
    expect(o.handshakes).toEqual([])
  })

  it("malformed extended CONNECTs: an empty :protocol is reset, another protocol gets 501, a plain CONNECT 405; none reaches the upstream", async () => {
    const o = await origin()
    const env = await start(o, "h2")
    const c = await connectRaw(env.proxy.port)
    cleanups.push(async () => c.destroy())
    const settings = await serverSettings(c)
    expect(settings.get(Setting.ENABLE_CONNECT_PROTOCOL)).toBe(1)
    const connect = (id: number, fields: ReadonlyArray<readonly [string, string]>) =>
      c.send(headersFrame(id, hpackBlock([[":method", "CONNECT"], ...fields]), { endStream: false }))
    const full = (protocol: string) => [[":protocol", protocol], [":scheme", "http"], [":path", "/"], [":authority", "app.example"], ["sec-websocket-version", "13"]] as const
    // an empty :protocol: nghttp2 refuses the stream
    connect(1, full(""))
    expect(rstCodeOf(await c.waitFor(isRst(1), "RST_STREAM"))).toBe(ErrorCode.PROTOCOL_ERROR)
    // a protocol the proxy does not tunnel
    connect(3, full("chat"))
    expect(statusOf((await c.waitFor(isResponse(3), "the 501")).payload)).toBe(501)
    // a plain CONNECT (no :protocol, no :path): not tunnelled
    connect(5, [[":authority", "app.example:443"]])
    expect(statusOf((await c.waitFor(isResponse(5), "the 405")).payload)).toBe(405)
    // :protocol on another method: nghttp2 refuses it
    c.send(headersFrame(7, hpackBlock([[":method", "GET"], ...full("websocket")]), { endStream: true }))
    expect(rstCodeOf(await c.waitFor(isRst(7), "RST_STREAM"))).toBe(ErrorCode.PROTOCOL_ERROR)
    expect(o.handshakes).toEqual([])
    await until(async () => (await metricSum(env.proxy, "sentinel_rejected_requests_total", { reason: "connect_protocol_unsupported" })) === 1, "501 counted")
    await until(() => jsonLines(env.accessLog).some((l) => l.status === 405), "405 logged")
  })

  it("the route's filters run on the handshake as on HTTP/1.1: a header filter edits the upstream's handshake, a rate limit refuses one (429)", async () => {
    const o = await origin()
    const env = await start(
      o,
      "h2",
      { websocket: true, filters: ["hq", "rl"] },
      {
        filters: [
          { id: "hq", type: "headers", set: [["X-Added", "by-filter"]] },
          { id: "rl", type: "rate-limit", maxRps: 1, burst: 1, key: "client-ip", onLimit: "reject" }
        ]
      }
    )
    const s = await session(env)
    const { ws } = await tunnel(s)
    expect(o.handshakes[0]["x-added"]).toBe("by-filter")
    const e = await refusal(s)
    expect(e.status).toBe(429)
    expect(o.handshakes.length).toBe(1)
    ws.send("still open")
    expect((await nextMessage(ws)).data.toString()).toBe("still open")
  })

  it("an upstream that refuses the upgrade has its answer relayed as a normal response on the stream", async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(401, { "content-type": "text/plain", "www-authenticate": "Bearer" })
      res.end("no token")
    })
    server.listen(0, "127.0.0.1")
    await once(server, "listening")
    cleanups.push(() => new Promise((r) => server.close(() => r())))
    const env = await start({ port: (server.address() as AddressInfo).port }, "h2")
    const s = await session(env)
    const e = await refusal(s)
    expect([e.status, e.headers["www-authenticate"], e.body]).toEqual([401, "Bearer", "no token"])
    expect(await metricSum(env.proxy, "sentinel_websocket_connections_total")).toBe(0)
    // the session serves on: a plain request on it reaches the same upstream
    const plain = s.request({ ":path": "/again" }, { endStream: true })
    expect(await new Promise<number>((r) => plain.once("response", (h) => r(Number(h[":status"]))))).toBe(401)
  })

  it("tunnels per client IP past the limit get 503, streams of one session or not; a closed tunnel gives its slot back", async () => {
    const o = await origin()
    const env = await start(o, "h2", { websocket: true }, { limits: { maxWebsocketTunnelsPerClient: 2 } })
    const s = await session(env)
    const a = await tunnel(s)
    await tunnel(s)
    const e = await refusal(s)
    expect(e.status).toBe(503)
    expect(JSON.parse(e.body)).toMatchObject({ reason: "websocket_tunnels_per_client" })
    a.ws.close()
    await closed(a.ws)
    await until(async () => (await metricSum(env.proxy, "sentinel_websocket_connections_active")) === 1, "one left")
    const c = await tunnel(s)
    c.ws.send("ok")
    expect((await nextMessage(c.ws)).data.toString()).toBe("ok")
  })

  it("back-pressure: a client that does not read its stream pauses the origin (HTTP/2 flow control); reading again lets it flow", async () => {
    let sent = 0
    let paused = false
    const o = await origin((ws) => {
      const chunk = Buffer.alloc(64 * 1024, 1)
      const pump = () => {
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
    const env = await start(o, "h2")
    const s = await session(env)
    const { ws } = await tunnel(s)
    ws.pause()
    ws.send("go")
    await until(() => paused, "origin blocked")
    await sleep(500)
    const at = sent
    await sleep(500)
    expect(sent - at).toBeLessThan(1024 * 1024)
    expect(sent).toBeLessThan(40 * 1024 * 1024)
    ws.resume()
    await until(() => sent > at + 8 * 1024 * 1024, "flowing again", 10_000)
  })

  it("agents over TLS h2: a request-header agent's block answers the handshake; frame inspection drops a frame, the next one passes", async () => {
    const sockDir = socketDir()
    const socket = path.join(sockDir, "ws.sock")
    const agent = await spawnRawAgent(socket)
    const o = await origin(echo)
    const env = await start(
      o,
      "https",
      { websocket: true, websocketInspection: true, filters: ["inspect"] },
      {
        agents: [{ id: "raw", socketPath: socket, events: ["request_headers", "websocket_frame"], timeoutMs: 1000, reconnectBaseMs: 20 }],
        filters: [{ id: "inspect", type: "agent", agent: "raw", failureMode: "closed" }]
      }
    )
    await agent.waitFor((l) => l.event === "handshake")
    const s = await session(env)
    // the handshake's request headers go to the agent, whose block is the answer
    const blocked = await refusal(s, "/", { "x-raw-mode": "block" })
    expect([blocked.status, blocked.headers["x-blocked-by"], blocked.body]).toEqual([403, "raw-agent", "blocked by rawAgent"])
    expect(o.handshakes).toEqual([])
    const { ws } = await tunnel(s)
    ws.send("drop me")
    ws.send("keep me")
    expect((await nextMessage(ws)).data.toString()).toBe("keep me")
    expect(await metricSum(env.proxy, "sentinel_websocket_frames_total", { direction: "client_to_server", decision: "drop" })).toBe(1)
    const seen = agent.lines.filter((l) => l.event === "ws_frame" && l.client_to_server).map((l) => l.text)
    expect(seen).toEqual(["drop me", "keep me"])
    ws.send("close now")
    expect(await closed(ws)).toEqual({ code: 4000, reason: "agent says no" })
  })
})
