/**
 * WebSocket test helpers: a `ws` origin that echoes (and records what it saw), a client
 * through the proxy, waits on events, and a proxy config with one WebSocket route.
 */
import * as net from "node:net"
import * as http from "node:http"
import * as http2 from "node:http2"
import { once } from "node:events"
import { WebSocket, WebSocketServer, type RawData } from "ws"
import { makeConfig, type SentinelConfig, type SentinelConfigInput } from "../../src/config/Schema.js"

export interface WsOrigin {
  readonly port: number
  readonly server: WebSocketServer
  readonly http: http.Server
  /** Sockets the origin accepted (open or closed). */
  readonly sockets: Array<WebSocket>
  /** Close events the origin's sockets saw: code and reason. */
  readonly closes: Array<{ readonly code: number; readonly reason: string }>
  /** The handshake requests the origin received (headers). */
  readonly handshakes: Array<http.IncomingHttpHeaders>
  readonly close: () => Promise<void>
}

export type OriginBehaviour = (ws: WebSocket, req: http.IncomingMessage) => void

/** Echoes every message back, same type; `behaviour` replaces that. */
export const echo: OriginBehaviour = (ws) => {
  ws.on("message", (data: RawData, isBinary: boolean) => ws.send(data as Buffer, { binary: isBinary }))
}

export const startWsOrigin = async (
  behaviour: OriginBehaviour = echo,
  options: { readonly perMessageDeflate?: boolean; readonly maxPayload?: number; readonly handleProtocols?: (p: Set<string>) => string | false } = {}
): Promise<WsOrigin> => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" })
    res.end("plain http")
  })
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: options.perMessageDeflate ?? false,
    maxPayload: options.maxPayload ?? 64 * 1024 * 1024,
    ...(options.handleProtocols ? { handleProtocols: options.handleProtocols } : {})
  })
  const sockets: Array<WebSocket> = []
  const closes: Array<{ code: number; reason: string }> = []
  const handshakes: Array<http.IncomingHttpHeaders> = []
  wss.on("headers", (_h, req) => handshakes.push(req.headers))
  wss.on("connection", (ws, req) => {
    sockets.push(ws)
    ws.on("error", () => undefined)
    ws.on("close", (code, reason) => closes.push({ code, reason: reason.toString() }))
    behaviour(ws, req)
  })
  server.listen(0, "127.0.0.1")
  await once(server, "listening")
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    server: wss,
    http: server,
    sockets,
    closes,
    handshakes,
    close: async () => {
      for (const s of sockets) s.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    }
  }
}

/** A config with one listener, one upstream `ws` at `port` and one route `r` with `route` fields. */
export const wsConfig = (port: number, route: object = { websocket: true }, extra: Partial<SentinelConfigInput> = {}): SentinelConfig =>
  makeConfig({
    listeners: [{ id: "main", address: "127.0.0.1:0" }],
    upstreams: [{ id: "ws", targets: [{ address: `127.0.0.1:${port}` }] }],
    routes: [{ id: "r", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "ws", ...route }],
    observability: { logging: { accessLog: { enabled: false }, auditLog: { enabled: false } } },
    ...extra
  } as SentinelConfigInput)

/** A connected client (rejects with the upgrade failure, e.g. `Unexpected server response: 403`). */
export const connectWs = (port: number, path = "/", options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<WebSocket> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false, ...options })
    ws.once("open", () => resolve(ws))
    ws.once("error", reject)
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() })))
    })
  })

/** The next message a client gets. */
export const nextMessage = (ws: WebSocket): Promise<{ readonly data: Buffer; readonly binary: boolean }> =>
  new Promise((resolve, reject) => {
    ws.once("message", (data: RawData, binary: boolean) => resolve({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data as Array<Buffer>), binary }))
    ws.once("close", (code) => reject(new Error(`closed ${code}`)))
  })

