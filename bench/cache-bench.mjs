#!/usr/bin/env node
// Cache hits through Sentinel and through nginx `proxy_cache`, in one run: a 2 KiB and a 64 KiB
// response, each served (a) from Sentinel's cache, (b) by Sentinel uncached (the same route
// without `cache`), (c) from nginx's proxy_cache, (d) by nginx proxying uncached, and (e) by
// the Node ceiling proxy (bench/ceiling.mjs, no cache: the baseline a hit must beat, since a
// hit makes no upstream hop). Interleaved rounds, medians. Needs wrk and nginx.
// Writes bench/results/cache.md.
//
//   node bench/cache-bench.mjs [--rounds 3] [--duration 5] [--conns 32]
//
// Layout (2 cores): each proxy under test pinned to CPU 0 (one core: req/s is per core); wrk
// and the origin (nginx, 1 worker) on CPU 1. Access logs off everywhere (nginx's too).
import { mkdirSync, writeFileSync } from "node:fs"
import net from "node:net"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { median, pin, requireCommands, runWrk, start, stopAll, treeCpuUs, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "5" },
    conns: { type: "string", default: "32" }
  }
})
requireCommands(["wrk", "nginx"])
const { PROXY_V8_FLAGS } = await import(join(root, "dist/RuntimeFlags.js"))
const ROUNDS = Number(opt.rounds)
const DURATION = Number(opt.duration)
const CONNS = Number(opt.conns)

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

const work = workDir("sentinel-cache-bench-")
mkdirSync(join(work, "www/c"), { recursive: true })
writeFileSync(join(work, "www/c/2k.bin"), Buffer.alloc(2048, 7))
writeFileSync(join(work, "www/c/64k.bin"), Buffer.alloc(65536, 7))
writeFileSync(join(work, "www/small"), "ok")

// the origin: static files with a long freshness
const originPort = await freePort()
writeFileSync(join(work, "origin.conf"), `worker_processes 1; daemon off; pid ${work}/origin.pid; error_log ${work}/origin.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server { listen 127.0.0.1:${originPort}; root ${work}/www;
    location / { add_header Cache-Control "public, max-age=3600"; } } }
`)
start(pin(1, ["nginx", "-c", join(work, "origin.conf"), "-p", work]), {}, { graceful: true })
await waitReady(originPort, "/small")

const sentinelConfig = (name, port, cached) => {
  const path = join(work, `sentinel-${name}.kdl`)
  writeFileSync(path, `system { graceful-shutdown-timeout-secs 1 }
listeners { listener "bench" { address "127.0.0.1:${port}" } }
upstreams { upstream "origin" { target "127.0.0.1:${originPort}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "origin"${cached ? "; cache { enabled #true }" : ""} } }
cache { max-size 67108864 }
observability { logging { access-log { enabled #false } } }
`)
  return path
}

const nginxProxy = (name, port, cached) => {
  const conf = join(work, `nginx-${name}.conf`)
  const cacheDir = join(work, `cache-${name}`)
  mkdirSync(cacheDir, { recursive: true })
  writeFileSync(conf, `worker_processes 1; daemon off; pid ${work}/${name}.pid; error_log ${work}/${name}.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  ${cached ? `proxy_cache_path ${cacheDir} levels=1:2 keys_zone=bench:10m max_size=64m inactive=1h use_temp_path=off;` : ""}
  upstream origin { server 127.0.0.1:${originPort}; keepalive 64; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      ${cached ? "proxy_cache bench; proxy_cache_lock on; proxy_cache_valid 200 1h;" : ""} } } }
`)
  return ["nginx", "-c", conf, "-p", work]
}

