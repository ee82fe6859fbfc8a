#!/usr/bin/env node
// Worker scaling: Sentinel with `worker-threads 1` (one process, CPU 0) against
// `worker-threads 2` (a node:cluster primary and two workers, CPUs 0 and 1), in one run.
//
//   npm run build && node bench/workers-bench.mjs [--rounds 3] [--duration 8] [--warmup 2] \
//     [--conns 50] [--path /small] [--close]
//
// `--close` sends `Connection: close`: a new connection per request, so the cost of accepting
// shows (the workers accept on the shared socket themselves; with NODE_CLUSTER_SCHED_POLICY=rr
// node's primary accepts every connection and hands it to a worker over IPC); with keep-alive
// (the default) the 50 connections are accepted once.
//
// This machine has 2 cores and the load generator (wrk) and the upstream (nginx, 1 worker)
// need CPU too; they run on CPU 1 in both modes. So with 2 workers the proxy gets CPU 0 and
// what wrk and nginx leave of CPU 1, and raw req/s cannot show 2x. The CPU each process spent
// (user + system from /proc: the primary, every worker, wrk, nginx) is read over each run,
// which accounts for that:
//
// - `req per proxy CPU-s` = requests / the proxy's CPU seconds (primary + workers): the
//   proxy's efficiency, which a worker that waits on another, IPC per request or a shared
//   bottleneck would lower;
// - `scaling` = 2 x (req per proxy CPU-s with 2 workers) / (the same with 1 worker), per
//   round, median: what two workers on two free cores serve against one worker on one (each
//   worker busy: the workers' CPU split is shown to check the balance). That is the figure to
//   read on a shared machine, where the single process rarely gets its whole core;
// - the raw ratio of req/s and each process's CPU share are printed as well.
//
// Both proxies start once and stay up (JIT warm); runs alternate between them, round after
// round, and the table gives medians.
import { readFileSync } from "node:fs"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { PROXY_V8_FLAGS } from "../dist/RuntimeFlags.js"
import { cpuUs, median, pin, requireCommands, runWrk, sentinelConfig, start, startUpstream, treeCpuUs, waitedChildrenCpuUs, waitReady, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "8" },
    warmup: { type: "string", default: "2" },
    conns: { type: "string", default: "50" },
    path: { type: "string", default: "/small" },
    close: { type: "boolean", default: false }
  }
})
requireCommands(["wrk", "nginx", "taskset"])
const work = workDir("sentinel-workers-")
const UPSTREAM_PORT = 18780
const upstreamKind = await startUpstream(work, UPSTREAM_PORT)
const nginxMaster = Number(readFileSync(join(work, "nginx.pid"), "utf8").trim())

const modes = [
  { name: "1 worker", workers: 1, cpus: "0", port: 18781 },
  { name: "2 workers", workers: 2, cpus: "0,1", port: 18782 }
]
for (const m of modes) {
  const config = sentinelConfig(work, m.name.replace(" ", "-"), { port: m.port, upstreamPort: UPSTREAM_PORT, workerThreads: m.workers })
  m.child = start(["taskset", "-c", m.cpus, process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c", config], { SENTINEL_NO_RESPAWN: "1" })
}
for (const m of modes) await waitReady(m.port, opt.path)

const childrenOf = (pid) => readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)
/** CPU µs of the proxy's processes: [primary or single process, ...workers]. */
const proxyCpu = (m) => [cpuUs(m.child.pid), ...(m.workers > 1 ? childrenOf(m.child.pid).map(cpuUs) : [])]
/** wrk's CPU µs: it runs as this script's child (runWrk's execFileSync). */
const waitedChildrenUs = () => waitedChildrenCpuUs(process.pid)
const url = (m) => `http://127.0.0.1:${m.port}${opt.path}`
const wrkArgs = { conns: Number(opt.conns), seconds: Number(opt.duration), headers: opt.close ? ["Connection: close"] : [] }

const runs = Object.fromEntries(modes.map((m) => [m.name, []]))
for (let round = 1; round <= Number(opt.rounds); round++) {
  for (const m of modes) {
    runWrk(url(m), { ...wrkArgs, seconds: Number(opt.warmup) })
    const p0 = proxyCpu(m), n0 = treeCpuUs(nginxMaster), w0 = waitedChildrenUs(), t0 = Date.now()
    const r = runWrk(url(m), wrkArgs)
    const wall = (Date.now() - t0) * 1000
    const p1 = proxyCpu(m)
    const per = p1.map((c, i) => c - p0[i])
    const proxyUs = per.reduce((a, b) => a + b, 0)
    const run = {
      rps: r.rps,
      errors: r.errors,
      p99: r.p99,
      proxyUs,
      perProcessShare: per.map((c) => c / wall),
      nginxShare: (treeCpuUs(nginxMaster) - n0) / wall,
      wrkShare: (waitedChildrenUs() - w0) / wall,
      requests: r.requests,
      reqPerCpuS: r.requests / (proxyUs / 1e6)
    }
    runs[m.name].push(run)
    console.error(
      `round ${round} ${m.name.padEnd(9)} ${r.rps.toFixed(0).padStart(6)} req/s  proxy ${(proxyUs / r.requests).toFixed(1)} µs/req  ` +
        `${run.reqPerCpuS.toFixed(0)} req per proxy CPU-s  CPU shares [${run.perProcessShare.map((s) => s.toFixed(2)).join(" ")}]  nginx ${run.nginxShare.toFixed(2)}  wrk ${run.wrkShare.toFixed(2)}  errors ${r.errors}`
    )
  }
}

const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
const one = runs["1 worker"], two = runs["2 workers"]
const med = (rs, f) => median(rs.map(f))
const scaling = median(two.map((r, i) => (2 * r.reqPerCpuS) / one[i].reqPerCpuS))
const rawRatio = median(two.map((r, i) => r.rps / one[i].rps))
console.log(`Worker scaling, ${opt.rounds} interleaved rounds of ${opt.duration} s (wrk -t1 -c${opt.conns} ${opt.path}${opt.close ? " Connection: close" : ""} on CPU 1 with ${upstreamKind}); medians; load average ${load}`)
console.log("| mode | req/s | raw vs 1 worker | proxy CPU µs/req | req per proxy CPU-s | scaling (2 x efficiency ratio) | CPU share per process (primary, workers) | nginx / wrk CPU share | p99 ms | errors |")
console.log("|---|---|---|---|---|---|---|---|---|---|")
for (const m of modes) {
  const rs = runs[m.name]
  const rps = med(rs, (r) => r.rps), eff = med(rs, (r) => r.reqPerCpuS)
  const one_ = m.workers === 1
  const shares = rs[0].perProcessShare.map((_, i) => med(rs, (r) => r.perProcessShare[i]).toFixed(2)).join(" / ")
  console.log(
    `| ${m.name} | ${rps.toFixed(0)} | ${one_ ? "1.00" : rawRatio.toFixed(2)} | ${med(rs, (r) => r.proxyUs / r.requests).toFixed(1)} | ${eff.toFixed(0)} | ${one_ ? "1.00" : scaling.toFixed(2)} | ${shares} | ${med(rs, (r) => r.nginxShare).toFixed(2)} / ${med(rs, (r) => r.wrkShare).toFixed(2)} | ${med(rs, (r) => r.p99).toFixed(2)} | ${rs.reduce((a, r) => a + r.errors, 0)} |`
  )
}
process.exit(0)
