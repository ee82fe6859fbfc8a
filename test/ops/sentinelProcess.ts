/**
 * The built `sentinel` binary in a child process, for operations tests:
 * start it on a config in a temp dir, wait for log lines (event-driven, with
 * a deadline), send signals, generate bounded keep-alive load.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync } from "node:fs"
import * as http from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const MAIN = join(__dirname, "../../dist/main.js")

export const tempDir = (): string => mkdtempSync(join(tmpdir(), "sentinel-ops-"))

export interface SentinelProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** Everything written to stderr (the error log) so far. */
  readonly stderr: () => string
  readonly stdout: () => string
  /** Resolves with the match once stderr matches `re` (searching from `from`), rejects after `timeoutMs`. */
  readonly waitFor: (re: RegExp, options?: { timeoutMs?: number; from?: number }) => Promise<RegExpExecArray>
  /** Resolves once `n` stderr lines match `re` (deadline as `waitFor`). */
  readonly waitForCount: (re: RegExp, n: number, options?: { timeoutMs?: number }) => Promise<void>
  /** Number of stderr lines matching `re`. */
  readonly count: (re: RegExp) => number
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** SIGKILL if still running (test cleanup). */
  readonly stop: () => Promise<void>
}

export const startSentinel = (args: ReadonlyArray<string>, env: Record<string, string> = {}): SentinelProcess =>
  startCommand(process.execPath, [MAIN, ...args], env)

/** Any command line that runs the proxy (a Dockerfile's CMD, a unit's ExecStart), watched the same way. */
export const startCommand = (
  file: string,
  argv: ReadonlyArray<string>,
  env: Record<string, string> = {},
  options: { readonly cwd?: string } = {}
): SentinelProcess => {
  const child = spawn(file, [...argv], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {})
  })
  let err = ""
  let out = ""
  let done = false
  const waiters = new Set<() => void>()
  const notify = () => {
    for (const w of [...waiters]) w()
  }
  child.stderr!.on("data", (c: Buffer) => {
    err += c.toString()
    notify()
  })
  child.stdout!.on("data", (c: Buffer) => {
    out += c.toString()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      done = true
      notify()
      resolve({ code, signal })
    })
  )
  const count = (re: RegExp) => err.split("\n").filter((l) => re.test(l)).length
  const waitUntil = <A>(test: () => A | undefined, what: string, timeoutMs: number) =>
    new Promise<A>((resolve, reject) => {
      const check = () => {
        const m = test()
        if (m !== undefined) {
          cleanup()
          resolve(m)
        } else if (done) {
          cleanup()
          reject(new Error(`sentinel exited before ${what}; stderr:\n${err}`))
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr:\n${err}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  // Start-up takes seconds on a loaded 2-core machine (two processes: the re-exec with the heap flag).
  const waitFor = (re: RegExp, options: { timeoutMs?: number; from?: number } = {}) =>
    waitUntil(() => re.exec(err.slice(options.from ?? 0)) ?? undefined, String(re), options.timeoutMs ?? 40_000)
  const waitForCount = (re: RegExp, n: number, options: { timeoutMs?: number } = {}) =>
    waitUntil(() => (count(re) >= n ? true : undefined), `${n} x ${re}`, options.timeoutMs ?? 40_000).then(() => {})
  return {
    child,
    pid: child.pid ?? -1,
    stderr: () => err,
    stdout: () => out,
    waitFor,
    waitForCount,
    count,
    exited,
    stop: async () => {
      if (!done) child.kill("SIGKILL")
      await exited
    }
  }
}

/** Port of the first traffic listener, from the start-up log line. */
export const listenerPort = async (p: SentinelProcess): Promise<number> =>
  Number((await p.waitFor(/"sentinel started"[^\n]*?=127\.0\.0\.1:(\d+)/))[1])

/** Port of the metrics listener (single process: "metrics listening"; cluster: "metrics-listening"). */
export const metricsPort = async (p: SentinelProcess): Promise<number> => {
  const m = await p.waitFor(/metrics[ -]listening[^\n]*?("address":"127\.0\.0\.1:(\d+)"|"port":(\d+))/)
  return Number(m[2] ?? m[3])
}

export const scrape = async (port: number, path = "/metrics"): Promise<string> => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`)
  return r.text()
}

/** The value of one sample line (`name{labels} value`) in a scrape, or undefined. */
export const sample = (text: string, series: string): number | undefined => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

export interface LoadResult {
  readonly ok: number
  readonly failed: number
  /** Non-200 statuses and error messages, for the assertion message. */
  readonly failures: Array<string>
  /** One label per successful response, in completion order (e.g. the x-origin header). */
  readonly labels: Array<string>
}

/**
 * `clients` keep-alive clients each sending requests back to back for
 * `durationMs` (bounded load). `label` picks what to record from a 200.
 */
export const runLoad = (
  port: number,
  options: {
    readonly clients?: number
    readonly durationMs?: number
    readonly path?: string
    readonly label?: (res: http.IncomingMessage, body: string) => string
    /** Called after every completed request (e.g. to trigger something mid-load). */
    readonly onResponse?: (result: LoadResult) => void
  } = {}
): Promise<LoadResult> => {
  const clients = options.clients ?? 20
  const until = Date.now() + (options.durationMs ?? 2500)
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients })
  const result: LoadResult = { ok: 0, failed: 0, failures: [], labels: [] }
  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: options.path ?? "/", agent }, (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (c: string) => (body += c))
        res.on("end", () => {
          if (res.statusCode === 200) {
            ;(result as { ok: number }).ok++
            result.labels.push(options.label?.(res, body) ?? "")
          } else {
            ;(result as { failed: number }).failed++
            result.failures.push(`status ${res.statusCode}: ${body.slice(0, 200)}`)
          }
          resolve()
        })
        res.on("error", (e) => {
          ;(result as { failed: number }).failed++
          result.failures.push(`response error: ${e.message}`)
          resolve()
        })
      })
      req.on("error", (e) => {
        ;(result as { failed: number }).failed++
        result.failures.push(`request error: ${e.message}`)
        resolve()
      })
    })
  const client = async () => {
    while (Date.now() < until) {
      await one()
      options.onResponse?.(result)
    }
  }
  return Promise.all(Array.from({ length: clients }, client)).then(() => {
    agent.destroy()
    return result
  })
}
