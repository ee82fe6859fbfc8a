/**
 * One process per core: `system { worker-threads N }` (0 = one per core).
 *
 * The primary serves no traffic. It forks N workers with `node:cluster`
 * (workers share the listening sockets), restarts a worker that exits
 * unexpectedly with capped exponential backoff (a crash loop waits up to
 * `backoff.maxMs` between attempts, it never spins), forwards SIGHUP (reload
 * config) and SIGUSR1 (reopen logs) to the workers, and on SIGTERM/SIGINT asks
 * every worker to drain, exiting once all have (or after the graceful timeout
 * plus a margin, killing what is left). A second SIGTERM/SIGINT exits at once.
 * It can also serve `/metrics` aggregated over all workers.
 *
 * How `Program.ts` (behind `main.ts`) uses it (the same entry file runs in both roles):
 * ```ts
 * if (config.system.workerThreads === 1) { ...run in process... } else {
 *   process.exit(await runCluster({
 *     workers: config.system.workerThreads,
 *     gracefulTimeoutMs: Duration.toMillis(config.system.gracefulShutdownTimeout),
 *     metrics: { host: "127.0.0.1", port: 9090, path: "/metrics" },   // from observability.metrics
 *     onEvent: (e) => log(e),
 *     workerMain: async () => {
 *       // build the proxy in this worker, e.g. a scope + Sentinel.make(config)
 *       return {
 *         shutdown: () => Effect.runPromise(Scope.close(scope, Exit.void)),  // drain and release
 *         reload: () => ...,            // SIGHUP on the primary
 *         reopenLogs: () => ...,        // SIGUSR1 on the primary
 *         metricsRegistry: () => metrics.registry
 *       }
 *     }
 *   }))
 * }
 * ```
 * Workers must not bind the metrics listener themselves in cluster mode.
 * Signal handlers are installed for SIGUSR1 in both roles, which also keeps
 * Node from starting its inspector on that signal.
 */
import { PROXY_V8_FLAGS } from "../RuntimeFlags.js"
import cluster, { type Worker } from "node:cluster"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import type { Registry } from "prom-client"
import { formatErrorLine } from "../observability/ErrorLine.js"
import { ClusterMetrics } from "../observability/Metrics.js"
import { collectClusterMetrics, installWorkerMetricsResponder } from "../observability/ClusterIpc.js"
import { newTicketKeys, setTicketKeys, TICKET_KEY_ROTATION_MS, TICKET_KEYS_ENV } from "./TicketKeys.js"

// ---------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------

/** `worker-threads` to a process count: 0 = one per core (at least 1). */
export const resolveWorkerCount = (workerThreads: number): number =>
  workerThreads > 0 ? Math.floor(workerThreads) : Math.max(1, os.availableParallelism())

export interface BackoffOptions {
  /** First restart delay. Default 100 ms. */
  readonly initialMs: number
  /** Cap on the restart delay. Default 30000 ms. */
  readonly maxMs: number
  /** A worker that ran this long is considered healthy: its next restart starts from `initialMs`. Default 10000 ms. */
  readonly stableMs: number
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 30_000, stableMs: 10_000 }

/**
 * Delay before restarting a worker that ran `uptimeMs` and whose previous
 * restart delay was `previousMs` (undefined for the first crash): doubles per
 * quick crash up to `maxMs`, back to `initialMs` after a stable run.
 */
export const nextRestartDelay = (
  previousMs: number | undefined,
  uptimeMs: number,
  o: BackoffOptions = DEFAULT_BACKOFF
): number =>
  previousMs === undefined || uptimeMs >= o.stableMs ? o.initialMs : Math.min(o.maxMs, Math.max(o.initialMs, previousMs * 2))

/**
 * How connections reach the workers: each worker accepts on the shared listening socket
 * itself (`SCHED_NONE`, the kernel picks the worker), unless `NODE_CLUSTER_SCHED_POLICY`
 * (node's own variable: "rr" or "none") says otherwise. node's default on Linux, round-robin,
 * has the primary accept every connection and pass it to a worker over IPC: with a new
 * connection per request that cost the primary 0.15-0.25 of a core and two workers scaled
 * 1.42x instead of 2.4x (bench/README.md, "Workers").
 */
