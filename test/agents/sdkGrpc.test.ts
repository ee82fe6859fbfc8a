/**
 * The SDK's gRPC server (`serveGrpcAgent`) driven by a plain grpc-js client
 * over the .proto: handshake (capabilities, config to onConfigure, refusal),
 * events in the UDS shapes to the handlers, answers with the correlation id,
 * ping/pong, cancel interrupting the handler, both packages, drain on close.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterEach, describe, expect, it } from "vitest"
import { block, allow } from "../../src/agents/sdk/Decision.js"
import { serveGrpcAgent, type ServeGrpcAgentOptions } from "../../src/agents/sdk/GrpcAgentServer.js"

const scopes: Array<Scope.CloseableScope> = []
const calls: Array<grpc.ClientDuplexStream<any, any>> = []
afterEach(async () => {
  for (const c of calls.splice(0)) c.cancel()
  await Promise.all(scopes.splice(0).map((s) => Effect.runPromise(Scope.close(s, Exit.void))))
})

const info = { agentId: "sdk-grpc", name: "sdk-grpc", version: "1.2.3" }

const start = async (opts: Omit<ServeGrpcAgentOptions, "address" | "info">) => {
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  return Effect.runPromise(serveGrpcAgent({ address: "127.0.0.1:0", info, ...opts }).pipe(Scope.extend(scope)))
}

/** The shipped .proto (zentinel.agent.v2), or a copy with the original package line, as a client of that package would write it. */
const protoOf = (pkg: "zentinel" | "sentinel"): string => {
  const shipped = path.resolve(__dirname, "../../proto/zentinel_agent_v2.proto")
  if (pkg === "zentinel") return shipped
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "sdk-grpc-")), "sentinel_agent_v2.proto")
  fs.writeFileSync(file, fs.readFileSync(shipped, "utf8").replace("package zentinel.agent.v2;", "package sentinel.agent.v2;"))
  return file
}

const load = (pkg: "zentinel" | "sentinel") => {
  const def = protoLoader.loadSync(protoOf(pkg), {
    keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true
  })
  return (grpc.loadPackageDefinition(def) as any)[pkg].agent.v2.AgentServiceV2
}

/** A ProcessStream with a queue of what the agent sent. */
const open = (port: number, pkg: "zentinel" | "sentinel" = "zentinel") => {
  const Client = load(pkg)
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  const call = client.ProcessStream() as grpc.ClientDuplexStream<any, any>
  calls.push(call)
  const got: Array<any> = []
  const waiters: Array<() => void> = []
  call.on("data", (m: any) => {
    got.push(m)
    for (const w of waiters.splice(0)) w()
  })
  call.on("error", () => {})
  const next = (pred: (m: any) => boolean, timeoutMs = 3000): Promise<any> =>
    new Promise((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`no matching message; got ${JSON.stringify(got.map((g) => g.message))}`)), timeoutMs)
      const check = () => {
        const i = got.findIndex(pred)
        if (i >= 0) {
          clearTimeout(deadline)
          resolve(got.splice(i, 1)[0])
        } else waiters.push(check)
      }
      check()
    })
  const ended = new Promise<void>((resolve) => call.on("end", () => resolve()))
  return { call, next, got, ended }
}

const handshake = (config_json = "{}") => ({ handshake: { supported_versions: [2], proxy_id: "test", proxy_version: "0", config_json } })
const headers = (cid: string, extra: Array<{ name: string; value: string }> = []) => ({
  request_headers: {
    metadata: { correlation_id: cid, request_id: cid, client_ip: "10.1.2.3", client_port: 5555, protocol: "HTTP/1.1", timestamp_ms: 1_700_000_000_000 },
    method: "GET",
    uri: "/p?q=1",
    http_version: "HTTP/1.1",
    headers: [{ name: "x-a", value: "1" }, { name: "x-a", value: "2" }, ...extra]
  }
})

