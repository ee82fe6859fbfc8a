#!/usr/bin/env node
// WebSocket benchmark (issue 13): messages per second and round-trip p50/p99 for 64-byte and
// 16 KiB messages over 50 tunnels, in one run, through
//   - Sentinel (one process, CPU 0; a route with `websocket #true`, access log on),
//   - Sentinel with `websocket-inspection #true` and the echo agent (every frame to the agent),
//   - Sentinel with the client side over HTTP/2 (an `h2` listener, the 50 tunnels as streams of
//     one connection, RFC 8441; the upstream leg HTTP/1.1 as ever),
//   - nginx (1 worker, CPU 0; proxy_pass with the Upgrade/Connection headers),
//   - and directly to the origin (the ceiling of the load generator and origin).
// The origin is a `ws` echo server and the load generator a Node process (bench/ws-load.mjs),
// both on CPU 1; the proxies take turns on CPU 0. Besides messages/s (which the shared CPU 1
// bounds as much as the proxy), the CPU time the proxy's processes spent (user + system, /proc)
// per message: "per core" is nginx's CPU per message over the row's. Rounds are interleaved
// (each target once per round); the medians over rounds are shown.
// Writes bench/results/websocket-latest.md.
//
//   node bench/websocket-bench.mjs [--seconds 5] [--rounds 3] [--conns 50]
import { execFileSync, spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs"
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
const rounds = Number(arg("rounds", "3"))
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

// CPU time (user + system) of a process and its children (nginx's workers), microseconds
const TICK_US = 1e6 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
const statOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  } catch {
    return undefined
  }
}
const treeCpuUs = (pid) => {
  let us = 0
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const f = statOf(entry)
    if (f === undefined || (Number(entry) !== pid && Number(f[1]) !== pid)) continue
    us += (Number(f[11]) + Number(f[12])) * TICK_US
  }
  return us
}

const ORIGIN = 19301
const SENTINEL = 19302
const INSPECT = 19303
const NGINX = 19304
const SENTINEL_H2 = 19305

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
listeners { listener "bench" { address "127.0.0.1:${port}"${name === "h2" ? `; protocol "h2"` : ""} } }
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

const targets = [{ name: "direct to origin", port: ORIGIN, start: async () => undefined, stop: () => undefined, cpu: () => 0 }]
// SIGTERM for both: nginx's master stops its workers, Sentinel drains (1 s)
const proxyTarget = (name, port, argv, graceful = true, scheme = "ws") => {
  let child
  return {
    name,
    port,
    scheme,
    cpu: () => treeCpuUs(child.pid),
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
targets.push(proxyTarget("Sentinel, client over HTTP/2", SENTINEL_H2, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", sentinelKdl("h2", SENTINEL_H2)], true, "h2c"))
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

const load = (port, size, scheme = "ws") =>
  new Promise((resolve, reject) => {
    const argv = pin(1, [process.execPath, join(root, "bench/ws-load.mjs"), `${scheme}://127.0.0.1:${port}/`, String(conns), String(size), String(seconds)])
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (c) => (out += c))
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load generator exited ${code}`))))
  })

const runs = new Map()
for (let round = 1; round <= rounds; round++) {
  for (const t of targets) {
    await t.start()
    for (const size of sizes) {
      const cpu0 = t.cpu()
      const r = await load(t.port, size, t.scheme)
      r.cpuUsPerMsg = (t.cpu() - cpu0) / Math.max(1, r.messages)
      const key = `${t.name}|${size}`
      runs.set(key, [...(runs.get(key) ?? []), r])
      console.error(`round ${round} ${t.name} ${size} B: ${Math.round(r.perSecond)} msg/s p99 ${r.p99Ms.toFixed(2)} ms cpu ${r.cpuUsPerMsg.toFixed(1)} us/msg`)
    }
    await t.stop()
  }
}
stopAll()

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const stat = (key, field) => median((runs.get(key) ?? []).map((r) => r[field]))
const rows = []
for (const size of sizes) {
  const nKey = `nginx (1 worker)|${size}`
  const nginx = runs.has(nKey)
  for (const t of targets) {
    const key = `${t.name}|${size}`
    const proxied = t.name !== "direct to origin"
    const ratio = nginx && proxied ? (stat(key, "perSecond") / stat(nKey, "perSecond")).toFixed(2) : "-"
    const cpu = proxied ? stat(key, "cpuUsPerMsg").toFixed(1) : "-"
    const perCore = nginx && proxied ? (stat(nKey, "cpuUsPerMsg") / stat(key, "cpuUsPerMsg")).toFixed(2) : "-"
    rows.push(
      `| ${size === 64 ? "64 B" : "16 KiB"} | ${t.name} | ${Math.round(stat(key, "perSecond"))} | ${stat(key, "p50Ms").toFixed(2)} | ${stat(key, "p99Ms").toFixed(2)} | ${ratio} | ${cpu} | ${perCore} |`
    )
  }
}
const os = await import("node:os")
const report = `# WebSocket benchmark

${conns} tunnels, each a closed loop (one message, wait for its echo); ${seconds} s per measurement,
${rounds} interleaved rounds, medians shown. Proxies on CPU 0 (one process / one worker), the
\`ws\` echo origin and the Node load generator on CPU 1. "CPU us/msg": the proxy's own CPU time
(user + system, its processes) per echoed message (one frame each way); "per core" is nginx's
over the row's (1.00 = as cheap as nginx). Node ${process.version}; load average at the end
${os.loadavg().map((l) => l.toFixed(1)).join(" ")} (other work on the machine skews every row).

| message | through | messages/s | p50 ms | p99 ms | msg/s vs nginx | CPU us/msg | per core vs nginx |
|---|---|---|---|---|---|---|---|
${rows.join("\n")}
`
mkdirSync(join(root, "bench/results"), { recursive: true })
writeFileSync(join(root, "bench/results/websocket-latest.md"), report)
process.stdout.write(report)
