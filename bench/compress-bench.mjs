#!/usr/bin/env node
// gzip of a 64 KiB JSON response through a reverse proxy: Sentinel's `compress` filter against
// nginx `gzip` at the same level, and both proxies without compression, in one run,
// interleaved rounds, medians. Needs wrk and nginx. Writes bench/results/compress.md.
//
//   npm run build
//   node bench/compress-bench.mjs [--rounds 3] [--duration 6] [--conns 32] [--level 6]
//
// Layout (2 cores): the proxy under test on CPU 0 (nginx: 1 worker; Sentinel: 1 process, every
// thread pinned with it; its zlib runs on the event loop); wrk and the origin (nginx, 1 worker) on CPU 1.
import { mkdirSync, writeFileSync } from "node:fs"
import http from "node:http"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { gunzipSync } from "node:zlib"
import { freePort, median, pin, requireCommands, runWrk, start, stopAll, treeCpuUs, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "6" },
    conns: { type: "string", default: "32" },
    level: { type: "string", default: "6" },
    // "all" (default) or "gzip": only the two compressing proxies
    modes: { type: "string", default: "all" }
  }
})
requireCommands(["wrk", "nginx"])
const { PROXY_V8_FLAGS } = await import(join(root, "dist/RuntimeFlags.js"))
const ROUNDS = Number(opt.rounds)
const DURATION = Number(opt.duration)
const CONNS = Number(opt.conns)
const LEVEL = Number(opt.level)

/** 64 KiB of an API-like JSON array (compresses about 8:1 at level 6). */
const json = (() => {
  let s = "["
  for (let i = 0; s.length < 65536 - 200; i++) {
    s += JSON.stringify({ id: i, name: `item-${i}`, email: `user${(i * 7919) % 10007}@example.com`, active: i % 3 === 0, score: (i * 37) % 1000, tags: ["alpha", "beta", i % 2 ? "gamma" : "delta"] }) + ","
  }
  s = s.slice(0, -1) + "]"
  return s.padEnd(65536, " ")
})()

const work = workDir("sentinel-gzip-bench-")
mkdirSync(join(work, "www"), { recursive: true })
writeFileSync(join(work, "www/api.json"), json)
writeFileSync(join(work, "www/small"), "12345678901234567890")

const nginxConf = (name, port, body) => {
  const path = join(work, `nginx-${name}.conf`)
  writeFileSync(path, `worker_processes 1; daemon off; pid ${work}/nginx-${name}.pid; error_log ${work}/nginx-${name}.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  types { application/json json; text/plain txt; } default_type text/plain;
  ${body.replaceAll("PORT", String(port))} }`)
  return path
}

const originPort = await freePort()
start(pin(1, ["nginx", "-c", nginxConf("origin", originPort, `server { listen 127.0.0.1:PORT; root ${work}/www; }`), "-p", work]), {}, { graceful: true })
await waitReady(originPort)

// nginx as the reverse proxy, with and without gzip (same level, types and minimum as the filter)
const nginxProxy = (gzip) => `upstream origin { server 127.0.0.1:${originPort}; keepalive 64; }
  server { listen 127.0.0.1:PORT;
    ${gzip ? `gzip on; gzip_comp_level ${LEVEL}; gzip_types application/json; gzip_min_length 1024; gzip_proxied any; gzip_vary on;` : "gzip off;"}
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } }`

const sentinelConf = (name, port, gzip) => {
  const path = join(work, `sentinel-${name}.kdl`)
  writeFileSync(path, `system { worker-threads 1; graceful-shutdown-timeout-secs 1 }
listeners { listener "bench" { address "127.0.0.1:${port}" } }
upstreams { upstream "origin" { target "127.0.0.1:${originPort}" } }
${gzip ? `filters { filter "gz" { type "compress"; algorithms "gzip"; level ${LEVEL}; min-size 1024; content-types "application/json" } }` : ""}
routes { route "all" { matches { path-prefix "/" }; upstream "origin"${gzip ? `; filters "gz"` : ""} } }
observability { logging { access-log { enabled #true; file "${work}/access-${name}.log"; format "json" } } }
`)
  return path
}

