/**
 * gRPC agents as child processes for the E2E tests: test/support/grpcRawAgent.mjs
 * (written against the .proto with @grpc/grpc-js, not the SDK) and the built
 * reference agents (the SDK) started with `--grpc`. Both print what they do;
 * tests wait on lines, not on sleeps.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { AgentLine } from "./rawAgentHarness.js"

const rawScript = fileURLToPath(new URL("../support/grpcRawAgent.mjs", import.meta.url))
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

export interface GrpcAgentProcess {
  readonly child: ChildProcess
  /** The port it serves on. */
  readonly port: number
  readonly address: string
  readonly lines: Array<AgentLine>
  readonly output: () => string
  readonly waitFor: (pred: (l: AgentLine) => boolean, timeoutMs?: number) => Promise<AgentLine>
  readonly signal: (sig: NodeJS.Signals) => void
  readonly stop: () => Promise<void>
  readonly exited: Promise<number | null>
}

const running = new Set<GrpcAgentProcess>()

const spawnLines = async (
  argv: ReadonlyArray<string>,
  portOf: (l: AgentLine | undefined, text: string) => number | undefined
): Promise<GrpcAgentProcess> => {
  const child = spawn(process.execPath, argv, { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
  const lines: Array<AgentLine> = []
  let text = ""
  const waiters = new Set<{ pred: (l: AgentLine) => boolean; resolve: (l: AgentLine) => void }>()
  let rest = ""
  let port: number | undefined
  let onPort: ((p: number) => void) | undefined
  const consider = (l: AgentLine | undefined) => {
    if (port !== undefined) return
    port = portOf(l, text)
    if (port !== undefined) onPort?.(port)
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
      }
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
        reject(new Error(`grpc agent: no matching line within ${timeoutMs} ms; saw ${JSON.stringify(lines.map((l) => l.event))}\n${text}`))
      }, timeoutMs)
      waiters.add(w)
    })
  }
  const p = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`grpc agent did not start listening:\n${text}`)), 25_000)
    onPort = (n) => {
      clearTimeout(timer)
      resolve(n)
    }
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`grpc agent exited with ${code} before listening:\n${text}`))
    })
    consider(undefined)
  })
  const agent: GrpcAgentProcess = {
    child,
    port: p,
    address: `http://127.0.0.1:${p}`,
    lines,
    output: () => text,
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
  return agent
}

/** grpcRawAgent.mjs on 127.0.0.1 (port 0 = any free one, or a given port for restarts). */
export const spawnGrpcRawAgent = (args: ReadonlyArray<string> = [], port = 0): Promise<GrpcAgentProcess> =>
  spawnLines([rawScript, "--address", `127.0.0.1:${port}`, ...args], (l) =>
    l?.event === "listening" && typeof l.port === "number" ? l.port : undefined
  )

/** A built reference agent (SDK) serving gRPC: `node dist/agents-bin/<name>/main.js --grpc 127.0.0.1:<port> ...`. */
export const spawnSdkGrpcAgent = (name: string, args: ReadonlyArray<string> = [], port = 0): Promise<GrpcAgentProcess> => {
  const main = path.join(root, "dist/agents-bin", name, "main.js")
  if (!fs.existsSync(main)) throw new Error(`${main} missing: run 'npm run build' first`)
  return spawnLines([main, "--grpc", `127.0.0.1:${port}`, ...args], (_l, text) => {
    const m = /serving gRPC on 127\.0\.0\.1:(\d+)/.exec(text)
    return m === null ? undefined : Number(m[1])
  })
}

export const stopAllGrpcAgents = async (): Promise<void> => {
  await Promise.all([...running].map((a) => a.stop()))
}
