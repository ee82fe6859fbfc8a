#!/usr/bin/env node
// CPU per request of several builds (or configs) of Sentinel and of the Node ceiling, A/B style.
//
//   npm run build && node bench/cpu-ab.mjs [--rounds 8] [--requests 20000] [--path /small] \
//     [--body-bytes N [--chunked]] [--port-base 18580] [--no-access-log] [name=dist-dir ...]
//
// --body-bytes N: POSTs with an N-byte body (h2load -d, Content-Length) instead of GETs, to
// /post unless --path says otherwise (the upstream reads the body and answers 3 bytes); e.g.
// `--body-bytes 16384` for the 16 KiB upload of issue 18. --port-base P: the upstream listens on
// P and the variants on P+10, P+11, ... (default 18580; another value lets two runs coexist).
// --chunked (with --body-bytes): the body sent chunked (Transfer-Encoding), by wrk.
// Without variants: `sentinel` (./dist) against `ceiling` (bench/ceiling.mjs). A variant is
// `name=/path/to/dist` (e.g. a copy of dist/ built from another commit), or `name=ceiling`;
// `name=dist@16` runs it with SENTINEL_YOUNG_GENERATION_MB=16 (MiB per semi-space; 0 = V8's
// default) instead of the proxy's own flags; `,--v8-flag` after either adds a flag
// (common.mjs parseVariant). The ceiling runs with the same V8 flags as Sentinel (the proxy's
// own, or `ceiling@16`). The table also gives each process's RSS once started (idle) and its
// peak (VmHWM) after the rounds.
//
// Why this and not req/s: this VM's neighbours move throughput by ±30 % between runs. Here all
// variants are started once and stay up (JIT warm), pinned to CPU 0; h2load (CPU 1) sends them a
// fixed number of requests in turn, round after round, and the CPU time each process spent
// (user + system, /proc) is divided by the request count. Interleaving makes drift hit every
// variant alike; the minimum and the median over rounds are the figures to compare, and the
// ratio to the ceiling taken within each round (then its median), which cancels drift between
// rounds. Each round starts with the next variant in turn.
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { CEILINGS, bodyArgs, cpuUs, parseVariant, requireCommands, sentinelConfig, start, startUpstream, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: "string", default: "8" },
    requests: { type: "string", default: "20000" },
    conns: { type: "string", default: "50" },
    path: { type: "string" },
    "body-bytes": { type: "string", default: "0" },
    "port-base": { type: "string", default: "18580" },
    chunked: { type: "boolean", default: false },
    "no-access-log": { type: "boolean", default: false }
  }
})
requireCommands(opt.chunked ? ["wrk", "taskset"] : ["h2load", "taskset"])
const variants = (positionals.length > 0 ? positionals : ["sentinel=dist", "ceiling=ceiling"]).map(parseVariant)

const work = workDir("sentinel-cpu-ab-")
const bodyBytes = Number(opt["body-bytes"])
opt.path ??= bodyBytes > 0 ? "/post" : "/small"
const post = bodyArgs(work, bodyBytes)
if (opt.chunked && !(bodyBytes > 0)) throw new Error("--chunked needs --body-bytes")
// --chunked: wrk (h2load cannot) sends the body as one chunk and the last chunk, for a duration
// of about n / 10k seconds per round; the count it reports is the divisor
const chunkedScript = join(work, "chunked.lua")
writeFileSync(
  chunkedScript,
  `local body = string.rep("a", ${bodyBytes})
local req = "POST ${opt.path} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n" .. string.format("%x", #body) .. "\\r\\n" .. body .. "\\r\\n0\\r\\n\\r\\n"
request = function() return req end
`
)
const UPSTREAM_PORT = Number(opt["port-base"])
await startUpstream(work, UPSTREAM_PORT)

