/**
 * gRPC agents as child processes for the E2E tests: test/support/grpcRawAgent.mjs
 * (written against the .proto with @grpc/grpc-js, not the SDK) and the built
 * reference agents (the SDK) started with `--grpc`. Both print what they do;
 * tests wait on lines, not on sleeps.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type AgentLine, type AgentProcess, spawnAgentProcess, stopAll } from "./rawAgentHarness.js"

const rawScript = fileURLToPath(new URL("../support/grpcRawAgent.mjs", import.meta.url))
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

export interface GrpcAgentProcess extends AgentProcess {
  /** The port it serves on. */
  readonly port: number
  readonly address: string
}

const running = new Set<AgentProcess>()

const spawnGrpc = async (argv: ReadonlyArray<string>, portOf: (l: AgentLine | undefined, text: string) => number | undefined): Promise<GrpcAgentProcess> => {
  const { agent, ready } = await spawnAgentProcess(argv, { name: "grpc agent", ready: portOf, cwd: root, registry: running })
  return { ...agent, port: ready, address: `http://127.0.0.1:${ready}` }
}

/** grpcRawAgent.mjs on 127.0.0.1 (port 0 = any free one, or a given port for restarts). */
export const spawnGrpcRawAgent = (args: ReadonlyArray<string> = [], port = 0): Promise<GrpcAgentProcess> =>
  spawnGrpc([rawScript, "--address", `127.0.0.1:${port}`, ...args], (l) =>
    l?.event === "listening" && typeof l.port === "number" ? l.port : undefined
  )

/** A built reference agent (SDK) serving gRPC: `node dist/agents-bin/<name>/main.js --grpc 127.0.0.1:<port> ...`. */
export const spawnSdkGrpcAgent = (name: string, args: ReadonlyArray<string> = [], port = 0): Promise<GrpcAgentProcess> => {
  const main = path.join(root, "dist/agents-bin", name, "main.js")
  if (!fs.existsSync(main)) throw new Error(`${main} missing: run 'npm run build' first`)
  return spawnGrpc([main, "--grpc", `127.0.0.1:${port}`, ...args], (_l, text) => {
    const m = /serving gRPC on 127\.0\.0\.1:(\d+)/.exec(text)
    return m === null ? undefined : Number(m[1])
  })
}

export const stopAllGrpcAgents = (): Promise<void> => stopAll(running)
