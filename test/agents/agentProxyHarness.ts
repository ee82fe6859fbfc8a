/**
 * The real proxy (in-process, port 0) in front of a real echo origin, with
 * agents as real processes on real Unix sockets: what the agents E2E tests
 * share. The audit log goes to a temp file the tests read.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import { type EchoOrigin, startEchoOrigin } from "../support/origins.js"
import { type ProxyHandle, request, type Reply, startProxy, testConfig } from "../support/proxy.js"
import { type AgentLine, eventually, type RawAgent, socketDir } from "./rawAgentHarness.js"

export interface AgentEnv {
  readonly proxy: ProxyHandle
  readonly origin: EchoOrigin
  readonly dir: string
  readonly auditFile: string
  /** Audit lines written so far (parsed). */
  readonly audit: () => Array<Record<string, any>>
  /** Waits for an audit line matching `pred`. */
  readonly auditLine: (pred: (l: Record<string, any>) => boolean, timeoutMs?: number) => Promise<Record<string, any>>
  readonly metrics: () => Promise<string>
  /** Waits until each of these agents (default: all) has a connection ready. */
  readonly agentsReady: (ids?: ReadonlyArray<string>) => Promise<void>
  readonly get: (p: string, headers?: Record<string, string>) => Promise<Reply>
  readonly close: () => Promise<void>
}

const open: Array<AgentEnv> = []

/** Closes every proxy and origin still open (afterEach). */
export const closeAllEnvs = async (): Promise<void> => {
  await Promise.all(open.splice(0).map((e) => e.close()))
}

export const upstreamRoute = (id: string, prefix: string, extra: Record<string, unknown> = {}) => ({
  id,
  priority: prefix.length,
  matches: [{ _tag: "PathPrefix" as const, prefix }],
  upstream: "origin",
  ...extra
})

/** `input` gets the socket directory (for agents' paths); upstream "origin" and the audit log are added. */
export const startAgentEnv = async (
  input: (dir: string) => Partial<SentinelConfigInput>,
  dir = socketDir(),
  /** Write the access log (JSON) to `<dir>/access.log`. */
  options: { readonly accessLog?: boolean } = {}
): Promise<AgentEnv> => {
  const origin = await startEchoOrigin("origin")
  const auditFile = path.join(dir, "audit.log")
  const given = input(dir)
  const config = testConfig({
    upstreams: [{ id: "origin", targets: [{ address: origin.address }] }],
    ...given,
    observability: {
      logging: {
        accessLog: options.accessLog ? { enabled: true, file: path.join(dir, "access.log"), flushIntervalMs: 0 } : { enabled: false },
        auditLog: { file: auditFile }
      }
    }
  } as Partial<SentinelConfigInput>)
  const scope = Effect.runSync(Scope.make())
  const proxy = await Effect.runPromise(Scope.extend(startProxy(config), scope))
  const audit = () =>
    fs.existsSync(auditFile)
      ? fs
          .readFileSync(auditFile, "utf8")
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as Record<string, any>)
      : []
  let closed = false
  const env: AgentEnv = {
    proxy,
    origin,
    dir,
    auditFile,
    audit,
    auditLine: async (pred, timeoutMs = 5000) => {
      let found: Record<string, any> | undefined
      await eventually(() => (found = audit().find(pred)) !== undefined, timeoutMs, "audit line")
      return found!
    },
    metrics: () => proxy.metrics.registry.metrics(),
    agentsReady: (ids) =>
      eventually(
        () => proxy.agentStatus().every((a) => (ids !== undefined && !ids.includes(a.id)) || a.client.ready > 0),
        10_000,
        "agents connected"
      ),
    get: (p, headers) => request(proxy.port, { path: p, headers }),
    close: async () => {
      if (closed) return
      closed = true
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await origin.close()
    }
  }
  open.push(env)
  return env
}

/** Value of one series in Prometheus text, 0 when absent. */
export const metricValue = (text: string, name: string, labels: Record<string, string>): number => {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{")) continue
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))
    if (ok) return Number(line.slice(line.lastIndexOf(" ") + 1))
  }
  return 0
}

/** Polls the proxy's metrics until `name{labels}` reads `value` (at most `timeoutMs`); returns the last reading. */
export const metricReaches = async (
  env: AgentEnv,
  name: string,
  labels: Record<string, string>,
  value: number,
  timeoutMs = 5000
): Promise<number> => {
  const deadline = Date.now() + timeoutMs
  let seen = metricValue(await env.metrics(), name, labels)
  while (seen !== value && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20))
    seen = metricValue(await env.metrics(), name, labels)
  }
  return seen
}

/**
 * Sends `GET path` on a connection of its own, waits until `agent` has received an event of
 * `frameType` for it, then drops the connection: the client leaves while the agent decides.
 * Resolves with that event's line and the agent's Cancel line.
 */
export const leaveWhileAgentDecides = async (
  env: AgentEnv,
  agent: RawAgent,
  path: string,
  frameType: number
): Promise<{ readonly frame: AgentLine; readonly cancel: AgentLine }> => {
  const req = http.request({ host: "127.0.0.1", port: env.proxy.port, path, agent: false })
  req.on("error", () => {})
  req.end()
  const frame = await agent.waitFor((l) => l.event === "frame" && l.type === frameType)
  req.destroy()
  const cancel = await agent.waitFor((l) => l.event === "cancel")
  return { frame, cancel }
}