export const schedulingPolicy = (env: Readonly<Record<string, string | undefined>>): number | undefined =>
  env["NODE_CLUSTER_SCHED_POLICY"] === undefined ? cluster.SCHED_NONE : undefined

/** Worker `execArgv`: the parent's flags plus a young generation sized for a proxy (DESIGN.md §2). */
export const workerExecArgv = (parent: ReadonlyArray<string>, extra: ReadonlyArray<string>): Array<string> => {
  const out = [...parent]
  for (const flag of extra) {
    const name = flag.split("=")[0]
    if (!out.some((f) => f.split("=")[0] === name)) out.push(flag)
  }
  return out
}

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/** What a worker's main returns: how to drain it and how to apply the forwarded signals. */
export interface WorkerHooks {
  /** Stop accepting, drain in-flight requests, release everything. The worker exits 0 when it resolves. */
  readonly shutdown: () => Promise<void>
  /** Reload the configuration (SIGHUP on the primary). */
  readonly reload?: (() => void | Promise<void>) | undefined
  /** Reopen log files (SIGUSR1 on the primary, after logrotate). */
  readonly reopenLogs?: (() => void | Promise<void>) | undefined
  /** The worker's registry, for metrics aggregated by the primary. */
  readonly metricsRegistry?: (() => Registry) | undefined
}

export type ClusterEvent =
  | { readonly type: "worker-started"; readonly slot: number; readonly pid: number }
  | { readonly type: "worker-ready"; readonly slot: number; readonly pid: number }
  | {
      readonly type: "worker-exited"
      readonly slot: number
      readonly pid: number
      readonly code: number | null
      readonly signal: string | null
      readonly expected: boolean
    }
  | { readonly type: "restart-scheduled"; readonly slot: number; readonly delayMs: number }
  | { readonly type: "signal"; readonly signal: string }
  | { readonly type: "shutdown-started"; readonly workers: number }
  | { readonly type: "shutdown-forced"; readonly remaining: number }
  | { readonly type: "shutdown-complete"; readonly code: number }
  | { readonly type: "metrics-listening"; readonly host: string; readonly port: number }
  | { readonly type: "metrics-error"; readonly message: string }
  | { readonly type: "worker-error"; readonly slot: number; readonly message: string }

export interface ClusterOptions {
  /** `system { worker-threads }`: processes to run; 0 = one per core. */
  readonly workers: number
  /** `system { graceful-shutdown-timeout-secs }` in ms: how long workers may drain. */
  readonly gracefulTimeoutMs: number
  /** Extra time after `gracefulTimeoutMs` before remaining workers are killed. Default 5000 ms. */
  readonly shutdownMarginMs?: number | undefined
  /** Restart backoff. Defaults: `DEFAULT_BACKOFF`. */
  readonly backoff?: Partial<BackoffOptions> | undefined
  /** V8 flags added to the workers' execArgv. Default `PROXY_V8_FLAGS` (RuntimeFlags.ts). */
  readonly execArgv?: ReadonlyArray<string> | undefined
  /** Script the workers run. Default: the primary's own entry (`process.argv[1]`). */
  readonly exec?: string | undefined
  /** Arguments for the workers. Default: the primary's arguments. */
  readonly args?: ReadonlyArray<string> | undefined
  /** Serve metrics aggregated over all workers from the primary. Default: not served. */
  readonly metrics?: { readonly host: string; readonly port: number; readonly path?: string | undefined } | undefined
  /** How long a scrape waits for the workers' answers. Default 2000 ms. */
  readonly metricsTimeoutMs?: number | undefined
  /** A second SIGTERM/SIGINT counts as "exit now" only this long after the first. Default 500 ms. */
  readonly repeatSignalGapMs?: number | undefined
  /** Supervision events (for the primary's log). */
  readonly onEvent?: ((event: ClusterEvent) => void) | undefined
  /** Starts the proxy in a worker process. */
  readonly workerMain: () => Promise<WorkerHooks>
}

