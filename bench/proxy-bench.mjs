#!/usr/bin/env node
// Sentinel vs the Node ceiling, in one run, on this machine.
//
//   npm run build && node bench/proxy-bench.mjs [--rounds 3] [--duration 8] [--conns 50] [--agent]
//
// Layout (2 cores): the proxy under test is pinned to CPU 0; wrk and the upstream
// (nginx, 1 worker, or a Node origin when nginx is missing) share CPU 1. Each round runs
// every proxy through every scenario, interleaved, so drift hits all alike; medians are
// reported with ratios to the ceiling measured in the same run.
// Scenarios: small (GET 20 B), get64k (GET 64 KiB). Sentinel runs the full pipeline:
// routing, trace id, header policies, access log to a file, metrics.
// With --agent, two more rows run Sentinel with the `echo` agent on the route: over its Unix
// socket, and over gRPC (the same agent serving AgentServiceV2 on loopback). Its filter is
// failure-mode "closed": a failed call is a non-2xx in the table, never a fast pass (with the
// agent's default, open, timeouts on an overloaded machine opened the breaker and the row
// measured requests that skipped the agent).
import { execFileSync } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { PROXY_V8_FLAGS } from "../dist/RuntimeFlags.js"
import { cpuUs, pin, requireCommands, sentinelConfig, start, startUpstream, stopAll, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "8" },
    warmup: { type: "string", default: "2" },
    conns: { type: "string", default: "50" },
    agent: { type: "boolean", default: false },
    scenarios: { type: "string", default: "small,get64k" }
  }
})
const ROUNDS = Number(opt.rounds), DURATION = Number(opt.duration), WARMUP = Number(opt.warmup), CONNS = Number(opt.conns)
requireCommands(["wrk"])
const work = workDir("sentinel-bench-")

// ---- upstream
const UPSTREAM_PORT = 18380
const upstreamKind = await startUpstream(work, UPSTREAM_PORT)

// ---- proxies
const upstreamUrl = `http://127.0.0.1:${UPSTREAM_PORT}`
const AGENT_GRPC_PORT = 18390
const configFor = (port, withAgent) =>
  sentinelConfig(work, String(port), {
    port,
    upstreamPort: UPSTREAM_PORT,
    ...(withAgent === "uds" ? { agentSocket: join(work, "echo.sock"), agentFailureMode: "closed" } : {}),
    ...(withAgent === "grpc" ? { agentGrpc: `http://127.0.0.1:${AGENT_GRPC_PORT}`, agentFailureMode: "closed" } : {})
  })
const proxies = [
  {
    name: "node-ceiling",
    port: 18381,
    argv: (p) => pin(0, [process.execPath, "--max-semi-space-size=64", join(root, "bench/ceiling.mjs")]),
    env: (p) => ({ PORT: String(p), UPSTREAM_URL: upstreamUrl })
  },
  {
    name: "sentinel",
    port: 18382,
    argv: (p) => pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", configFor(p, undefined)]),
    env: () => ({ SENTINEL_NO_RESPAWN: "1" })
  }
]
if (opt.agent) {
  const sock = join(work, "echo.sock")
  start(pin(1, [process.execPath, join(root, "dist/agents-bin/echo/main.js"), "--socket", sock, "--grpc", `127.0.0.1:${AGENT_GRPC_PORT}`]))
  proxies.push({
    name: "sentinel+echo-agent",
    port: 18383,
    argv: (p) => pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", configFor(p, "uds")]),
    env: () => ({ SENTINEL_NO_RESPAWN: "1" })
  })
  proxies.push({
    name: "sentinel+echo-grpc",
    port: 18384,
    argv: (p) => pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", configFor(p, "grpc")]),
    env: () => ({ SENTINEL_NO_RESPAWN: "1" })
  })
}

