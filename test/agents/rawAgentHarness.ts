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

export interface RawAgent {
  readonly child: ChildProcess
  readonly lines: Array<AgentLine>
  /** Resolves with the first line (already seen or future) matching `pred`. */
  readonly waitFor: (pred: (l: AgentLine) => boolean, timeoutMs?: number) => Promise<AgentLine>
  readonly signal: (sig: NodeJS.Signals) => void
  /** SIGKILLs (if still alive) and waits for the exit. */
  readonly stop: () => Promise<void>
  readonly exited: Promise<number | null>
}

const running = new Set<RawAgent>()

export const spawnRawAgent = async (socketPath: string, args: ReadonlyArray<string> = []): Promise<RawAgent> => {
  const child = spawn(process.execPath, [script, "--socket", socketPath, ...args], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  const lines: Array<AgentLine> = []
  const waiters = new Set<{ pred: (l: AgentLine) => boolean; resolve: (l: AgentLine) => void }>()
  let rest = ""
  child.stdout!.setEncoding("utf8")
  child.stdout!.on("data", (chunk: string) => {
    rest += chunk
    let i: number
    while ((i = rest.indexOf("\n")) >= 0) {
      const line = JSON.parse(rest.slice(0, i)) as AgentLine
      rest = rest.slice(i + 1)
      lines.push(line)
      for (const w of waiters) {
        if (w.pred(line)) {
          waiters.delete(w)
          w.resolve(line)
        }
      }
    }
  })
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
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
        reject(new Error(`rawAgent: no matching line within ${timeoutMs} ms; saw ${JSON.stringify(lines.map((l) => l.event))}`))
      }, timeoutMs)
      waiters.add(w)
    })
  }
  let alive = true
  exited.then(() => {
    alive = false
  })
  const agent: RawAgent = {
    child,
    lines,
    waitFor,
    exited,
    signal: (sig) => {
      if (alive) child.kill(sig)
    },
    stop: async () => {
      running.delete(agent)
      if (alive) {
        child.kill("SIGCONT")
        child.kill("SIGKILL")
      }
      await exited
    }
  }
  running.add(agent)
  await waitFor((l) => l.event === "listening")
  return agent
}

/** Kills every agent still running (afterEach). */
export const stopAllAgents = async (): Promise<void> => {
  await Promise.all([...running].map((a) => a.stop()))
}

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
