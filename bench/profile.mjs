#!/usr/bin/env node
// Where the CPU time of one request goes: Sentinel and the Node ceiling under the same load,
// each with V8's sampling profiler, the samples attributed to the parts of the pipeline.
//
//   npm run build && node bench/profile.mjs [--requests 100000] [--path /small] [--body-bytes N] [--port-base 18680] [--conns 50]
//     [--config FILE] [--top N] [--json FILE] [--h2] [--agent uds|grpc] [--dist DIR]
// --body-bytes N: POSTs with an N-byte body (h2load -d), to /post unless --path says otherwise.
// --port-base P: the upstream on P, the proxies on P+10.. (default 18680; lets two runs coexist).
// --top: also list the N functions with the most self time. --files: Sentinel's parts by file. --h2: HTTP/2 over TLS (h2load -c10
// -m10) against a TLS listener, and bench/tls-ceiling.mjs as the ceiling. --agent: the route with
// the `echo` agent over its Unix socket (uds) or gRPC, against the same route without agents
// (instead of the ceiling), and the agent process profiled too (pinned to CPU 1, its CPU time
// divided by the same request count): the agent round trip's cost by part, on both sides.
// --dist: profile the build in DIR (a dist/ built from another commit, with node_modules beside
// it) instead of ./dist.
//
// Each process runs pinned to CPU 0 with --cpu-prof (the proxy's own V8 flags), is warmed up,
// then h2load (CPU 1) sends it a fixed number of requests; it is stopped with SIGTERM (so the
// profile is written) and its samples are grouped by where the function lives: a folder of
// dist/ (routing, pipeline, observability, ...), a library (effect, undici, prom-client), Node's
// own modules by area (HTTP parser and server, streams and sockets, timers and the rest), the
// garbage collector, and V8's (program) bucket (native code that is none of these: the libuv
// loop, syscalls not inside a JS frame). Idle samples are left out; startup and warm-up are
// in the profile but cut off by time (only samples after the measured load started count).
// µs per request = the process's CPU time during the measured load (from /proc) x each
// group's share of the busy samples in that window.
import { execFileSync } from "node:child_process"
import https from "node:https"
import { existsSync, readFileSync, readdirSync, mkdirSync, writeFileSync } from "node:fs"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { PROXY_V8_FLAGS } from "../dist/RuntimeFlags.js"
import { bodyArgs, cpuUs, requireCommands, sentinelConfig, start, startUpstream, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    requests: { type: "string", default: "100000" },
    conns: { type: "string", default: "50" },
    path: { type: "string" },
    "body-bytes": { type: "string", default: "0" },
    "port-base": { type: "string", default: "18680" },
    config: { type: "string" },
    json: { type: "string" },
    top: { type: "string", default: "0" },
    h2: { type: "boolean", default: false },
    files: { type: "boolean", default: false },
    agent: { type: "string" },
    dist: { type: "string", default: join(root, "dist") }
  }
})
requireCommands(["h2load", "taskset"])
const work = workDir("sentinel-profile-")
const bodyBytes = Number(opt["body-bytes"])
opt.path ??= bodyBytes > 0 ? "/post" : "/small"
const post = bodyArgs(work, bodyBytes)
const UPSTREAM_PORT = Number(opt["port-base"])
const upstreamKind = await startUpstream(work, UPSTREAM_PORT)

