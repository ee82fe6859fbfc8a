import { describe, expect, it } from "@effect/vitest"
import { spawn, type ChildProcess } from "node:child_process"
import { EventEmitter } from "node:events"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import ts from "typescript"
import { afterAll, beforeAll } from "vitest"
import cluster from "node:cluster"
import { DEFAULT_BACKOFF, nextRestartDelay, resolveWorkerCount, schedulingPolicy, workerExecArgv } from "../../src/server/Cluster.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, "../..")
const fixture = path.join(here, "Cluster.fixture.mjs")

// The child processes run plain Node, so the modules under test are transpiled
// into a directory below node_modules (where their package imports resolve).
let outDir: string
beforeAll(() => {
  outDir = path.join(root, "node_modules", ".cache", `sentinel-cluster-test-${process.pid}`)
  // Cluster.ts and every module it imports relatively, transitively.
  const pending = ["src/server/Cluster.ts"]
  const done = new Set<string>()
  while (pending.length > 0) {
    const rel = pending.pop()!
    if (done.has(rel)) continue
    done.add(rel)
    const js = ts.transpileModule(fs.readFileSync(path.join(root, rel), "utf8"), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 }
    }).outputText
    for (const m of js.matchAll(/from\s+"(\.{1,2}\/[^"]+)\.js"/g)) {
      pending.push(path.join(path.dirname(rel), `${m[1]}.ts`))
    }
    const dest = path.join(outDir, rel.replace(/\.ts$/, ".js"))
    fs.mkdirSync(path.dirname(dest), { recursive: true })
    fs.writeFileSync(dest, js)
  }
})
afterAll(() => {
  fs.rmSync(outDir, { recursive: true, force: true })
})

type Ev = Record<string, any>

/** The fixture's primary as a child process, with its JSON-line events. */
const startCluster = (env: Record<string, string>) => {
  const child: ChildProcess = spawn(process.execPath, [fixture], {
    env: {
      ...process.env,
      CLUSTER_MODULE: path.join(outDir, "src/server/Cluster.js"),
      METRICS_MODULE: path.join(outDir, "src/observability/Metrics.js"),
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const events: Array<Ev> = []
  const bus = new EventEmitter()
  let buf = ""
  let stderr = ""
  child.stdout!.on("data", (d: Buffer) => {
    buf += d.toString("utf8")
    let i: number
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (line.trim() === "") continue
      try {
        events.push(JSON.parse(line))
      } catch {
        events.push({ raw: line })
      }
      bus.emit("event")
    }
  })
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString("utf8")))
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal }))
  )
  /** Resolves with the matching events once `pred` holds for `n` of them (bounded wait). */
  const waitFor = (pred: (e: Ev) => boolean, n = 1, timeoutMs = 20_000): Promise<Array<Ev>> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hits = events.filter(pred)
        if (hits.length >= n) {
          cleanup()
          resolve(hits)
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out waiting for events; got:\n${events.map((e) => JSON.stringify(e)).join("\n")}\n${stderr}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        bus.off("event", check)
      }
      bus.on("event", check)
      check()
    })
  return { child, events, waitFor, exited, stderr: () => stderr }
}

const get = (port: number, p: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: p, agent: false }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (c) => (body += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on("error", reject)
  })

describe("Cluster (pure)", () => {
  it("restart delay stays within [initial, max], doubles on quick crashes, resets after a stable run", () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 20_000 }), { maxLength: 40 }), (uptimes) => {
        let prev: number | undefined
        for (const up of uptimes) {
          const d = nextRestartDelay(prev, up)
          expect(d).toBeGreaterThanOrEqual(DEFAULT_BACKOFF.initialMs)
          expect(d).toBeLessThanOrEqual(DEFAULT_BACKOFF.maxMs)
          if (up >= DEFAULT_BACKOFF.stableMs || prev === undefined) expect(d).toBe(DEFAULT_BACKOFF.initialMs)
          else expect(d).toBe(Math.min(DEFAULT_BACKOFF.maxMs, prev * 2))
          prev = d
        }
      })
    )
  })

  it("workers accept connections themselves (SCHED_NONE) unless NODE_CLUSTER_SCHED_POLICY says otherwise", () => {
    expect(schedulingPolicy({})).toBe(cluster.SCHED_NONE)
    expect(schedulingPolicy({ NODE_CLUSTER_SCHED_POLICY: "rr" })).toBeUndefined()
    expect(schedulingPolicy({ NODE_CLUSTER_SCHED_POLICY: "none" })).toBeUndefined()
  })

  it("worker count and execArgv", () => {
    expect(resolveWorkerCount(3)).toBe(3)
    expect(resolveWorkerCount(0)).toBeGreaterThanOrEqual(1)
    expect(workerExecArgv(["--enable-source-maps"], ["--max-semi-space-size=64"])).toEqual([
      "--enable-source-maps",
      "--max-semi-space-size=64"
    ])
    expect(workerExecArgv(["--max-semi-space-size=16"], ["--max-semi-space-size=64"])).toEqual(["--max-semi-space-size=16"])
  })
})