const systems = {
  "sentinel cached": (port) => ({ argv: [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", sentinelConfig("cached", port, true)], env: { SENTINEL_NO_RESPAWN: "1" } }),
  "sentinel uncached": (port) => ({ argv: [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", sentinelConfig("uncached", port, false)], env: { SENTINEL_NO_RESPAWN: "1" } }),
  "nginx proxy_cache": (port) => ({ argv: nginxProxy("cached", port, true), graceful: true }),
  "nginx uncached": (port) => ({ argv: nginxProxy("uncached", port, false), graceful: true }),
  "node ceiling": (port) => ({ argv: [process.execPath, join(root, "bench/ceiling.mjs")], env: { PORT: String(port), UPSTREAM_URL: `http://127.0.0.1:${originPort}` } })
}
const sizes = { "2k": "/c/2k.bin", "64k": "/c/64k.bin" }


const wrk = (port, path) => runWrk(`http://127.0.0.1:${port}${path}`, { conns: CONNS, seconds: DURATION })

/**
 * Starts a system on a free port; another process on the shared machine may take the port
 * between the probe and the bind (EADDRINUSE): then it is started again on another.
 */
const launch = async (name) => {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const s = systems[name](port)
    const child = start(pin(0, s.argv), s.env ?? {}, { graceful: s.graceful === true })
    const exited = new Promise((res) => child.once("exit", () => res("exited")))
    const ready = await Promise.race([waitReady(port, "/small").then(() => "ready"), exited])
    if (ready === "ready" && child.exitCode === null) return { port, child, s }
    if (attempt === 5) throw new Error(`${name} did not start`)
  }
}

const names = Object.keys(systems)
const runs = {}
for (let round = 1; round <= ROUNDS; round++) {
  for (const name of names) {
    const { port, child, s } = await launch(name)
    for (const [size, path] of Object.entries(sizes)) {
      wrk(port, path) // warm-up (and the cache's fill)
      const before = treeCpuUs(child.pid)
      const w = wrk(port, path)
      const r = { ...w, cpuUs: (treeCpuUs(child.pid) - before) / Math.max(1, w.requests) }
      ;(runs[`${name}|${size}`] ??= []).push(r)
      console.error(`round ${round} ${name} ${size}: ${r.rps.toFixed(0)} req/s, ${r.cpuUs.toFixed(1)} µs CPU/req, p99 ${r.p99} ms, non-2xx ${r.errors}`)
    }
    child.kill(s.graceful ? "SIGTERM" : "SIGKILL")
    await new Promise((res) => child.once("exit", res))
  }
}

const rps = (name, size) => median(runs[`${name}|${size}`].map((r) => r.rps))
const cpu = (name, size) => median(runs[`${name}|${size}`].map((r) => r.cpuUs))
const rows = []
for (const size of Object.keys(sizes)) {
  for (const name of names) {
    const v = rps(name, size)
    const c = cpu(name, size)
    rows.push(
      `| ${size} | ${name} | ${v.toFixed(0)} | ${(v / rps("node ceiling", size)).toFixed(2)} | ${(v / rps("nginx proxy_cache", size)).toFixed(2)} | ` +
        `${c.toFixed(1)} | ${(1e6 / c).toFixed(0)} | ${(cpu("node ceiling", size) / c).toFixed(2)} | ${(cpu("nginx proxy_cache", size) / c).toFixed(2)} | ` +
        `${median(runs[`${name}|${size}`].map((r) => r.p99)).toFixed(2)} | ${runs[`${name}|${size}`].reduce((a, r) => a + r.errors, 0)} |`
    )
  }
}
const report = [
  `# Cache hits: Sentinel against nginx proxy_cache (${new Date().toISOString()})`,
  "",
  `origin: nginx (1 worker, CPU 1), Cache-Control public, max-age=3600; each proxy on CPU 0 (one core); wrk -t1 -c${CONNS} on CPU 1, ${DURATION}s after a warm-up that also fills the caches; ${ROUNDS} interleaved rounds, medians; access logs off.`,
  "",
  "req/s is what wrk got; CPU/req is the proxy's own user+system time per request (/proc; nginx: master and worker), and req/s per core = 1e6 / CPU/req, the capacity of one core (steadier than req/s on a loaded machine). The \"vs\" columns are ratios of req/s, and of capacity per core.",
  "",
  "| size | system | req/s | vs node ceiling | vs nginx proxy_cache | CPU/req µs | req/s per core | per core vs ceiling | per core vs nginx proxy_cache | p99 ms | non-2xx |",
  "|---|---|---|---|---|---|---|---|---|---|---|",
  ...rows,
  ""
].join("\n")
mkdirSync(join(root, "bench/results"), { recursive: true })
writeFileSync(join(root, "bench/results/cache.md"), report)
console.log(report)
stopAll()
