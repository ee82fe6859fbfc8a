#!/usr/bin/env node
// The Unix-socket agent row, A/B: builds of Sentinel and of its `echo` agent against
// Sentinel without agents, interleaved in one run.
//
//   npm run build && node bench/agent-ab.mjs [--rounds 5] [--duration 5] [--conns 50] \
//     [--grpc] [name=package-root ...]
//
// A variant is `name=/path/to/root` where root holds that build's package.json, dist/ and
// node_modules (e.g. a copy of this checkout at another commit, `npm run build` done there);
// without variants: `agent=.`. Every variant's proxy (CPU 0) and echo agent (Unix socket,
// CPU 1, with wrk and nginx) start once and stay up (JIT warm); wrk then loads each in turn,
// round after round, beside the proxy without agents (`none`, this checkout's dist/). Reported
// per variant: medians of req/s as a ratio to `none` in the same round, p99 as a ratio, and
// CPU µs per request of the proxy and of the agent process (/proc user + system). --grpc: each
// variant's echo agent serves gRPC on loopback instead, and its proxy calls it there.
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join, dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { PROXY_V8_FLAGS } from "../dist/RuntimeFlags.js"
import { cpuUs, pin, requireCommands, sentinelConfig, start, startUpstream, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: "string", default: "5" },
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "3" },
    conns: { type: "string", default: "50" },
    path: { type: "string", default: "/small" },
    grpc: { type: "boolean", default: false }
  }
})
requireCommands(["wrk", "taskset"])
const work = workDir("sentinel-agent-ab-")
const UPSTREAM_PORT = 18680
await startUpstream(work, UPSTREAM_PORT)

const variants = [
  { name: "none", dir: root, agent: false },
  ...(positionals.length > 0 ? positionals : ["agent=."]).map((v) => {
    const [name, dir] = v.split("=")
    return { name, dir: resolve(dir), agent: true }
  })
]
let port = 18690
for (const v of variants) {
  v.port = port++
  const sock = join(work, `${v.name}.sock`)
  const grpcPort = v.port + 100
  const listen = opt.grpc ? ["--grpc", `127.0.0.1:${grpcPort}`] : ["--socket", sock]
  if (v.agent) v.agentChild = start(pin(1, [process.execPath, join(v.dir, "dist/agents-bin/echo/main.js"), ...listen]))
  const to = opt.grpc ? { agentGrpc: `http://127.0.0.1:${grpcPort}` } : { agentSocket: sock }
  const cfg = sentinelConfig(work, v.name, { port: v.port, upstreamPort: UPSTREAM_PORT, ...(v.agent ? { ...to, agentFailureMode: "closed" } : {}) })
  v.child = start(pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(v.dir, "dist/main.js"), "run", "-c", cfg]), { SENTINEL_NO_RESPAWN: "1" })
}
for (const v of variants) await waitReady(v.port, opt.path)

const wrk = (v, seconds) => {
  const out = execFileSync("taskset", ["-c", "1", "wrk", "-t1", `-c${opt.conns}`, `-d${seconds}s`, "--latency", `http://127.0.0.1:${v.port}${opt.path}`], {
    encoding: "utf8"
  })
  const unit = (x, u) => Number(x) * ({ us: 0.001, ms: 1, s: 1000 }[u] ?? 1)
  const m = /\s99%\s+([\d.]+)(us|ms|s)/.exec(out)
  // a failed agent call answers 503/504 (failure-mode closed): counted, never passed as a fast 200
  const bad = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0), p99: m ? unit(m[1], m[2]) : NaN, bad }
}
for (const v of variants) wrk(v, Number(opt.warmup))
const samples = Object.fromEntries(variants.map((v) => [v.name, []]))
for (let r = 0; r < Number(opt.rounds); r++) {
  const round = {}
  for (const v of variants) {
    const c0 = cpuUs(v.child.pid)
    const a0 = v.agent ? cpuUs(v.agentChild.pid) : 0
    const res = wrk(v, Number(opt.duration))
    const n = Math.max(1, res.rps * Number(opt.duration))
    round[v.name] = { ...res, cpu: (cpuUs(v.child.pid) - c0) / n, agentCpu: v.agent ? (cpuUs(v.agentChild.pid) - a0) / n : 0 }
  }
  for (const v of variants) {
    const s = round[v.name]
    samples[v.name].push({ ...s, ratio: s.rps / round.none.rps, p99Ratio: s.p99 / round.none.p99 })
    console.error(`round ${r + 1} ${v.name.padEnd(12)} ${s.rps.toFixed(0).padStart(6)} req/s  ratio ${(s.rps / round.none.rps).toFixed(2)}  p99 ${s.p99.toFixed(2)} ms  proxy ${s.cpu.toFixed(1)} µs/req  agent ${s.agentCpu.toFixed(1)} µs/req  non-2xx ${s.bad}`)
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
console.log(`${opt.rounds} interleaved rounds of ${opt.duration} s (wrk -c${opt.conns} ${opt.path}, agent over ${opt.grpc ? "gRPC" : "its Unix socket"}); load average at the end ${load}; medians`)
console.log("| variant | req/s | ratio to none | p99 ms | p99 ratio | proxy µs/req | agent µs/req | non-2xx |")
console.log("|---|---|---|---|---|---|---|---|")
for (const v of variants) {
  const s = samples[v.name]
  const m = (k) => median(s.map((x) => x[k]))
  console.log(`| ${v.name} | ${m("rps").toFixed(0)} | ${m("ratio").toFixed(2)} | ${m("p99").toFixed(2)} | ${m("p99Ratio").toFixed(2)} | ${m("cpu").toFixed(1)} | ${v.agent ? m("agentCpu").toFixed(1) : "–"} | ${s.reduce((n, x) => n + x.bad, 0)} |`)
}
process.exit(0)
