// WebSocket load: `conns` clients through `url`, each in a closed loop (send one message of
// `size` bytes, wait for its echo, again) for `seconds`; prints {messages, perSecond, p50Ms,
// p99Ms} as one JSON line. A `h2c://` url: WebSockets over one HTTP/2 connection (RFC 8441).
// Run by websocket-bench.mjs as a child (pinned to a CPU of its own).
import http2 from "node:http2"
import { WebSocket } from "ws"

const [url, connsArg, sizeArg, secondsArg] = process.argv.slice(2)
const conns = Number(connsArg)
const size = Number(sizeArg)
const seconds = Number(secondsArg)
const payload = Buffer.alloc(size, 0x61)
const samples = []
let messages = 0
let running = true

const open = () =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.once("open", () => resolve(ws))
    ws.once("error", reject)
  })

// `h2c://host:port/path`: every tunnel a stream of one cleartext HTTP/2 connection (RFC 8441
// extended CONNECT), as a browser multiplexes them; the `ws` client is handed the stream
let session
const openH2 = () =>
  new Promise((resolve, reject) => {
    const u = new URL(url)
    const stream = session.request({ ":method": "CONNECT", ":protocol": "websocket", ":path": u.pathname, "sec-websocket-version": "13" }, { endStream: false })
    stream.once("error", reject)
    stream.once("response", (h) => {
      if (h[":status"] !== 200) return reject(new Error(`status ${h[":status"]}`))
      const ws = new WebSocket(null, undefined, { autoPong: true, closeTimeout: 30_000 })
      ws._isServer = false
      ws.setSocket(stream, Buffer.alloc(0), { allowSynchronousEvents: true, maxPayload: 1 << 26, skipUTF8Validation: false })
      resolve(ws)
    })
  })
if (url.startsWith("h2c://")) {
  session = http2.connect(url.replace("h2c://", "http://"))
  await new Promise((resolve, reject) => {
    session.once("remoteSettings", resolve)
    session.once("error", reject)
  })
  // a browser's connection window (Chrome: 15 MiB), not node's 64 KiB for all the streams
  session.setLocalWindowSize(15 * 1024 * 1024)
}

const sockets = await Promise.all(Array.from({ length: conns }, session !== undefined ? openH2 : open))
const started = performance.now()
for (const ws of sockets) {
  let sentAt = 0
  const send = () => {
    sentAt = performance.now()
    ws.send(payload, { binary: size !== 64 })
  }
  ws.on("message", () => {
    const now = performance.now()
    messages++
    // a bounded sample of round trips (every 4th) keeps the memory flat
    if ((messages & 3) === 0) samples.push(now - sentAt)
    if (running) send()
  })
  send()
}
await new Promise((r) => setTimeout(r, seconds * 1000))
running = false
const elapsed = (performance.now() - started) / 1000
samples.sort((a, b) => a - b)
const q = (p) => (samples.length === 0 ? NaN : samples[Math.min(samples.length - 1, Math.floor(p * samples.length))])
process.stdout.write(JSON.stringify({ messages, perSecond: messages / elapsed, p50Ms: q(0.5), p99Ms: q(0.99) }) + "\n")
for (const ws of sockets) ws.terminate()
session?.destroy()
process.exit(0)
