/**
 * gRPC agents as child processes for the E2E tests: test/support/grpcRawAgent.mjs
 * (written against the .proto with @grpc/grpc-js, not the SDK) and the built
 * reference agents (the SDK) started with `--grpc`. Both print what they do;
 * tests wait on lines, not on sleeps.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { protoFile } from "../../src/agents/GrpcProto.js"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import { startAgentEnv, upstreamRoute } from "./agentProxyHarness.js"
import { type AgentLine, type AgentProcess, spawnAgentProcess, stopAll } from "./rawAgentHarness.js"

const rawScript = fileURLToPath(new URL("../support/grpcRawAgent.mjs", import.meta.url))
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

export interface GrpcAgentProcess extends AgentProcess {
  /** The port it serves on. */
  readonly port: number
  readonly address: string
}

const running = new Set<AgentProcess>()

const spawnGrpc = async (
  argv: ReadonlyArray<string>,
  portOf: (l: AgentLine | undefined, text: string) => number | undefined,
  command?: string
): Promise<GrpcAgentProcess> => {
  const { agent, ready } = await spawnAgentProcess(argv, { name: "grpc agent", ready: portOf, cwd: root, registry: running, ...(command !== undefined ? { command } : {}) })
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

export const GRPC_CORE_MISSING =
  "python3 with grpcio and grpc_tools is not installed: the gRPC interop test runs an agent on gRPC's C-core. " +
  "Install them with `apt-get install -y python3-grpcio python3-grpc-tools` (the README's set-up and .ci/run do)."

/** The first python3 here that has grpcio and grpc_tools (Debian's packages live in /usr/bin's). */
const grpcPython = (): string => {
  for (const py of ["/usr/bin/python3", "python3"]) {
    const r = spawnSync(py, ["-c", "import grpc, grpc_tools"], { encoding: "utf8" })
    if (r.error === undefined && r.status === 0) return py
  }
  throw new Error(GRPC_CORE_MISSING)
}

let coreStubs: { readonly python: string; readonly dir: string } | undefined
/**
 * Python stubs of proto/zentinel_agent_v2.proto, made once per test process. Debian's protoc
 * (3.5) predates proto3 `optional`; the word is dropped for it (presence only: the wire is the same).
 */
const grpcCoreStubs = (): { readonly python: string; readonly dir: string } => {
  if (coreStubs !== undefined) return coreStubs
  const python = grpcPython()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "grpc-core-stubs-"))
  const proto = fs.readFileSync(protoFile(), "utf8").replace(/^(\s*)optional /gm, "$1")
  fs.writeFileSync(path.join(dir, "zentinel_agent_v2.proto"), proto)
  const r = spawnSync(python, ["-m", "grpc_tools.protoc", `-I${dir}`, `--python_out=${dir}`, `--grpc_python_out=${dir}`, "zentinel_agent_v2.proto"], { cwd: dir, encoding: "utf8" })
  if (r.status !== 0) throw new Error(`protoc (grpc_tools) failed on the agent proto:\n${r.stderr}`)
  return (coreStubs = { python, dir })
}

/** test/support/grpcCoreAgent.py: an agent on gRPC's C-core (python3-grpcio), on `port` (0: a free one). */
export const spawnGrpcCoreAgent = (port = 0): Promise<GrpcAgentProcess> => {
  const { python, dir } = grpcCoreStubs()
  const script = fileURLToPath(new URL("../support/grpcCoreAgent.py", import.meta.url))
  return spawnGrpc([script, dir, String(port)], (l) => (l?.event === "listening" && typeof l.port === "number" ? l.port : undefined), python)
}

export const stopAllGrpcAgents = (): Promise<void> => stopAll(running)

type AgentConfigInput = NonNullable<SentinelConfigInput["agents"]>[number]

export type GrpcAgentFilter = {
  id: string; type: "agent"; agent: string; failureMode?: "open" | "closed"; timeoutMs?: number; inspectBody?: boolean; maxBodyBytes?: number
}

/** A proxy with agent "g" over gRPC on every path, fail-closed (a missing agent cannot pass for an allow), connected. */
export const withGrpcAgent = async (
  agent: GrpcAgentProcess,
  extra: Partial<AgentConfigInput> = {},
  filter: Partial<GrpcAgentFilter> = {}
) => {
  const env = await startAgentEnv(() => ({
    agents: [{ id: "g", grpc: { address: agent.address }, failureMode: "closed", ...extra } as AgentConfigInput],
    filters: [{ id: "fg", type: "agent", agent: "g", ...filter }],
    routes: [upstreamRoute("r", "/", { filters: ["fg"] })]
  }))
  await env.agentsReady()
  return env
}
