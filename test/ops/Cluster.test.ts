/**
 * Worker mode of the binary (`system { worker-threads 2 }`): the primary
 * supervises two workers, serves their metrics aggregated, replaces a killed
 * worker, passes SIGHUP on, and drains all workers on SIGTERM.
 */
import { afterEach, describe, expect, it } from "vitest"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { startEchoOrigin } from "../support/origins.js"
import { listenerPort, metricsPort, runLoad, sample, scrape, startSentinel, tempDir } from "./sentinelProcess.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

describe("worker-threads", { timeout: 120_000 }, () => {
  it("runs N workers, aggregates their metrics, replaces a killed worker, reloads them all, drains on SIGTERM", async () => {
    const origin = await startEchoOrigin()
    cleanups.push(() => origin.close())
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    writeFileSync(
      file,
      `system { worker-threads 2; graceful-shutdown-timeout-secs 5 }
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${origin.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability {
  metrics { enabled #true; address "127.0.0.1:0" }
  logging { access-log { enabled #false } }
}
`
    )
    const p = startSentinel(["run", "-c", file])
    cleanups.push(() => p.stop())
    const mport = await metricsPort(p)
    await p.waitForCount(/"cluster worker-ready"/, 2)
    const port = await listenerPort(p)

    // Every request is counted once, whichever worker served it.
    const load = await runLoad(port, { clients: 8, durationMs: 1000 })
    expect(load.failed).toBe(0)
    let text = await scrape(mport)
    expect(sample(text, 'sentinel_requests_total{route="all",method="GET",status="200"}')).toBe(load.ok)
    expect(sample(text, "sentinel_cluster_workers")).toBe(2)
    expect(text).toMatch(/^sentinel_build_info\{version="[^"]+",node="v\d+[^"]*"\} 1$/m)
    expect(text).toMatch(/^process_cpu_user_seconds_total /m)

    // Kill one worker: the primary schedules a restart and the slot comes back.
    const startedLine = p
      .stderr()
      .split("\n")
      .find((l) => l.includes('"cluster worker-started"') && JSON.parse(l).slot === 0)!
    const workerPid = JSON.parse(startedLine).pid as number
    expect(workerPid).not.toBe(p.pid)
    process.kill(workerPid, "SIGKILL")
    await p.waitFor(/"cluster worker-exited"[^\n]*"expected":false/)
    await p.waitFor(/"cluster restart-scheduled"/)
    await p.waitForCount(/"cluster worker-ready"/, 3)
    text = await scrape(mport)
    expect(sample(text, "sentinel_cluster_workers")).toBe(2)
    expect(sample(text, 'sentinel_worker_restarts_total{reason="signal"}')).toBe(1)
    expect((await runLoad(port, { clients: 4, durationMs: 300 })).failed).toBe(0)

    // SIGHUP on the primary reloads every worker.
    p.child.kill("SIGHUP")
    await p.waitForCount(/"configuration reloaded"/, 2)
    text = await scrape(mport)
    expect(sample(text, 'sentinel_config_reload_total{result="success"}')).toBe(2)

    p.child.kill("SIGTERM")
    await p.waitFor(/"cluster shutdown-complete"/)
    expect((await p.exited).code).toBe(0)
    expect(p.count(/"cluster worker-exited"[^\n]*"expected":true/)).toBe(2)
  })

  it("the primary drains its workers and exits when the supervising parent is killed (no orphaned cluster)", async () => {
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    writeFileSync(
      file,
      `system { worker-threads 2; graceful-shutdown-timeout-secs 1 }
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "127.0.0.1:9" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`
    )
    // `run` re-executes itself: p.pid is the supervising parent, the cluster primary its child
    const p = startSentinel(["run", "-c", file])
    cleanups.push(() => p.stop())
    await p.waitForCount(/"cluster worker-ready"/, 2)
    const pids = [...p.stderr().matchAll(/"pid":(\d+)/g)].map((m) => Number(m[1])).filter((pid) => pid !== p.pid)
    expect(pids.length).toBeGreaterThan(0)
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0)
        return true
      } catch {
        return false
      }
    }
    p.child.kill("SIGKILL")
    await p.exited
    const deadline = Date.now() + 15_000
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(pids.filter(alive)).toEqual([])
  })
})
