#!/usr/bin/env node
// Resident memory of an idle Sentinel (and of the Node ceiling), A/B: each variant is started
// `--starts` times, in turn, on the benchmark config (full pipeline, access log to a file),
// sent a few requests, and left alone until V8's memory reducer has given the young
// generation grown during start-up back (it runs 8-35 s after start here, depending on the
// machine's load): VmRSS is sampled every second, and read once it has dropped below 80 % of
// its value after start and held for 3 s, or after `--settle` seconds at most. Then VmRSS,
// its anonymous and file-backed parts (/proc/PID/status) are read and the process is stopped.
// Medians per variant, and the seconds it took to settle.
//
//   npm run build && node bench/idle-rss.mjs [--starts 3] [--settle 60] [name=dist-dir[@MB] ...]
//
// Variants as in cpu-ab.mjs (common.mjs parseVariant): `name=dist-dir` (a build of another
// commit), `name=dist@16` (SENTINEL_YOUNG_GENERATION_MB=16), `name=ceiling`, each optionally
// followed by `,--v8-flag`. Default: `sentinel=dist ceiling=ceiling`.
import { readFileSync } from "node:fs"
import http from "node:http"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { median, parseVariant, sentinelConfig, start, startUpstream, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { starts: { type: "string", default: "3" }, settle: { type: "string", default: "60" } }
})
const variants = (positionals.length > 0 ? positionals : ["sentinel=dist", "ceiling=ceiling"]).map((v) => ({ ...parseVariant(v), samples: [] }))

const work = workDir("sentinel-idle-rss-")
const UPSTREAM_PORT = 18880
await startUpstream(work, UPSTREAM_PORT)
const kib = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN)
const get = (port) =>
  new Promise((res, rej) => http.get({ host: "127.0.0.1", port, path: "/small" }, (r) => r.resume().on("end", res)).on("error", rej))

let port = 18890
for (let s = 0; s < Number(opt.starts); s++) {
  for (const v of variants) {
    const p = port++
    const child =
      v.dir === "ceiling"
        ? start([process.execPath, ...v.flags, join(root, "bench/ceiling.mjs")], { PORT: String(p), UPSTREAM_URL: `http://127.0.0.1:${UPSTREAM_PORT}` })
        : start([process.execPath, ...v.flags, join(v.dir, "main.js"), "run", "-c", sentinelConfig(work, `${v.name}-${s}`, { port: p, upstreamPort: UPSTREAM_PORT })], {
            SENTINEL_NO_RESPAWN: "1"
          })
    await waitReady(p)
    for (let i = 0; i < 20; i++) await get(p)
    const started = kib(child.pid, "VmRSS")
    let settledAt = Number(opt.settle), heldFor = 0, last = started
    for (let t = 1; t <= Number(opt.settle); t++) {
      await new Promise((r) => setTimeout(r, 1000))
      const now = kib(child.pid, "VmRSS")
      heldFor = now < 0.8 * started && Math.abs(now - last) < 0.01 * last ? heldFor + 1 : 0
      last = now
      if (heldFor >= 3) {
        settledAt = t
        break
      }
    }
    v.samples.push({ settledAt, rss: kib(child.pid, "VmRSS"), anon: kib(child.pid, "RssAnon"), file: kib(child.pid, "RssFile"), hwm: kib(child.pid, "VmHWM") })
    child.kill("SIGKILL")
  }
}
const mib = (xs) => (median(xs) / 1024).toFixed(1)
console.log(`Idle RSS MiB once settled (at most ${opt.settle} s), medians of ${opt.starts} starts (flags: ${variants.map((v) => `${v.name} ${v.flags.join(" ")}`).join("; ")})`)
console.log("| variant | VmRSS | anonymous | file-backed | peak during start (VmHWM) | VmRSS per start | settled after s |")
console.log("|---|---|---|---|---|---|---|")
for (const v of variants) {
  const col = (k) => v.samples.map((x) => x[k])
  console.log(`| ${v.name} | ${mib(col("rss"))} | ${mib(col("anon"))} | ${mib(col("file"))} | ${mib(col("hwm"))} | ${col("rss").map((x) => (x / 1024).toFixed(1)).join(" ")} | ${col("settledAt").join(" ")} |`)
}
process.exit(0)
