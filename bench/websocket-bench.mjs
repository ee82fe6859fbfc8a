#!/usr/bin/env node
// WebSocket benchmark (issue 13): messages per second and round-trip p50/p99 for 64-byte and
// 16 KiB messages over 50 tunnels, in one run, through
//   - Sentinel (one process, CPU 0; a route with `websocket #true`, access log on),
//   - Sentinel with `websocket-inspection #true` and the echo agent (every frame to the agent),
//   - nginx (1 worker, CPU 0; proxy_pass with the Upgrade/Connection headers),
//   - and directly to the origin (the ceiling of the load generator and origin).
// The origin is a `ws` echo server and the load generator a Node process (bench/ws-load.mjs),
// both on CPU 1; the proxies take turns on CPU 0, so "per core" is what the table shows.
// Rounds are interleaved (each target once per round); the best round counts.
// Writes bench/results/websocket-latest.md.
//
//   node bench/websocket-bench.mjs [--seconds 5] [--rounds 2] [--conns 50]
import { execFileSync, spawn } from "node:child_process"
import { existsSync, mkdirSync, writeFileSync } from "node:fs"
import net from "node:net"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { has, pin, start, stopAll, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const seconds = Number(arg("seconds", "5"))
const rounds = Number(arg("rounds", "2"))
const conns = Number(arg("conns", "50"))
const sizes = [64, 16 * 1024]

if (!existsSync(join(root, "dist/main.js"))) execFileSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" })
// the V8 flags the proxy re-executes itself with, given directly (no re-exec: the pinned process is the proxy)
const { PROXY_V8_FLAGS } = await import(join(root, "dist/RuntimeFlags.js"))
const work = workDir("ws-bench-")

const waitPort = async (port) => {
  for (let i = 0; i < 600; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy()
        resolve(true)
      })
      s.on("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`port ${port} never opened`)
}

const ORIGIN = 19301
const SENTINEL = 19302
const INSPECT = 19303
const NGINX = 19304

// origin: ws echo on CPU 1
writeFileSync(
  join(work, "origin.mjs"),
  `import { WebSocketServer } from "${join(root, "node_modules/ws/wrapper.mjs")}"
const wss = new WebSocketServer({ port: ${ORIGIN}, host: "127.0.0.1", perMessageDeflate: false, maxPayload: 1 << 24 })
wss.on("connection", (ws) => ws.on("message", (d, binary) => ws.send(d, { binary })))`
)
start(pin(1, [process.execPath, join(work, "origin.mjs")]))
await waitPort(ORIGIN)

const sentinelKdl = (name, port, agentSocket) => {
  const file = join(work, `sentinel-${name}.kdl`)
  writeFileSync(
    file,
    `schema-version "1.0"
system { graceful-shutdown-timeout-secs 1 }
listeners { listener "bench" { address "127.0.0.1:${port}" } }
upstreams { upstream "origin" { target "127.0.0.1:${ORIGIN}" } }
${agentSocket ? `agents { agent "echo" { unix-socket "${agentSocket}"; events "websocket_frame"; timeout-ms 1000 } }
filters { filter "echo" { type "agent"; agent "echo" } }` : ""}
limits { max-websocket-tunnels-per-client 1000; max-connections-per-client 1000 }
routes {
  route "ws" {
    matches { path-prefix "/" }
    upstream "origin"
    websocket #true
    ${agentSocket ? `websocket-inspection #true\n    filters "echo"` : ""}
  }
}
observability { logging { access-log { enabled #true; file "${work}/access-${name}.log"; format "json" } } }
`
  )
  return file
}

const agentSocket = join(work, "echo.sock")
start(pin(1, [process.execPath, join(root, "dist/agents-bin/echo/main.js"), "--socket", agentSocket]))
for (let i = 0; i < 200 && !existsSync(agentSocket); i++) await new Promise((r) => setTimeout(r, 50))

const targets = [{ name: "direct to origin", port: ORIGIN, start: async () => undefined, stop: () => undefined }]
// SIGTERM for both: nginx's master stops its workers, Sentinel drains (1 s)
const proxyTarget = (name, port, argv, graceful = true) => {
  let child
  return {
    name,
    port,
    start: async () => {
      child = start(pin(0, argv), { SENTINEL_NO_RESPAWN: "1" }, { graceful })
      await waitPort(port)
      await new Promise((r) => setTimeout(r, 300))
    },
    stop: async () => {
      child.kill(graceful ? "SIGTERM" : "SIGKILL")
      await new Promise((r) => child.once("exit", r))
    }
  }
}
targets.push(proxyTarget("Sentinel", SENTINEL, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", sentinelKdl("plain", SENTINEL)]))
targets.push(proxyTarget("Sentinel + inspection (echo agent)", INSPECT, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", sentinelKdl("inspect", INSPECT, agentSocket)]))
if (has("nginx")) {
  writeFileSync(
    join(work, "nginx.conf"),
    `worker_processes 1; daemon off; pid ${work}/nginx.pid; error_log ${work}/nginx.err;
events { worker_connections 4096; }
http { access_log ${work}/nginx-access.log; keepalive_timeout 120s;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server { listen 127.0.0.1:${NGINX};
    location / { proxy_pass http://127.0.0.1:${ORIGIN}; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s; } } }`
  )
  targets.push(proxyTarget("nginx (1 worker)", NGINX, ["nginx", "-c", join(work, "nginx.conf"), "-p", work], true))
}

const load = (port, size) =>
  new Promise((resolve, reject) => {
    const argv = pin(1, [process.execPath, join(root, "bench/ws-load.mjs"), `ws://127.0.0.1:${port}/`, String(conns), String(size), String(seconds)])
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (c) => (out += c))
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load generator exited ${code}`))))
  })

const best = new Map()
for (let round = 1; round <= rounds; round++) {
  for (const t of targets) {
    await t.start()
    for (const size of sizes) {
      const r = await load(t.port, size)
      const key = `${t.name}|${size}`
      const prev = best.get(key)
      if (prev === undefined || r.perSecond > prev.perSecond) best.set(key, r)
      console.error(`round ${round} ${t.name} ${size} B: ${Math.round(r.perSecond)} msg/s p99 ${r.p99Ms.toFixed(2)} ms`)
    }
    await t.stop()
  }
}
stopAll()

const rows = []
const nginxOf = (size) => best.get(`nginx (1 worker)|${size}`)
for (const size of sizes) {
  for (const t of targets) {
    const r = best.get(`${t.name}|${size}`)
    const n = nginxOf(size)
    const ratio = n !== undefined && t.name !== "direct to origin" ? (r.perSecond / n.perSecond).toFixed(2) : "-"
    rows.push(`| ${size === 64 ? "64 B" : "16 KiB"} | ${t.name} | ${Math.round(r.perSecond)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${ratio} |`)
  }
}
const report = `# WebSocket benchmark

${conns} tunnels, each a closed loop (one message, wait for its echo); ${seconds} s per measurement,
${rounds} interleaved rounds, best round shown. Proxies on CPU 0 (one process / one worker), the
\`ws\` echo origin and the Node load generator on CPU 1. Node ${process.version}; load average
at the end ${(await import("node:os")).loadavg().map((l) => l.toFixed(1)).join(" ")} (other work on the machine skews every row).

| message | through | messages/s | p50 ms | p99 ms | vs nginx |
|---|---|---|---|---|---|
${rows.join("\n")}
`
mkdirSync(join(root, "bench/results"), { recursive: true })
writeFileSync(join(root, "bench/results/websocket-latest.md"), report)
process.stdout.write(report)
