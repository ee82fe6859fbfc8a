/**
 * The checks before a start or a reload: `probeAgent` (one real handshake,
 * what `sentinel validate` runs per agent) over gRPC and a Unix socket, and
 * the local check that a gRPC agent's TLS files can be read.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterEach, describe, expect, it } from "vitest"
import { agentConfig } from "../../src/agents/AgentConfig.js"
import { probeAgent } from "../../src/agents/AgentProbe.js"
import { allow, block } from "../../src/agents/sdk/Decision.js"
import { serveAgent } from "../../src/agents/sdk/AgentServer.js"
import { serveGrpcAgent } from "../../src/agents/sdk/GrpcAgentServer.js"
import { checkAgentSocketDirs } from "../../src/config/Validate.js"
import { makeConfig, type SentinelConfigInput } from "../../src/config/Schema.js"

const scopes: Array<Scope.CloseableScope> = []
afterEach(async () => {
  await Promise.all(scopes.splice(0).map((s) => Effect.runPromise(Scope.close(s, Exit.void))))
})
const info = { agentId: "p", name: "p", version: "1" }
const inScope = <A, E>(eff: Effect.Effect<A, E, Scope.Scope>) => {
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  return Effect.runPromise(eff.pipe(Scope.extend(scope)))
}

describe("probeAgent", () => {
  it("a gRPC agent that completes the handshake: ok, with its capabilities", async () => {
    const server = await inScope(serveGrpcAgent({ address: "127.0.0.1:0", info, handlers: { onRequestHeaders: () => Effect.succeed(allow()) } }))
    const r = await probeAgent(agentConfig({ id: "g", grpc: { address: `http://127.0.0.1:${server.port}` } }))
    expect(r).toMatchObject({ ok: true, capabilities: { agent_id: "p" } })
  })

  it("a gRPC agent that rejects its config fails with the agent's reason", async () => {
    const server = await inScope(serveGrpcAgent({
      address: "127.0.0.1:0",
      info,
      handlers: { onConfigure: () => Effect.succeed(block(500, { body: "unknown key" })) }
    }))
    const r = await probeAgent(agentConfig({ id: "g", grpc: { address: `http://127.0.0.1:${server.port}` }, config: { nope: 1 } }))
    expect(r.ok).toBe(false)
    expect(!r.ok && r.message).toContain("configuration rejected: unknown key")
  })

  it("a TCP port that does not speak gRPC fails within the timeout", async () => {
    const server = net.createServer((s) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n"))
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
    const port = (server.address() as net.AddressInfo).port
    const r = await probeAgent(agentConfig({ id: "g", grpc: { address: `http://127.0.0.1:${port}` } }), { timeoutMs: 2000 })
    server.close()
    expect(r.ok).toBe(false)
  })

  it("a Unix-socket agent: ok; a socket that is not an agent: not ok", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pr-"))
    const good = path.join(dir, "good.sock")
    await inScope(serveAgent({ socketPath: good, info, handlers: {} }))
    expect((await probeAgent(agentConfig({ id: "u", socketPath: good }))).ok).toBe(true)
    const bad = path.join(dir, "bad.sock")
    const impostor = net.createServer((s) => s.destroy())
    await new Promise<void>((r) => impostor.listen(bad, () => r()))
    const r = await probeAgent(agentConfig({ id: "u", socketPath: bad }), { timeoutMs: 1000 })
    impostor.close()
    expect(r.ok).toBe(false)
  })
})

describe("local checks", () => {
  it("a gRPC agent's unreadable TLS file is an error before the reload", async () => {
    const config = makeConfig({
      listeners: [{ id: "l", address: "127.0.0.1:0" }],
      agents: [{ id: "g", grpc: { address: "https://agent:50051", tls: { caCert: "/nonexistent/ca.pem" } } }]
    } as SentinelConfigInput)
    expect(await checkAgentSocketDirs(config)).toEqual([
      { level: "error", subject: `agent "g"`, message: "grpc ca-cert /nonexistent/ca.pem cannot be read" }
    ])
  })
})