/** IPC between primary and workers. */
const MSG = "sentinel:cluster"
type Command = "shutdown" | "reload" | "reopen" | "ready" | "ticket-keys"
interface ClusterMessage {
  readonly type: typeof MSG
  readonly cmd: Command
  /** "ticket-keys": the new TLS session ticket keys, base64 (TicketKeys.ts). */
  readonly keys?: string
}
const isClusterMessage = (m: unknown): m is ClusterMessage =>
  typeof m === "object" && m !== null && (m as { type?: unknown }).type === MSG

/** The worker's slot (0-based, stable across restarts), or undefined in the primary / outside a cluster. */
export const workerSlot = (): number | undefined => {
  const v = process.env.SENTINEL_WORKER_SLOT
  return cluster.isWorker && v !== undefined ? Number(v) : undefined
}

/**
 * Runs the cluster role of this process: supervision in the primary,
 * `workerMain` in a worker. Resolves with the exit code for `process.exit`.
 */
export const runCluster = (options: ClusterOptions): Promise<number> =>
  cluster.isPrimary ? runPrimary(options) : runWorker(options)

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

const send = (target: Worker | NodeJS.Process, cmd: Command, keys?: string) => {
  const message: ClusterMessage = keys === undefined ? { type: MSG, cmd } : { type: MSG, cmd, keys }
  try {
    if (target === process) process.send?.(message)
    else (target as Worker).send(message)
  } catch {
    /* channel closed: the other side is gone */
  }
}

/** A worker's own failure line on stderr, JSON like every other line of the process. */
const workerLine = (message: string, fields: Record<string, unknown> = {}): void => {
  process.stderr.write(`${formatErrorLine("error", message, { pid: process.pid, worker: true, ...fields })}\n`)
}

const runWorker = (options: ClusterOptions): Promise<number> =>
  new Promise<number>((resolve) => {
    const started = options.workerMain()
    let stopping = false
    let removeMetrics = () => {}

    const cleanup = () => {
      process.off("message", onMessage)
      process.off("SIGTERM", shutdown)
      process.off("SIGINT", shutdown)
      process.off("SIGHUP", reload)
      process.off("SIGUSR1", reopen)
      process.off("disconnect", shutdown)
      cluster.worker?.off("error", onIpcError)
      removeMetrics()
    }
    const shutdown = () => {
      if (stopping) return
      stopping = true
      started
        .then((h) => h.shutdown())
        .then(
          () => 0,
          (e: unknown) => {
            workerLine(`shutdown failed: ${String(e)}`)
            return 1
          }
        )
        .then((code) => {
          cleanup()
          resolve(code)
        })
    }
    const run = (f: (h: WorkerHooks) => void | Promise<void>) => () => {
      if (stopping) return
      started
        .then(f)
        .catch((e: unknown) => workerLine(String(e)))
    }
    const reload = run((h) => h.reload?.())
    const reopen = run((h) => h.reopenLogs?.())
    const onMessage = (m: unknown) => {
      if (!isClusterMessage(m)) return
      if (m.cmd === "shutdown") shutdown()
      else if (m.cmd === "reload") reload()
      else if (m.cmd === "reopen") reopen()
      else if (m.cmd === "ticket-keys" && typeof m.keys === "string") setTicketKeys(Buffer.from(m.keys, "base64"))
    }

    process.on("message", onMessage)
    // An IPC write that fails once the primary is gone (a connection handed over as it died,
    // EPIPE) is emitted on cluster.worker: logged, and "disconnect" drains the worker.
    const onIpcError = (e: Error) => workerLine(`IPC with the primary failed: ${e.message}`)
    cluster.worker?.on("error", onIpcError)
    // Ctrl-C signals the whole process group; the primary coordinates the
    // drain, and a worker signalled on its own drains the same way.
    process.on("SIGTERM", shutdown)
    process.on("SIGINT", shutdown)
    process.on("SIGHUP", reload)
    process.on("SIGUSR1", reopen)
    // The primary died: drain rather than live on as an orphan.
    process.on("disconnect", shutdown)

    started.then(
      (hooks) => {
        if (hooks.metricsRegistry) removeMetrics = installWorkerMetricsResponder(hooks.metricsRegistry)
        send(process, "ready")
      },
      (e: unknown) => {
        workerLine(`failed to start: ${e instanceof Error ? e.message : String(e)}`, e instanceof Error && e.stack !== undefined ? { stack: e.stack } : {})
        stopping = true
        cleanup()
        resolve(1)
      }
    )
  })