const proxies = {
  "nginx gzip": (port) => ({ argv: pin(0, ["nginx", "-c", nginxConf("gzip", port, nginxProxy(true)), "-p", work]), graceful: true }),
  "sentinel compress": (port) => ({ argv: pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", sentinelConf("gzip", port, true)]) }),
  "nginx identity": (port) => ({ argv: pin(0, ["nginx", "-c", nginxConf("plain", port, nginxProxy(false)), "-p", work]), graceful: true }),
  "sentinel identity": (port) => ({ argv: pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", sentinelConf("plain", port, false)]) })
}

/** One GET with Accept-Encoding: gzip; checks what the proxy sends decodes to the origin's JSON. */
const check = (port) =>
  new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, path: "/api.json", headers: { "accept-encoding": "gzip" }, agent: false }, (res) => {
      const chunks = []
      res.on("data", (c) => chunks.push(c))
      res.on("end", () => {
        const body = Buffer.concat(chunks)
        const gz = res.headers["content-encoding"] === "gzip"
        const decoded = gz ? gunzipSync(body) : body
        if (decoded.toString("latin1") !== json) return reject(new Error(`port ${port}: body differs from the origin's`))
        resolve({ encoding: res.headers["content-encoding"] ?? "identity", bytes: body.length })
      })
    }).on("error", reject)
  })

const wrk = (port) => runWrk(`http://127.0.0.1:${port}/api.json`, { conns: CONNS, seconds: DURATION, headers: ["Accept-Encoding: gzip"] })


const names = Object.keys(proxies).filter((n) => opt.modes === "all" || !n.endsWith("identity"))
const runs = Object.fromEntries(names.map((n) => [n, []]))
const shape = {}
for (let round = 1; round <= ROUNDS; round++) {
  for (const name of names) {
    const port = await freePort()
    const { argv, graceful } = proxies[name](port)
    const child = start(argv, { SENTINEL_NO_RESPAWN: "1" }, { graceful: graceful === true })
    await waitReady(port, "/small")
    shape[name] = await check(port)
    wrk(port) // warm-up
    const cpu0 = treeCpuUs(child.pid)
    const r = wrk(port)
    r.cpuPerReq = (treeCpuUs(child.pid) - cpu0) / Math.max(1, r.requests)
    runs[name].push(r)
    console.error(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, cpu ${r.cpuPerReq.toFixed(0)} us/req, errors ${r.errors}`)
    child.kill(graceful ? "SIGTERM" : "SIGKILL")
    await new Promise((res) => child.once("exit", res))
  }
}
const rps = Object.fromEntries(names.map((n) => [n, median(runs[n].map((r) => r.rps))]))
const cpu = Object.fromEntries(names.map((n) => [n, median(runs[n].map((r) => r.cpuPerReq))]))
/** The nginx row a row is compared with: the same mode (itself when that mode did not run). */
const peer = (n) => (n.endsWith("compress") || n.endsWith("gzip") ? "nginx gzip" : rps["nginx identity"] === undefined ? n : "nginx identity")
const rows = names.map((n) =>
  `| ${n} | ${shape[n].encoding} ${shape[n].bytes} B | ${rps[n].toFixed(0)} | ${(rps[n] / rps[peer(n)]).toFixed(2)} | ${cpu[n].toFixed(0)} | ${(cpu[peer(n)] / cpu[n]).toFixed(2)} | ${median(runs[n].map((r) => r.p50)).toFixed(2)} | ${median(runs[n].map((r) => r.p99)).toFixed(2)} | ${runs[n].reduce((s, r) => s + r.errors, 0)} |`
)
const report = [
  `# gzip of a 64 KiB JSON response, Sentinel against nginx (${new Date().toISOString()})`,
  "",
  `origin: nginx (1 worker, CPU 1); proxy under test on CPU 0 (nginx 1 worker / Sentinel 1 process); level ${LEVEL};`,
  `wrk -t1 -c${CONNS} on CPU 1 with Accept-Encoding: gzip, ${DURATION}s after a warm-up, ${ROUNDS} interleaved rounds; medians.`,
  "Each proxy's answer is checked first: it decodes to the origin's JSON.",
  "",
  "| proxy | response | req/s | req/s vs nginx (same mode) | CPU us/req | per core vs nginx | p50 ms | p99 ms | errors |",
  "|---|---|---|---|---|---|---|---|---|",
  ...rows,
  "",
  `Target (issue 15): sentinel compress >= 0.8 of nginx gzip: ${(rps["sentinel compress"] / rps["nginx gzip"]).toFixed(2)} in req/s, ` +
    `${(cpu["nginx gzip"] / cpu["sentinel compress"]).toFixed(2)} in requests per CPU second.`,
  ""
].join("\n")
mkdirSync(join(root, "bench/results"), { recursive: true })
writeFileSync(join(root, "bench/results/compress.md"), report)
console.log(report)
stopAll()
