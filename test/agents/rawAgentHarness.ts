/**
 * Runs test/support/rawAgent.mjs as a child process and exposes what it
 * prints (one JSON object per line) so tests wait on events, not on sleeps.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const script = fileURLToPath(new URL("../support/rawAgent.mjs", import.meta.url))

export interface AgentLine {
  readonly event: string
  readonly [key: string]: any
}

/** An agent child process printing JSON lines (non-JSON output is kept as text only). */
export interface AgentProcess {
  readonly child: ChildProcess
  readonly lines: Array<AgentLine>
  /** All it printed (stdout and stderr). */
  readonly output: () => string
  /** Resolves with the first line (already seen or future) matching `pred`. */
  readonly waitFor: (pred: (l: AgentLine) => boolean, timeoutMs?: number) => Promise<AgentLine>
  readonly signal: (sig: NodeJS.Signals) => void
  /** SIGKILLs (if still alive) and waits for the exit. */
  readonly stop: () => Promise<void>
  readonly exited: Promise<number | null>
}

export type RawAgent = AgentProcess

export interface SpawnOptions<T> {
  /** For error messages. */
  readonly name: string
  /** What tells it is up, from each JSON line (or undefined) and the text so far. */
  readonly ready: (line: AgentLine | undefined, text: string) => T | undefined
  readonly startTimeoutMs?: number
  readonly cwd?: string
  /** The program to run `argv` with (default: this node). */
  readonly command?: string
  /** `stopAll(registry)` stops what was registered there. */
  readonly registry: Set<AgentProcess>
}

/**
 * `node argv...` (or `o.command argv...`) as an agent process: its JSON lines collected, `waitFor` on them, resolved
 * once `ready` gives a value (rejected when it exits first or `startTimeoutMs` passes).
 */
export const spawnAgentProcess = async <T>(argv: ReadonlyArray<string>, o: SpawnOptions<T>): Promise<{ readonly agent: AgentProcess; readonly ready: T }> => {
  const child = spawn(o.command ?? process.execPath, argv, { ...(o.cwd !== undefined ? { cwd: o.cwd } : {}), stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<AgentLine> = []
  let text = ""
  const waiters = new Set<{ pred: (l: AgentLine) => boolean; resolve: (l: AgentLine) => void }>()
  let rest = ""
  let ready: T | undefined
  let onReady: ((v: T) => void) | undefined
  const consider = (l: AgentLine | undefined) => {
    if (ready !== undefined) return
    ready = o.ready(l, text)
    if (ready !== undefined) onReady?.(ready)
  }
  child.stderr!.setEncoding("utf8")
  child.stderr!.on("data", (chunk: string) => {
    text += chunk
    consider(undefined)
  })
  child.stdout!.setEncoding("utf8")
  child.stdout!.on("data", (chunk: string) => {
    text += chunk
    rest += chunk
    let i: number
    while ((i = rest.indexOf("\n")) >= 0) {
      const raw = rest.slice(0, i)
      rest = rest.slice(i + 1)
      let line: AgentLine | undefined
      try {
        line = JSON.parse(raw) as AgentLine
      } catch {
        line = undefined
      }
      if (line !== undefined && typeof line === "object" && line !== null && typeof line.event === "string") {
        lines.push(line)
        for (const w of waiters) {
          if (w.pred(line)) {
            waiters.delete(w)
            w.resolve(line)
          }
        }
      } else line = undefined
      consider(line)
    }
  })
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  let alive = true
  void exited.then(() => {
    alive = false
  })
  const waitFor = (pred: (l: AgentLine) => boolean, timeoutMs = 5000) => {
    const seen = lines.find(pred)
    if (seen) return Promise.resolve(seen)
    return new Promise<AgentLine>((resolve, reject) => {
      const w = {
        pred,
        resolve: (l: AgentLine) => {
          clearTimeout(timer)
          resolve(l)
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(w)
        reject(new Error(`${o.name}: no matching line within ${timeoutMs} ms; saw ${JSON.stringify(lines.map((l) => l.event))}\n${text}`))
      }, timeoutMs)
      waiters.add(w)
    })
  }
  const agent: AgentProcess = {
    child,
    lines,
    output: () => text,
    waitFor,
    exited,
    signal: (sig) => {
      if (alive) child.kill(sig)
    },
    stop: async () => {
      o.registry.delete(agent)
      if (alive) {
        child.kill("SIGCONT")
        child.kill("SIGKILL")
      }
      await exited
    }
  }
  o.registry.add(agent)
  const value = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${o.name} did not start:\n${text}`)), o.startTimeoutMs ?? 25_000)
    onReady = (v) => {
      clearTimeout(timer)
      resolve(v)
    }
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`${o.name} exited with ${code} before it was ready:\n${text}`))
    })
    consider(undefined)
  })
  return { agent, ready: value }
}

/** Stops every process registered in `registry` (afterEach). */
export const stopAll = async (registry: Set<AgentProcess>): Promise<void> => {
  await Promise.all([...registry].map((a) => a.stop()))
}

const running = new Set<AgentProcess>()

export const spawnRawAgent = async (socketPath: string, args: ReadonlyArray<string> = []): Promise<RawAgent> =>
  (
    await spawnAgentProcess([script, "--socket", socketPath, ...args], {
      name: "rawAgent",
      ready: (l) => (l?.event === "listening" ? true : undefined),
      startTimeoutMs: 5000,
      registry: running
    })
  ).agent

/** Kills every agent still running (afterEach). */
export const stopAllAgents = (): Promise<void> => stopAll(running)

/** A fresh temp dir for sockets (short path: sun_path is ~108 bytes). */
export const socketDir = (): string => fs.mkdtempSync(path.join(os.tmpdir(), "sa-"))

/** Polls `cond` every few ms until true or the bound expires. */
export const eventually = async (cond: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

let seq = 0
/** A RequestHeaders event with a fresh correlation id. */
export const requestHeadersEvent = (headers: Record<string, Array<string>> = {}, id = `req-${process.pid}-${++seq}`) => ({
  correlation_id: id,
  metadata: {
    correlation_id: id,
    request_id: id,
    client_ip: "127.0.0.1",
    client_port: 40000,
    server_name: null,
    protocol: "HTTP/1.1",
    tls_version: null,
    tls_cipher: null,
    route_id: "r1",
    upstream_id: "u1",
    timestamp: new Date().toISOString()
  },
  method: "GET",
  uri: "/path?q=1",
  headers
})