describe("serveGrpcAgent", () => {
  it("handshake: capabilities, then events in the UDS shape; the answer carries the correlation id, mutations and audit", async () => {
    const seen: Array<unknown> = []
    const server = await start({
      handlers: {
        onRequestHeaders: (e) =>
          Effect.sync(() => {
            seen.push(e)
            return allow().setRequestHeader("x-sdk", "yes").withAudit({ tags: ["t1"], custom: { n: 1, s: "x" } })
          })
      }
    })
    const s = open(server.port)
    s.call.write(handshake())
    const hs = await s.next((m) => m.handshake)
    expect(hs.handshake).toMatchObject({ protocol_version: 2, success: true, capabilities: { agent_id: "sdk-grpc", version: "1.2.3", supported_events: [1] } })
    s.call.write(headers("c-1"))
    const r = await s.next((m) => m.response)
    expect(r.response).toMatchObject({
      correlation_id: "c-1",
      allow: {},
      request_headers: [{ set: { name: "x-sdk", value: "yes" } }],
      audit: { tags: ["t1"], custom: { n: "1", s: "x" } }
    })
    expect(seen[0]).toMatchObject({
      correlation_id: "c-1",
      metadata: { client_ip: "10.1.2.3", client_port: 5555, timestamp: "2023-11-14T22:13:20.000Z" },
      uri: "/p?q=1",
      headers: { "x-a": ["1", "2"] }
    })
  })

  it("headers named like Object.prototype's members are headers like any other (the agent answers, and keeps serving)", async () => {
    const seen: Array<Record<string, Array<string>>> = []
    const server = await start({
      handlers: { onRequestHeaders: (e) => Effect.sync(() => (seen.push(e.headers as Record<string, Array<string>>), allow())) }
    })
    const s = open(server.port)
    s.call.write(handshake())
    await s.next((m) => m.handshake)
    const odd = [
      { name: "Constructor", value: "c" },
      { name: "__proto__", value: "p1" },
      { name: "__Proto__", value: "p2" },
      { name: "hasOwnProperty", value: "h" }
    ]
    s.call.write(headers("odd", odd))
    expect((await s.next((m) => m.response)).response.correlation_id).toBe("odd")
    const h = seen[0]
    expect(Object.getPrototypeOf(h)).toBe(Object.prototype)
    expect(Object.keys(h)).toEqual(["x-a", "constructor", "__proto__", "hasownproperty"])
    expect([h.constructor, h["__proto__"], h.hasownproperty]).toEqual([["c"], ["p1", "p2"], ["h"]])
    s.call.write(headers("after"))
    expect((await s.next((m) => m.response)).response.correlation_id).toBe("after")
  })

  it("serves the original sentinel.agent.v2 package too; a block keeps status, body and headers", async () => {
    const server = await start({ handlers: { onRequestHeaders: () => Effect.succeed(block(451, { body: "no", headers: { "x-why": "w" } })) } })
    const s = open(server.port, "sentinel")
    s.call.write(handshake())
    await s.next((m) => m.handshake)
    s.call.write(headers("c-2"))
    const r = await s.next((m) => m.response)
    expect(r.response.block).toMatchObject({ status: 451, body: "no", headers: [{ name: "x-why", value: "w" }] })
  })

  it("the handshake's config_json goes to onConfigure; a rejection refuses the handshake with its reason", async () => {
    const configs: Array<unknown> = []
    const server = await start({
      handlers: {
        onConfigure: (e) => Effect.sync(() => {
          configs.push(e.config)
          return (e.config as { ok?: boolean }).ok ? allow() : block(500, { body: "bad level" })
        })
      }
    })
    const good = open(server.port)
    good.call.write(handshake('{"ok":true}'))
    expect((await good.next((m) => m.handshake)).handshake.success).toBe(true)
    // the initial ConfigureEvent repeating the handshake's config is applied once
    good.call.write({ configure: { config_json: '{"ok":true}', is_initial: true } })
    good.call.write({ configure: { config_json: '{"ok":true,"level":2}', is_initial: false } })
    await new Promise((r) => setTimeout(r, 100))
    expect(configs).toEqual([{ ok: true }, { ok: true, level: 2 }])
    const bad = open(server.port)
    bad.call.write(handshake('{"ok":false}'))
    const refused = await bad.next((m) => m.handshake)
    expect(refused.handshake).toMatchObject({ success: false, error: "configuration rejected: bad level" })
    await bad.ended
  })

  it("ping gets a pong; cancel interrupts the handler and nothing is answered; events before the handshake are ignored", async () => {
    const interrupted = Effect.runSync(Deferred.make<void>())
    const server = await start({
      handlers: {
        onRequestHeaders: () => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)), Effect.as(allow()))
      }
    })
    const s = open(server.port)
    s.call.write(headers("early"))
    s.call.write(handshake())
    await s.next((m) => m.handshake)
    s.call.write({ ping: { sequence: 7, timestamp_ms: 123 } })
    const pong = await s.next((m) => m.pong)
    expect(pong.pong).toMatchObject({ sequence: 7, ping_timestamp_ms: 123 })
    s.call.write(headers("slow"))
    await new Promise((r) => setTimeout(r, 50))
    s.call.write({ cancel: { correlation_id: "slow", reason: 1, timestamp_ms: 1 } })
    await Effect.runPromise(Deferred.await(interrupted))
    await new Promise((r) => setTimeout(r, 50))
    expect(s.got.filter((m) => m.response)).toEqual([])
  })

  it("a failing handler is answered with the safe block 500 (AGENT_HANDLER_FAILED)", async () => {
    const server = await start({ handlers: { onRequestHeaders: () => Effect.die(new Error("boom")) } })
    const s = open(server.port)
    s.call.write(handshake())
    await s.next((m) => m.handshake)
    s.call.write(headers("c-3"))
    const r = await s.next((m) => m.response)
    expect(r.response).toMatchObject({ correlation_id: "c-3", block: { status: 500 }, audit: { reason_codes: ["AGENT_HANDLER_FAILED"] } })
  })
})