let port = UPSTREAM_PORT + 10
for (const v of variants) {
  v.port = port++
  v.child =
    CEILINGS.includes(v.dir)
      ? start(["taskset", "-c", "0", process.execPath, ...v.flags, join(root, `bench/${v.dir}.mjs`)], {
          PORT: String(v.port),
          ACCESS_LOG: join(work, `access-${v.name}.log`),
          UPSTREAM_URL: `http://127.0.0.1:${UPSTREAM_PORT}`
        })
      : start(["taskset", "-c", "0", process.execPath, ...v.flags, join(v.dir, "main.js"), "run", "-c", sentinelConfig(work, v.name, { port: v.port, upstreamPort: UPSTREAM_PORT, accessLog: v.accessLog ?? !opt["no-access-log"] })], {
          SENTINEL_NO_RESPAWN: "1"
        })
}
for (const v of variants) await waitReady(v.port, opt.path)
const statusKiB = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN)
for (const v of variants) v.idleRss = statusKiB(v.child.pid, "VmRSS")

/** Sends `n` requests; returns how many were answered (all 2xx, else it throws). */
const load = (v, n) => {
  if (opt.chunked) {
    // about n requests at ~10k/s (wrk runs for a duration, not a count)
    const seconds = Math.max(1, Math.round(n / 10_000))
    const out = execFileSync("taskset", ["-c", "1", "wrk", "-t1", `-c${opt.conns}`, `-d${seconds}s`, "-s", chunkedScript, `http://127.0.0.1:${v.port}${opt.path}`], {
      encoding: "utf8",
      timeout: (seconds + 30) * 1000
    })
    // (wrk's timeouts, 2 s, are a loaded machine's slow answers: not failures)
    if (/Non-2xx/.test(out) || /Socket errors: connect [1-9]|read [1-9]|write [1-9]/.test(out)) throw new Error(`${v.name}: errors\n${out}`)
    return Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  }
  const out = execFileSync("taskset", ["-c", "1", "h2load", "--h1", ...post, "-n", String(n), "-c", opt.conns, `http://127.0.0.1:${v.port}${opt.path}`], {
    encoding: "utf8"
  })
  const ok = Number(/status codes: (\d+) 2xx/.exec(out)?.[1] ?? 0)
  if (ok !== n) throw new Error(`${v.name}: ${ok} of ${n} requests answered 2xx`)
  return n
}
const N = Number(opt.requests)
for (const v of variants) load(v, 2 * N) // warm-up: JIT, pools
const samples = Object.fromEntries(variants.map((v) => [v.name, []]))
for (let r = 0; r < Number(opt.rounds); r++) {
  // each round starts with the next variant: no variant always runs first (or after another)
  for (let i = 0; i < variants.length; i++) {
    const v = variants[(r + i) % variants.length]
    const c0 = cpuUs(v.child.pid)
    const done = load(v, N)
    samples[v.name][r] = (cpuUs(v.child.pid) - c0) / done
  }
}

const sorted = (xs) => [...xs].sort((a, b) => a - b)
const base = variants.find((v) => v.dir === "ceiling")
const baseMedian = base ? sorted(samples[base.name])[Math.floor(samples[base.name].length / 2)] : undefined
const what = bodyBytes > 0 ? `POSTs of ${bodyBytes} bytes${opt.chunked ? " (chunked, wrk)" : ""}` : "requests"
console.log(`CPU µs per request, ${opt.rounds} interleaved rounds of ${N} ${what} to ${opt.path} (${opt.chunked ? "wrk" : "h2load"} -c${opt.conns})`)
// "paired": the ratio to the ceiling within each round, then its median (drift between rounds cancels)
console.log("| variant | min | median | ceiling / median | ceiling / variant, paired by round (median) | RSS MiB started / peak | rounds |")
console.log("|---|---|---|---|---|---|---|")
for (const v of variants) {
  const s = sorted(samples[v.name])
  const median = s[Math.floor(s.length / 2)]
  const ratio = baseMedian === undefined ? "" : (baseMedian / median).toFixed(2)
  const pairs = base === undefined ? [] : sorted(samples[v.name].map((x, r) => samples[base.name][r] / x))
  const paired = base === undefined ? "" : pairs[Math.floor(pairs.length / 2)].toFixed(2)
  const mib = (kib) => (kib / 1024).toFixed(0)
  console.log(`| ${v.name} | ${s[0].toFixed(1)} | ${median.toFixed(1)} | ${ratio} | ${paired} | ${mib(v.idleRss)} / ${mib(statusKiB(v.child.pid, "VmHWM"))} | ${samples[v.name].map((x) => x.toFixed(0)).join(" ")} |`)
}
process.exit(0)
