#!/usr/bin/env node
// Requests/s of one route with no rate limit, a local `rate-limit` filter and a `backend "redis"`
// one (redis-server on this machine), in one run, interleaved rounds, medians. The limit is far
// above the load, so every request is admitted: what is measured is the cost of the decision.
// Needs wrk and redis-server. Writes bench/results/ratelimit.md.
//
//   node bench/ratelimit-bench.mjs [--rounds 3] [--duration 5] [--conns 32] [--key client-ip]
//
// Layout (2 cores): the proxy on CPU 0; wrk, the upstream and Redis on CPU 1.
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { freePort, median, pin, requireCommands, runWrk, start, startUpstream, stopAll, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "5" },
    conns: { type: "string", default: "32" },
    key: { type: "string", default: "client-ip" }
  }
})
requireCommands(["wrk", "redis-server"])
const { PROXY_V8_FLAGS } = await import(join(root, "dist/RuntimeFlags.js"))
const ROUNDS = Number(opt.rounds)
const DURATION = Number(opt.duration)
const CONNS = Number(opt.conns)

const work = workDir("sentinel-rl-bench-")
const upstreamPort = await freePort()
const upstreamKind = await startUpstream(work, upstreamPort)
const redisPort = await freePort()
start(pin(1, ["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]))

const limiter = {
  none: "",
  local: `filter "rl" { type "rate-limit"; max-rps 1000000000; burst 1000000; key "${opt.key}" }`,
  redis: `filter "rl" { type "rate-limit"; max-rps 1000000000; burst 1000000; key "${opt.key}"; backend "redis"; redis-url "redis://127.0.0.1:${redisPort}" }`
}
const configFor = (name, port) => {
  const path = join(work, `sentinel-${name}.kdl`)
  writeFileSync(path, `system { graceful-shutdown-timeout-secs 1 }
listeners { listener "bench" { address "127.0.0.1:${port}" } }
upstreams { upstream "origin" { target "127.0.0.1:${upstreamPort}" } }
${limiter[name] === "" ? "" : `filters { ${limiter[name]} }`}
routes { route "all" { matches { path-prefix "/" }; upstream "origin"${limiter[name] === "" ? "" : `; filters "rl"`} } }
observability { logging { access-log { enabled #false } } }
`)
  return path
}

const wrk = (port) => runWrk(`http://127.0.0.1:${port}/small`, { conns: CONNS, seconds: DURATION })

const names = Object.keys(limiter)
const runs = Object.fromEntries(names.map((n) => [n, []]))
for (let round = 1; round <= ROUNDS; round++) {
  for (const name of names) {
    const port = await freePort()
    const child = start(pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", configFor(name, port)]), { SENTINEL_NO_RESPAWN: "1" })
    await waitReady(port)
    wrk(port) // warm-up
    const r = wrk(port)
    runs[name].push(r)
    console.error(`round ${round} ${name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, non-2xx ${r.errors}`)
    child.kill("SIGKILL")
    await new Promise((res) => child.once("exit", res))
  }
}
const base = median(runs.none.map((r) => r.rps))
const rows = names.map((n) => {
  const rps = median(runs[n].map((r) => r.rps))
  return `| ${n} | ${rps.toFixed(0)} | ${(rps / base).toFixed(2)} | ${median(runs[n].map((r) => r.p50)).toFixed(2)} | ${median(runs[n].map((r) => r.p99)).toFixed(2)} | ${runs[n].reduce((s, r) => s + r.errors, 0)} |`
})
const report = [
  `# Rate limiter cost (${new Date().toISOString()})`,
  "",
  `upstream: ${upstreamKind}; redis-server on CPU 1; proxy on CPU 0; wrk -t1 -c${CONNS}, ${DURATION}s after a warm-up, ${ROUNDS} interleaved rounds; medians; key "${opt.key}".`,
  "",
  "| limiter | req/s | vs none | p50 ms | p99 ms | non-2xx |",
  "|---|---|---|---|---|---|",
  ...rows,
  ""
].join("\n")
mkdirSync(join(root, "bench/results"), { recursive: true })
writeFileSync(join(root, "bench/results/ratelimit.md"), report)
console.log(report)
stopAll()