describe("Cluster (processes)", () => {
  it("starts N workers, replaces a killed one, forwards signals, aggregates metrics, drains on SIGTERM", async () => {
    // Invariant: N workers serve; a SIGKILLed worker is replaced; SIGTERM lets an in-flight request finish and exits 0.
    const c = startCluster({ WORKERS: "2", METRICS: "1", SLOW_MS: "400" })
    try {
      const ready = await c.waitFor((e) => e.type === "worker-ready", 2)
      const listening = await c.waitFor((e) => e.type === "listening", 2)
      const port = listening[0].port
      expect(listening.every((l) => l.port === port)).toBe(true)
      expect(listening[0].execArgv).toContain("--max-semi-space-size=64")
      const [metricsEv] = await c.waitFor((e) => e.type === "metrics-listening")

      // kill one worker; the primary starts a new one in the same slot
      const victim = ready[0]
      process.kill(victim.pid, "SIGKILL")
      await c.waitFor((e) => e.type === "worker-exited" && e.pid === victim.pid && e.signal === "SIGKILL")
      const [restarted] = await c.waitFor((e) => e.type === "worker-ready" && e.slot === victim.slot && e.pid !== victim.pid)
      const alive = [restarted.pid, ready[1].pid]

      // forwarded signals reach every live worker
      c.child.kill("SIGHUP")
      const reloaded = await c.waitFor((e) => e.type === "reloaded", 2)
      expect(new Set(reloaded.map((e) => e.pid))).toEqual(new Set(alive))
      c.child.kill("SIGUSR1")
      const reopened = await c.waitFor((e) => e.type === "reopened", 2)
      expect(new Set(reopened.map((e) => e.pid))).toEqual(new Set(alive))

      // requests served; metrics aggregated over both workers
      for (let i = 0; i < 6; i++) expect((await get(port, "/")).status).toBe(200)
      const scrape = await get(metricsEv.port, "/metrics")
      expect(scrape.status).toBe(200)
      expect(scrape.body).toContain('sentinel_requests_total{route="r",method="GET",status="200"} 6')
      expect(scrape.body).toContain('sentinel_worker_restarts_total{reason="signal"} 1')
      expect(scrape.body).toContain("sentinel_cluster_workers 2")

      // an in-flight request completes across SIGTERM
      const slow = get(port, "/slow")
      await c.waitFor((e) => e.type === "slow-start")
      c.child.kill("SIGTERM")
      const res = await slow
      expect(res.status).toBe(200)
      expect(res.body).toMatch(/^slow /)
      expect(await c.exited).toEqual({ code: 0, signal: null })
      expect(c.events.filter((e) => e.type === "drained")).toHaveLength(2)
      expect(c.events.some((e) => e.type === "restart-scheduled" && e.slot !== victim.slot)).toBe(false)
    } finally {
      c.child.kill("SIGKILL")
    }
  })

  it("a worker that does not drain is killed after the graceful timeout + margin; exit code 1", async () => {
    const c = startCluster({ WORKERS: "1", GRACE: "300", MARGIN: "200" })
    try {
      const [l] = await c.waitFor((e) => e.type === "listening")
      const hung = get(l.port, "/hang").catch(() => "reset")
      await c.waitFor((e) => e.type === "hang-start")
      const t0 = Date.now()
      c.child.kill("SIGTERM")
      expect(await c.exited).toEqual({ code: 1, signal: null })
      expect(Date.now() - t0).toBeGreaterThanOrEqual(450)
      expect(Date.now() - t0).toBeLessThan(5000)
      expect(c.events.some((e) => e.type === "shutdown-forced" && e.remaining === 1)).toBe(true)
      expect(await hung).toBe("reset")
    } finally {
      c.child.kill("SIGKILL")
    }
  })

  it("a second SIGTERM exits at once", async () => {
    const c = startCluster({ WORKERS: "1", GRACE: "20000", REPEAT_GAP: "0" })
    try {
      const [l] = await c.waitFor((e) => e.type === "listening")
      void get(l.port, "/hang").catch(() => undefined)
      await c.waitFor((e) => e.type === "hang-start")
      c.child.kill("SIGTERM")
      await c.waitFor((e) => e.type === "shutdown-started")
      const t0 = Date.now()
      c.child.kill("SIGTERM")
      expect(await c.exited).toEqual({ code: 1, signal: null })
      expect(Date.now() - t0).toBeLessThan(3000)
    } finally {
      c.child.kill("SIGKILL")
    }
  })

  it("the same signal delivered twice at once (process group + forwarding wrapper) still drains", async () => {
    const c = startCluster({ WORKERS: "1", SLOW_MS: "300", REPEAT_GAP: "5000" })
    try {
      const [l] = await c.waitFor((e) => e.type === "listening")
      const slow = get(l.port, "/slow")
      await c.waitFor((e) => e.type === "slow-start")
      c.child.kill("SIGINT")
      c.child.kill("SIGINT")
      expect((await slow).status).toBe(200)
      expect(await c.exited).toEqual({ code: 0, signal: null })
      expect(c.events.some((e) => e.type === "drained")).toBe(true)
    } finally {
      c.child.kill("SIGKILL")
    }
  })

  it("a crash loop backs off exponentially up to the cap and does not spin", async () => {
    // Invariant: restart delays double from 50 ms and stay at the 200 ms cap; starts = restarts + 1.
    const c = startCluster({ WORKERS: "1", CRASH: "1", BACKOFF_MAX: "200", STABLE_MS: "60000" })
    try {
      const scheduled = await c.waitFor((e) => e.type === "restart-scheduled", 4)
      expect(scheduled.slice(0, 4).map((e) => e.delayMs)).toEqual([50, 100, 200, 200])
      c.child.kill("SIGTERM")
      expect((await c.exited).code).toBe(0)
      const starts = c.events.filter((e) => e.type === "worker-started").length
      const restarts = c.events.filter((e) => e.type === "restart-scheduled").length
      expect(starts).toBeLessThanOrEqual(restarts + 1)
      expect(c.events.some((e) => e.type === "worker-ready")).toBe(false)
    } finally {
      c.child.kill("SIGKILL")
    }
  })
})
