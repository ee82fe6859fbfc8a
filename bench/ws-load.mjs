// WebSocket load: `conns` clients through `url`, each in a closed loop (send one message of
// `size` bytes, wait for its echo, again) for `seconds`; prints {messages, perSecond, p50Ms,
// p99Ms} as one JSON line. Run by websocket-bench.mjs as a child (pinned to a CPU of its own).
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

const sockets = await Promise.all(Array.from({ length: conns }, open))
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
process.exit(0)