const certFile = join(work, "cert.pem"), keyFile = join(work, "key.pem")
if (opt.h2) {
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", keyFile, "-out", certFile, "-days", "7", "-subj", "/CN=localhost"
  ], { stdio: ["ignore", "ignore", "pipe"] })
}
const ready = async (port) => {
  if (!opt.h2) return waitReady(port, opt.path)
  for (let i = 0; i < 1200; i++) {
    const ok = await new Promise((resolve) => {
      https.get({ host: "127.0.0.1", port, path: opt.path, agent: false, rejectUnauthorized: false }, (res) => {
        res.resume()
        res.on("end", () => resolve(res.statusCode === 200))
      }).on("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`port ${port} never became ready`)
}
const load = (port, n) => {
  const args = opt.h2
    ? [...post, "-n", String(n), "-c", "10", "-m", "10", `https://127.0.0.1:${port}${opt.path}`]
    : ["--h1", ...post, "-n", String(n), "-c", opt.conns, `http://127.0.0.1:${port}${opt.path}`]
  const out = execFileSync("taskset", ["-c", "1", "h2load", ...args], { encoding: "utf8" })
  const ok = Number(/status codes: (\d+) 2xx/.exec(out)?.[1] ?? 0)
  if (ok !== n) throw new Error(`${ok} of ${n} requests answered 2xx`)
}

/** The group a profile node's function belongs to. */
const groupOf = (frame) => {
  const url = frame.url
  const fn = frame.functionName
  if (url === "") {
    if (fn === "(garbage collector)") return "GC"
    if (fn === "(program)") return "V8/libuv native (program)"
    if (fn === "(idle)") return "idle"
    if (/^write(v|Buffer|Latin1String|Utf8String|AsciiString|UCS2String)$/.test(fn)) return "socket/file writes (syscalls)"
    if (/^(read|readStart|onStreamRead)$/.test(fn)) return "socket reads"
    return "native builtins"
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (nm) return nm[1] === "effect" || nm[1].startsWith("@effect/") ? "effect runtime" : nm[1]
  const dist = /\/dist\/([^/]+)\/(.*)$/.exec(url)
  if (dist && (url.includes(root) || url.includes(opt.dist))) return opt.files ? `sentinel ${dist[1]}/${dist[2]}` : `sentinel ${dist[1]}/`
  if (/\/dist\/[^/]+\.js$/.test(url)) return "sentinel (top)"
  if (url.startsWith("node:")) {
    if (/_http_(server|incoming|common)|http_parser|internal\/http/.test(url)) return "node http server + parser"
    if (/_http_outgoing/.test(url)) return "node http response writing"
    if (/internal\/streams|node:stream|node:net|stream_base|internal\/net/.test(url)) return "node streams + sockets"
    if (/timers/.test(url)) return "node timers"
    if (/internal\/process\/task_queues|promises/.test(url)) return "node microtasks/promises"
    if (/internal\/perf|diagnostics_channel/.test(url)) return "node perf/diagnostics"
    return "node other"
  }
  if (url.includes("bench/ceiling.mjs") || url.includes("bench/ceiling-parts.mjs")) return "ceiling script"
  return "other JS"
}

/** Busy time per group (µs of samples) after `fromUs` (profile clock). */
const attribute = (profile, fromUs) => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const groups = new Map()
  const fns = new Map()
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]
    if (t < fromUs) continue
    const dt = profile.timeDeltas[i + 1] ?? 0
    const g = groupOf(byId.get(profile.samples[i]).callFrame)
    if (g === "idle") continue
    groups.set(g, (groups.get(g) ?? 0) + dt)
    const f = byId.get(profile.samples[i]).callFrame
    const key = `${g}: ${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/(node_modules|dist)\//, "")}:${f.lineNumber + 1}`
    fns.set(key, (fns.get(key) ?? 0) + dt)
  }
  return { groups, fns }
}

/** Starts `argv` on `cpu` with --cpu-prof into a fresh directory. */
const startProfiled = (name, cpu, argv, env) => {
  const dir = join(work, `prof-${name}`)
  mkdirSync(dir, { recursive: true })
  const child = start(["taskset", "-c", String(cpu), process.execPath, "--cpu-prof", `--cpu-prof-dir=${dir}`, ...argv], env)
  return { name, dir, child }
}
/** Stops a profiled process (SIGTERM, so the profile is written) and attributes its samples after `fromUs`. */
const collect = async ({ name, dir, child }, fromUs, cpuPerReq) => {
  const exited = new Promise((r) => child.once("exit", r))
  child.kill("SIGTERM")
  await exited
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"))
  if (file === undefined) throw new Error(`${name}: no profile written`)
  const { groups, fns } = attribute(JSON.parse(readFileSync(join(dir, file), "utf8")), fromUs)
  return { name, cpuPerReq, groups, fns }
}

const runOne = async (name, argv, env, port, agent) => {
  const p = startProfiled(name, 0, argv, env)
  const child = p.child
  await ready(port)
  load(port, 20000) // warm-up: JIT, pools
  const N = Number(opt.requests)
  // profile clock = monotonic µs; hrtime is the same clock
  const fromUs = Number(process.hrtime.bigint() / 1000n)
  const c0 = cpuUs(child.pid)
  const a0 = agent ? cpuUs(agent.child.pid) : 0
  load(port, N)
  const cpuPerReq = (cpuUs(child.pid) - c0) / N
  const agentCpuPerReq = agent ? (cpuUs(agent.child.pid) - a0) / N : 0
  const out = [await collect(p, fromUs, cpuPerReq)]
  if (agent) out.push(await collect(agent, fromUs, agentCpuPerReq))
  return out
}

const results = []
const sentinelPort = UPSTREAM_PORT + 10
const tls = opt.h2 ? { tls: { certFile, keyFile, sessionResumption: true } } : {}
const config = opt.config ?? sentinelConfig(work, "profile", { port: sentinelPort, upstreamPort: UPSTREAM_PORT, accessLog: true, ...tls })
// The service from the tsc modules (dist/Launch.js), not the bundle dist/main.js runs: the same
// code, and its samples keep their source folders (pipeline/, observability/, ...) for the parts.
// A build from before the bundle has only main.js.
const sentinelEntry = existsSync(join(opt.dist, "Launch.js")) ? join(opt.dist, "Launch.js") : join(opt.dist, "main.js")
results.push(...(await runOne("sentinel", [...PROXY_V8_FLAGS, sentinelEntry, "run", "-c", config], { SENTINEL_NO_RESPAWN: "1" }, sentinelPort)))
if (opt.agent !== undefined) {
  if (opt.agent !== "uds" && opt.agent !== "grpc") throw new Error("--agent is uds or grpc")
  const port = UPSTREAM_PORT + 12
  const sock = join(work, "echo.sock")
  const grpcPort = UPSTREAM_PORT + 13
  const agent = startProfiled("echo-agent", 1, [
    join(root, "dist/agents-bin/echo/main.js"), ...(opt.agent === "uds" ? ["--socket", sock] : ["--grpc", `127.0.0.1:${grpcPort}`])
  ], {})
  const cfg = sentinelConfig(work, "profile-agent", {
    port, upstreamPort: UPSTREAM_PORT, accessLog: true, agentFailureMode: "closed", ...tls,
    ...(opt.agent === "uds" ? { agentSocket: sock } : { agentGrpc: `http://127.0.0.1:${grpcPort}` })
  })
  results.push(...(await runOne(`sentinel+echo-${opt.agent}`, [...PROXY_V8_FLAGS, sentinelEntry, "run", "-c", cfg], { SENTINEL_NO_RESPAWN: "1" }, port, agent)))
} else {
  const ceilingPort = UPSTREAM_PORT + 11
  results.push(...(await runOne(
    "ceiling",
    ["--max-semi-space-size=64", join(root, opt.h2 ? "bench/tls-ceiling.mjs" : "bench/ceiling.mjs")],
    { PORT: String(ceilingPort), UPSTREAM_URL: `http://127.0.0.1:${UPSTREAM_PORT}`, CERT: certFile, KEY: keyFile, RESUME: "1" },
    ceilingPort
  )))
}

console.log(`CPU µs per request by part, ${opt.requests} ${bodyBytes > 0 ? `POSTs of ${bodyBytes} bytes` : "requests"} to ${opt.path} (${opt.h2 ? "HTTP/2 over TLS, h2load -c10 -m10" : `h2load --h1 -c${opt.conns}`}); upstream: ${upstreamKind}`)
const names = [...new Set(results.flatMap((r) => [...r.groups.keys()]))]
const share = (r, g) => {
  const total = [...r.groups.values()].reduce((a, b) => a + b, 0)
  return (r.groups.get(g) ?? 0) / total
}
names.sort((a, b) => share(results[0], b) - share(results[0], a))
console.log(`| part | ${results.map((r) => `${r.name} µs/req (share)`).join(" | ")} |`)
console.log(`|---|${results.map(() => "---").join("|")}|`)
for (const g of names) {
  console.log(`| ${g} | ${results.map((r) => `${(r.cpuPerReq * share(r, g)).toFixed(1)} (${(100 * share(r, g)).toFixed(0)} %)`).join(" | ")} |`)
}
console.log(`| **total (CPU from /proc)** | ${results.map((r) => `**${r.cpuPerReq.toFixed(1)}**`).join(" | ")} |`)
for (const r of Number(opt.top) > 0 ? results : []) {
  const total = [...r.groups.values()].reduce((a, b) => a + b, 0)
  console.log(`\n${r.name}: the ${opt.top} functions with the most self time`)
  for (const [k, v] of [...r.fns].sort((a, b) => b[1] - a[1]).slice(0, Number(opt.top))) {
    console.log(`  ${(r.cpuPerReq * v / total).toFixed(2).padStart(6)} µs  ${k}`)
  }
}
if (opt.json) writeFileSync(opt.json, JSON.stringify(results.map((r) => ({ ...r, groups: Object.fromEntries(r.groups), fns: Object.fromEntries(r.fns) })), null, 1))
process.exit(0)
