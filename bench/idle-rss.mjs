#!/usr/bin/env node
// Resident memory of an idle Sentinel (and of the Node ceiling), A/B: each variant is started
// `--starts` times, in turn, on the benchmark config (full pipeline, access log to a file),
// sent a few requests, and left alone for `--settle` seconds, long enough for V8's memory
// reducer to give back the young generation grown during start-up (it runs 8-35 s after
// start here, depending on the machine's load). All variants of a start run side by side
// (idle processes hardly disturb each other). Then VmRSS, its anonymous and file-backed parts
// (/proc/PID/status) and the lowest VmRSS sampled (every second) are read and the processes
// are stopped. Medians per variant.
//
//   npm run build && node bench/idle-rss.mjs [--starts 3] [--settle 45] [--port-base 18880] [name=dist-dir[@MB] ...]
//
// --port-base P: the upstream listens on P, the variants on P+10 and up (two runs at once need
// different bases).
//
// Variants as in cpu-ab.mjs (common.mjs parseVariant): `name=dist-dir` (a build of another
// commit), `name=dist@16` (SENTINEL_YOUNG_GENERATION_MB=16), `name=ceiling`, each optionally
// followed by `,--v8-flag`. Default: `sentinel=dist ceiling=ceiling`.
import { readFileSync } from "node:fs"
import http from "node:http"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { CEILINGS, median, parseVariant, sentinelConfig, start, startUpstream, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { starts: { type: "string", default: "3" }, settle: { type: "string", default: "45" }, "port-base": { type: "string", default: "18880" } }
})
const variants = (positionals.length > 0 ? positionals : ["sentinel=dist", "ceiling=ceiling"]).map((v) => ({ ...parseVariant(v), samples: [] }))

const work = workDir("sentinel-idle-rss-")
const UPSTREAM_PORT = Number(opt["port-base"])
await startUpstream(work, UPSTREAM_PORT)
const kib = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN)
const get = (port) =>
  new Promise((res, rej) => http.get({ host: "127.0.0.1", port, path: "/small" }, (r) => r.resume().on("end", res)).on("error", rej))

let port = UPSTREAM_PORT + 10
for (let s = 0; s < Number(opt.starts); s++) {
  // all variants at once (idle processes hardly disturb each other), a fresh process each start
  for (const v of variants) {
    v.port = port++
    v.child =
      CEILINGS.includes(v.dir)
        ? start([process.execPath, ...v.flags, join(root, `bench/${v.dir}.mjs`)], { PORT: String(v.port), UPSTREAM_URL: `http://127.0.0.1:${UPSTREAM_PORT}` })
        : start([process.execPath, ...v.flags, join(v.dir, "main.js"), "run", "-c", sentinelConfig(work, `${v.name}-${s}`, { port: v.port, upstreamPort: UPSTREAM_PORT })], {
            SENTINEL_NO_RESPAWN: "1"
          })
  }
  for (const v of variants) {
    await waitReady(v.port)
    for (let i = 0; i < 20; i++) await get(v.port)
    v.min = Infinity
  }
  for (let t = 0; t < Number(opt.settle); t++) {
    await new Promise((r) => setTimeout(r, 1000))
    for (const v of variants) v.min = Math.min(v.min, kib(v.child.pid, "VmRSS"))
  }
  for (const v of variants) {
    v.samples.push({ rss: kib(v.child.pid, "VmRSS"), min: v.min, anon: kib(v.child.pid, "RssAnon"), file: kib(v.child.pid, "RssFile"), hwm: kib(v.child.pid, "VmHWM") })
    v.child.kill("SIGKILL")
  }
}
const mib = (xs) => (median(xs) / 1024).toFixed(1)
console.log(`Idle RSS MiB ${opt.settle} s after start, medians of ${opt.starts} starts (flags: ${variants.map((v) => `${v.name} ${v.flags.join(" ")}`).join("; ")})`)
console.log("| variant | VmRSS | anonymous | file-backed | lowest VmRSS seen | peak during start (VmHWM) | VmRSS per start |")
console.log("|---|---|---|---|---|---|---|")
for (const v of variants) {
  const col = (k) => v.samples.map((x) => x[k])
  console.log(`| ${v.name} | ${mib(col("rss"))} | ${mib(col("anon"))} | ${mib(col("file"))} | ${mib(col("min"))} | ${mib(col("hwm"))} | ${col("rss").map((x) => (x / 1024).toFixed(1)).join(" ")} |`)
}
process.exit(0)