// ---------------------------------------------------------------------------
// Primary
// ---------------------------------------------------------------------------

interface Slot {
  worker: Worker | undefined
  startedAt: number
  delayMs: number | undefined
  timer: NodeJS.Timeout | undefined
}

const runPrimary = (options: ClusterOptions): Promise<number> =>
  new Promise<number>((resolve) => {
    const count = resolveWorkerCount(options.workers)
    const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...options.backoff }
    const emit = options.onEvent ?? (() => {})
    const clusterMetrics = new ClusterMetrics()
    let phase: "running" | "draining" | "done" = "running"
    let forced = false
    let forceTimer: NodeJS.Timeout | undefined
    let metricsServer: http.Server | undefined

    const policy = schedulingPolicy(process.env)
    if (policy !== undefined) cluster.schedulingPolicy = policy
    cluster.setupPrimary({
      ...(options.exec !== undefined ? { exec: options.exec } : {}),
      ...(options.args !== undefined ? { args: [...options.args] } : {}),
      execArgv: workerExecArgv(process.execArgv, options.execArgv ?? PROXY_V8_FLAGS)
    })

    const slots: Array<Slot> = Array.from({ length: count }, () => ({
      worker: undefined,
      startedAt: 0,
      delayMs: undefined,
      timer: undefined
    }))
    const live = (): Array<Worker> => slots.flatMap((s) => (s.worker ? [s.worker] : []))
    let ticketKeys = newTicketKeys()
    const rotateTicketKeys = setInterval(() => {
      ticketKeys = newTicketKeys()
      for (const w of live()) if (w.isConnected()) send(w, "ticket-keys", ticketKeys.toString("base64"))
    }, TICKET_KEY_ROTATION_MS)
    rotateTicketKeys.unref()

    const fork = (index: number) => {
      const slot = slots[index]
      slot.timer = undefined
      if (phase !== "running") return
      // every worker gets the same TLS ticket keys: a session resumes on any of them
      const worker = cluster.fork({ SENTINEL_WORKER_SLOT: String(index), [TICKET_KEYS_ENV]: ticketKeys.toString("base64") })
      slot.worker = worker
      slot.startedAt = Date.now()
      clusterMetrics.workers.inc()
      const pid = worker.process.pid ?? -1
      emit({ type: "worker-started", slot: index, pid })
      worker.on("message", (m: unknown) => {
        if (!isClusterMessage(m) || m.cmd !== "ready") return
        emit({ type: "worker-ready", slot: index, pid })
        // A shutdown sent while the worker was still loading may have found no listener.
        if (phase === "draining") send(worker, "shutdown")
      })
      // An IPC error (e.g. send after the worker died) must not crash the primary.
      worker.on("error", (e: Error) => emit({ type: "worker-error", slot: index, message: e.message }))
      worker.once("exit", (code, signal) => onExit(index, worker, pid, code, signal))
    }

    const onExit = (index: number, worker: Worker, pid: number, code: number | null, signal: string | null) => {
      const slot = slots[index]
      if (slot.worker === worker) slot.worker = undefined
      clusterMetrics.workers.dec()
      emit({ type: "worker-exited", slot: index, pid, code, signal, expected: phase !== "running" })
      if (phase === "draining") {
        if (live().length === 0) finish(forced ? 1 : 0)
        return
      }
      if (phase !== "running") return
      const delayMs = nextRestartDelay(slot.delayMs, Date.now() - slot.startedAt, backoff)
      slot.delayMs = delayMs
      clusterMetrics.workerRestarts.inc(signal !== null ? "signal" : code === 0 ? "exit" : "crash")
      emit({ type: "restart-scheduled", slot: index, delayMs })
      slot.timer = setTimeout(() => fork(index), delayMs)
    }

    const broadcast = (cmd: Command) => {
      for (const w of live()) if (w.isConnected()) send(w, cmd)
    }

    const onHup = () => {
      emit({ type: "signal", signal: "SIGHUP" })
      if (phase === "running") broadcast("reload")
    }
    const onUsr1 = () => {
      emit({ type: "signal", signal: "SIGUSR1" })
      if (phase === "running") broadcast("reopen")
    }
    let firstStopAt = 0
    const onStop = (signal: NodeJS.Signals) => {
      emit({ type: "signal", signal })
      if (phase === "running") {
        firstStopAt = Date.now()
        return startShutdown()
      }
      // Ctrl-C reaches the whole process group, and a wrapper may forward the
      // same signal again: a repeat within a moment is the same request.
      if (phase === "draining" && Date.now() - firstStopAt >= (options.repeatSignalGapMs ?? 500)) {
        // Second signal: the operator wants out now.
        for (const w of live()) w.process.kill("SIGKILL")
        finish(1)
      }
    }

    const startShutdown = () => {
      phase = "draining"
      for (const s of slots) {
        if (s.timer) clearTimeout(s.timer)
        s.timer = undefined
      }
      emit({ type: "shutdown-started", workers: live().length })
      if (live().length === 0) return finish(0)
      broadcast("shutdown")
      forceTimer = setTimeout(
        () => {
          const remaining = live()
          forced = true
          emit({ type: "shutdown-forced", remaining: remaining.length })
          for (const w of remaining) w.process.kill("SIGKILL")
        },
        options.gracefulTimeoutMs + (options.shutdownMarginMs ?? 5000)
      )
    }

    const finish = (code: number) => {
      if (phase === "done") return
      phase = "done"
      if (forceTimer) clearTimeout(forceTimer)
      clearInterval(rotateTicketKeys)
      for (const s of slots) if (s.timer) clearTimeout(s.timer)
      process.off("SIGHUP", onHup)
      process.off("SIGUSR1", onUsr1)
      process.off("SIGTERM", onStop)
      process.off("SIGINT", onStop)
      const done = () => {
        emit({ type: "shutdown-complete", code })
        resolve(code)
      }
      if (metricsServer) {
        metricsServer.close(() => done())
        metricsServer.closeAllConnections()
      } else done()
    }

    process.on("SIGHUP", onHup)
    process.on("SIGUSR1", onUsr1)
    process.on("SIGTERM", onStop)
    process.on("SIGINT", onStop)

    if (options.metrics) {
      const { host, port } = options.metrics
      const path = options.metrics.path ?? "/metrics"
      const server = http.createServer((req, res) => {
        const url = (req.url ?? "/").split("?")[0]
        if (url !== path || (req.method !== "GET" && req.method !== "HEAD")) {
          res.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
          return
        }
        collectClusterMetrics(live(), { timeoutMs: options.metricsTimeoutMs ?? 2000, extra: [clusterMetrics.registry] }).then(
          (r) => res.writeHead(200, { "content-type": r.contentType }).end(req.method === "HEAD" ? undefined : r.text),
          (e: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${String(e)}\n`)
        )
      })
      server.on("error", (e: Error) => emit({ type: "metrics-error", message: e.message }))
      server.listen(port, host, () => {
        const a = server.address() as AddressInfo
        emit({ type: "metrics-listening", host: a.address, port: a.port })
      })
      metricsServer = server
    }

    for (let i = 0; i < count; i++) fork(i)
  })
