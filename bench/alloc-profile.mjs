#!/usr/bin/env node
// Bytes allocated per request, by the function that allocated them: Sentinel (the tsc modules,
// dist/Launch.js, so sites keep their source paths) and the Node ceiling, each alone on CPU 0
// under h2load (CPU 1), V8's sampling heap profiler counting collected objects too
// (bench/alloc-probe.mjs). What the young generation's size and the scavenges follow.
//
//   npm run build && node bench/alloc-profile.mjs [--requests 40000] [--warmup 10000]
//     [--body-bytes N] [--path P] [--top 25] [--port-base 18960]
import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { PROXY_V8_FLAGS } from "../dist/RuntimeFlags.js"
import { bodyArgs, requireCommands, sentinelConfig, start, startUpstream, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    requests: { type: "string", default: "40000" },
    warmup: { type: "string", default: "10000" },
    conns: { type: "string", default: "50" },
    path: { type: "string" },
    "body-bytes": { type: "string", default: "0" },
    top: { type: "string", default: "25" },
    "port-base": { type: "string", default: "18960" }
  }
})
requireCommands(["h2load", "taskset"])
const work = workDir("sentinel-alloc-")
const bodyBytes = Number(opt["body-bytes"])
opt.path ??= bodyBytes > 0 ? "/post" : "/small"
const post = bodyArgs(work, bodyBytes)
const UPSTREAM_PORT = Number(opt["port-base"])
await startUpstream(work, UPSTREAM_PORT)

const h2load = (port, n) =>
  execFileSync("taskset", ["-c", "1", "h2load", "--h1", ...post, "-n", String(n), "-c", opt.conns, `http://127.0.0.1:${port}${opt.path}`], { encoding: "utf8" })

/** Runs one process under the probe; returns its profile's self bytes by site. */
const measure = async (name, argv, env, port) => {
  const out = join(work, `${name}.heapprofile.json`)
  const flags = [...PROXY_V8_FLAGS, "--import", join(root, "bench/alloc-probe.mjs")]
  const child = start(["taskset", "-c", "0", process.execPath, ...flags, ...argv], { ...env, ALLOC_PROFILE_OUT: out })
  await waitReady(port, opt.path)
  h2load(port, Number(opt.warmup))
  child.kill("SIGUSR2")
  for (let i = 0; !existsSync(`${out}.started`); i++) {
    if (i === 500) throw new Error(`${name}: the allocation probe did not start`)
    await new Promise((r) => setTimeout(r, 10))
  }
  const done = h2load(port, Number(opt.requests))
  if (!/succeeded, 0 failed/.test(done)) throw new Error(`${name}: failed requests\n${done}`)
  child.kill("SIGTERM")
  await new Promise((r) => child.once("exit", r))
  const sites = new Map()
  let total = 0
  const walk = (node) => {
    const f = node.callFrame
    if (node.selfSize > 0) {
      const where = f.url === "" ? "(native)" : f.url.replace(/^file:\/\//, "").replace(`${root}/`, "").replace(/.*\/node_modules\//, "")
      const key = `${f.functionName || "(anonymous)"} ${where}:${f.lineNumber + 1}`
      sites.set(key, (sites.get(key) ?? 0) + node.selfSize)
      total += node.selfSize
    }
    for (const c of node.children) walk(c)
  }
  walk(JSON.parse(readFileSync(out, "utf8")).head)
  return { name, total, sites }
}

const n = Number(opt.requests)
const results = [
  await measure("sentinel", [join(root, "dist/Launch.js"), "run", "-c", sentinelConfig(work, "alloc", { port: UPSTREAM_PORT + 11, upstreamPort: UPSTREAM_PORT })], { SENTINEL_NO_RESPAWN: "1" }, UPSTREAM_PORT + 11),
  await measure("ceiling", [join(root, "bench/ceiling.mjs")], { PORT: String(UPSTREAM_PORT + 12), UPSTREAM_URL: `http://127.0.0.1:${UPSTREAM_PORT}` }, UPSTREAM_PORT + 12)
]
console.log(`Bytes allocated per request (sampled, collected objects included), ${n} requests to ${opt.path}${bodyBytes > 0 ? ` (${bodyBytes}-byte bodies)` : ""} after ${opt.warmup} to warm up`)
for (const r of results) {
  console.log(`\n${r.name}: ${(r.total / n / 1024).toFixed(2)} KiB per request; the ${opt.top} largest sites`)
  for (const [k, v] of [...r.sites].sort((a, b) => b[1] - a[1]).slice(0, Number(opt.top))) console.log(`${String(Math.round(v / n)).padStart(7)} B  ${k}`)
}
process.exit(0)