const scenarios = { small: "/small", get64k: "/static/64k.bin" }
const wrk = (port, path, seconds, conns) => {
  const out = execFileSync(pin(1, ["wrk"])[0], [...pin(1, ["wrk"]).slice(1), "-t1", `-c${conns}`, `-d${seconds}s`, "--latency", `http://127.0.0.1:${port}${path}`], {
    encoding: "utf8"
  })
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0)
  const unit = (v, u) => Number(v) * ({ us: 0.001, ms: 1, s: 1000 }[u] ?? 1)
  const p = (q) => {
    const m = new RegExp(`\\s${q}%\\s+([\\d.]+)(us|ms|s)`).exec(out)
    return m ? unit(m[1], m[2]) : NaN
  }
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? "0"
  return { rps, p50: p(50), p99: p(99), errors: Number(errors) }
}

const results = {} // name -> scenario -> [runs]
for (let round = 1; round <= ROUNDS; round++) {
  for (const proxy of proxies) {
    const child = start(proxy.argv(proxy.port), proxy.env(proxy.port))
    await waitReady(proxy.port)
    for (const [scenario, path] of Object.entries(scenarios)) {
      if (!opt.scenarios.split(",").includes(scenario)) continue
      wrk(proxy.port, path, WARMUP, CONNS)
      const cpu0 = cpuUs(child.pid)
      const r = wrk(proxy.port, path, DURATION, CONNS)
      r.cpuPerReq = (cpuUs(child.pid) - cpu0) / Math.max(1, r.rps * DURATION)
      ;((results[proxy.name] ??= {})[scenario] ??= []).push(r)
      console.error(`round ${round} ${proxy.name.padEnd(20)} ${scenario.padEnd(7)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  cpu ${r.cpuPerReq.toFixed(1)} us/req  non-2xx ${r.errors}`)
    }
    child.kill("SIGTERM")
    await new Promise((r) => child.once("exit", r))
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const lines = [
  `# Sentinel benchmark — ${new Date().toISOString()}`,
  "",
  `upstream: ${upstreamKind}; proxies pinned to CPU 0; wrk -t1 -c${CONNS}, ${WARMUP}s warm-up + ${DURATION}s, ${ROUNDS} interleaved rounds; medians.`,
  "",
  "| proxy | scenario | req/s | ratio to ceiling | p50 ms | p99 ms | p99 ratio | CPU µs/req | CPU ratio | non-2xx |",
  "|---|---|---|---|---|---|---|---|---|---|"
]
for (const scenario of Object.keys(scenarios)) {
  const base = results["node-ceiling"]?.[scenario]
  if (!base) continue
  const baseRps = median(base.map((r) => r.rps)), baseP99 = median(base.map((r) => r.p99)), baseCpu = median(base.map((r) => r.cpuPerReq))
  for (const proxy of proxies) {
    const runs = results[proxy.name][scenario]
    const rps = median(runs.map((r) => r.rps)), p50 = median(runs.map((r) => r.p50)), p99 = median(runs.map((r) => r.p99)), cpu = median(runs.map((r) => r.cpuPerReq))
    lines.push(`| ${proxy.name} | ${scenario} | ${rps.toFixed(0)} | ${(rps / baseRps).toFixed(2)} | ${p50.toFixed(2)} | ${p99.toFixed(2)} | ${(p99 / baseP99).toFixed(2)} | ${cpu.toFixed(1)} | ${(baseCpu / cpu).toFixed(2)} | ${runs.reduce((a, r) => a + r.errors, 0)} |`)
  }
}
if (opt.agent) {
  // the agent rows against Sentinel without agents, and gRPC against the Unix socket
  lines.push("", "| scenario | echo-agent (UDS) / no agent | echo-grpc / no agent | echo-grpc / echo-agent (UDS) |", "|---|---|---|---|")
  for (const scenario of Object.keys(scenarios)) {
    const rps = (name) => {
      const runs = results[name]?.[scenario]
      return runs ? median(runs.map((r) => r.rps)) : NaN
    }
    const none = rps("sentinel"), uds = rps("sentinel+echo-agent"), grpc = rps("sentinel+echo-grpc")
    if (Number.isNaN(none)) continue
    lines.push(`| ${scenario} | ${(uds / none).toFixed(2)} | ${(grpc / none).toFixed(2)} | ${(grpc / uds).toFixed(2)} |`)
  }
}
const report = lines.join("\n") + "\n"
mkdirSync(join(root, "bench/results"), { recursive: true })
writeFileSync(join(root, "bench/results/latest.md"), report)
console.log(report)

stopAll()
process.exit(0)