/** The close a client sees: code and reason. */
export const closed = (ws: WebSocket): Promise<{ readonly code: number; readonly reason: string }> =>
  ws.readyState === WebSocket.CLOSED
    ? Promise.resolve({ code: -1, reason: "already closed" })
    : new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })))

/** A raw TCP connection to the proxy, with everything it receives collected. */
export const rawSocket = async (port: number): Promise<{ readonly socket: net.Socket; readonly received: () => Buffer; readonly ended: Promise<void> }> => {
  const socket = net.connect(port, "127.0.0.1")
  await once(socket, "connect")
  const chunks: Array<Buffer> = []
  socket.on("data", (c: Buffer) => chunks.push(c))
  socket.on("error", () => undefined)
  const ended = new Promise<void>((r) => socket.once("close", () => r()))
  return { socket, received: () => Buffer.concat(chunks), ended }
}

export const KEY = "dGhlIHNhbXBsZSBub25jZQ=="

/** A raw handshake request (CRLF lines), with `extra` header lines. */
export const handshake = (path = "/", extra: ReadonlyArray<string> = [], base: ReadonlyArray<string> = [
  "Host: 127.0.0.1",
  "Upgrade: websocket",
  "Connection: Upgrade",
  `Sec-WebSocket-Key: ${KEY}`,
  "Sec-WebSocket-Version: 13"
]): string => [`GET ${path} HTTP/1.1`, ...base, ...extra, "", ""].join("\r\n")

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls until `cond` holds (bounded). */
export const until = async (cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/** An HTTP/2 session to the proxy, once the server's SETTINGS are in (extended CONNECT needs them). */
export const h2Session = (url: string, options: http2.SecureClientSessionOptions = {}): Promise<http2.ClientHttp2Session> =>
  new Promise((resolve, reject) => {
    const s = http2.connect(url, options)
    s.once("remoteSettings", () => resolve(s))
    s.once("error", reject)
  })

/** A refused HTTP/2 WebSocket handshake: the answer's status, headers and body. */
export interface H2Refusal extends Error {
  readonly status: number
  readonly headers: http2.IncomingHttpHeaders
  readonly body: string
}

/**
 * A WebSocket over an HTTP/2 stream (RFC 8441): an extended CONNECT on `session`; on 200 a
 * `ws` client (masking, as a client does) reads and writes the stream. Rejects with an
 * `H2Refusal` for any other answer, or the stream's error.
 */
export const connectWsH2 = (
  session: http2.ClientHttp2Session,
  path = "/",
  headers: http2.OutgoingHttpHeaders = {}
): Promise<{ readonly ws: WebSocket; readonly stream: http2.ClientHttp2Stream; readonly headers: http2.IncomingHttpHeaders }> =>
  new Promise((resolve, reject) => {
    const stream = session.request(
      { ":method": "CONNECT", ":protocol": "websocket", ":path": path, "sec-websocket-version": "13", ...headers },
      { endStream: false }
    )
    stream.on("error", reject)
    stream.once("close", () => reject(new Error(`stream closed (${stream.rstCode})`)))
    stream.once("response", (h) => {
      const status = Number(h[":status"])
      if (status !== 200) {
        const chunks: Array<Buffer> = []
        stream.on("data", (c: Buffer) => chunks.push(c))
        stream.on("end", () => reject(Object.assign(new Error(`status ${status}`), { status, headers: h, body: Buffer.concat(chunks).toString() })))
        return
      }
      // ws's own client would open a TCP connection: this one is handed the stream, as its server side is a socket
      const ws = new WebSocket(null as unknown as string, undefined, { autoPong: true, closeTimeout: 30_000 } as never)
      ;(ws as unknown as { _isServer: boolean })._isServer = false
      ;(ws as unknown as { setSocket: (s: unknown, head: Buffer, o: object) => void }).setSocket(stream, Buffer.alloc(0), {
        allowSynchronousEvents: true,
        maxPayload: 64 * 1024 * 1024,
        skipUTF8Validation: false
      })
      resolve({ ws, stream, headers: h })
    })
  })
