import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterEach, describe, expect, it } from "vitest"
import { decodeAgentResponse, decodeHandshakeResponse } from "../../src/agents/ProtocolDecoders.js"
import { MessageType } from "../../src/agents/Protocol.js"
import { serveAgent } from "../../src/agents/sdk/AgentServer.js"
import type { ServeAgentOptions } from "../../src/agents/sdk/AgentServer.js"
import { allow, block } from "../../src/agents/sdk/Decision.js"
import { RawAgentClient, requestBodyEvent, requestHeadersEvent } from "./sdkClient.js"

const info = { agentId: "test-agent", name: "Test agent", version: "1.2.3" }
const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f()
})

const tempSocket = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "sdk-"))
  cleanups.push(() => Fs.rmSync(dir, { recursive: true, force: true }))
  return Path.join(dir, "agent.sock")
}

const startAgent = async (opts: Omit<ServeAgentOptions, "socketPath" | "info">, socketPath = tempSocket()) => {
  const scope = Effect.runSync(Scope.make())
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
  const server = await Effect.runPromise(serveAgent({ ...opts, socketPath, info }).pipe(Scope.extend(scope)))
  cleanups.push(close)
  return { socketPath, server, close }
}

const connect = async (path: string) => {
  const c = await RawAgentClient.connect(path)
  cleanups.push(() => c.close())
  return c
}

describe("AgentServer handshake", () => {
  it("answers the handshake with protocol 2, its identity and the events it handles", async () => {
    const { socketPath } = await startAgent({ handlers: { onRequestHeaders: () => Effect.succeed(allow()), onRequestBody: () => Effect.succeed(allow()) } })
    const c = await connect(socketPath)
    const hs = await c.handshake()
    expect(hs).toMatchObject({ protocol_version: 2, success: true, error: null, encoding: "json" })
    expect(hs.capabilities).toMatchObject({ agent_id: "test-agent", name: "Test agent", version: "1.2.3", supported_events: [1, 2] })
    expect(hs.capabilities.features).toMatchObject({ cancellation: true, concurrent_requests: 100 })
    // The proxy's own decoder accepts it.
    expect(Either.isRight(decodeHandshakeResponse(hs))).toBe(true)
  })

  it("refuses a proxy that does not offer version 2, and closes", async () => {
    const { socketPath } = await startAgent({ handlers: {} })
    const c = await connect(socketPath)
    const hs = await c.handshake({ supported_versions: [1] })
    expect(hs.success).toBe(false)
    expect(hs.error).toMatch(/unsupported/)
    await c.closed
  })

  it("closes a connection whose first frame is not a handshake", async () => {
    const { socketPath } = await startAgent({ handlers: {} })
    const c = await connect(socketPath)
    c.send(MessageType.RequestHeaders, requestHeadersEvent())
    await c.closed
    expect(c.pending()).toHaveLength(0)
  })

  it("applies the handshake config through onConfigure, and fails the handshake when it is rejected", async () => {
    const seen: Array<unknown> = []
    const { socketPath } = await startAgent({
      handlers: {
        onConfigure: (e) =>
          Effect.sync(() => {
            seen.push(e.config)
            return (e.config as any).ok ? allow() : block(500, { body: "bad threshold" })
          })
      }
    })
    const good = await connect(socketPath)
    expect((await good.handshake({ config: { ok: true } })).success).toBe(true)
    const bad = await connect(socketPath)
    const hs = await bad.handshake({ config: { ok: false } })
    expect(hs).toMatchObject({ success: false })
    expect(hs.error).toContain("bad threshold")
    expect(seen).toEqual([{ ok: true }, { ok: false }])
  })
})

describe("AgentServer events", () => {
  it("answers an event with the handler's decision, version 2, the correlation id copied into audit.custom", async () => {
    const { socketPath } = await startAgent({
      handlers: {
        onRequestHeaders: (e) =>
          Effect.succeed(
            allow()
              .setRequestHeader("X-Seen", e.uri)
              .removeRequestHeader("X-Drop")
              .setResponseHeader("X-Agent", "1")
              .withAudit({ tags: ["t"], ruleIds: ["r1"], reasonCodes: ["ok"], custom: { correlation_id: "spoofed", extra: 1 } })
          )
      }
    })
    const c = await connect(socketPath)
    await c.handshake()
    const ev = requestHeadersEvent({ uri: "/a?b=1" })
    c.send(MessageType.RequestHeaders, ev)
    const ans = await c.answerFor(ev.correlation_id)
    expect(ans).toEqual({
      version: 2,
      decision: "allow",
      request_headers: [{ set: { name: "X-Seen", value: "/a?b=1" } }, { remove: { name: "X-Drop" } }],
      response_headers: [{ set: { name: "X-Agent", value: "1" } }],
      // routing_metadata, needs_more, the mutations and the WebSocket decision are at their
      // defaults: left out of the answer
      audit: { tags: ["t"], rule_ids: ["r1"], reason_codes: ["ok"], custom: { extra: 1, correlation_id: ev.correlation_id } }
    })
    expect(Either.isRight(decodeAgentResponse(ans))).toBe(true)
  })

  it("answers events without a handler with allow (and the correlation id)", async () => {
    const { socketPath } = await startAgent({ handlers: { onRequestHeaders: () => Effect.succeed(block(403)) } })
    const c = await connect(socketPath)
    await c.handshake()
    c.send(MessageType.RequestBodyChunk, requestBodyEvent("body-1", "hello"))
    const ans = await c.answerFor("body-1")
    expect(ans.decision).toBe("allow")
  })

  it("answers Ping with a Pong echoing the payload", async () => {
    const { socketPath } = await startAgent({ handlers: {} })
    const c = await connect(socketPath)
    await c.handshake()
    c.send(MessageType.Ping, { sequence: 7, timestamp_ms: 12345 })
    const pong = await c.next((f) => f.type === MessageType.Pong)
    expect(pong.payload).toEqual({ sequence: 7, timestamp_ms: 12345 })
  })

  it("runs handlers of one connection concurrently: a fast answer overtakes a slow one", async () => {
    const release = Effect.runSync(Deferred.make<void>())
    const { socketPath } = await startAgent({
      handlers: {
        onRequestHeaders: (e) => (e.uri === "/slow" ? Effect.as(Deferred.await(release), block(403)) : Effect.succeed(allow()))
      }
    })
    const c = await connect(socketPath)
    await c.handshake()
    const slow = requestHeadersEvent({ uri: "/slow" })
    const fast = requestHeadersEvent({ uri: "/fast" })
    c.send(MessageType.RequestHeaders, slow)
    c.send(MessageType.RequestHeaders, fast)
    const first = await c.next((f) => f.type === MessageType.AgentResponse)
    expect((first.payload as any).audit.custom.correlation_id).toBe(fast.correlation_id)
    Effect.runSync(Deferred.succeed(release, undefined))
    expect((await c.answerFor(slow.correlation_id)).decision).toEqual({ block: { status: 403, body: null, headers: null } })
  })

  it("holds at most maxConcurrentPerConnection handlers at once; the rest wait and are all answered", async () => {
    let running = 0
    let peak = 0
    const gate = Effect.runSync(Deferred.make<void>())
    const { socketPath } = await startAgent({
      maxConcurrentPerConnection: 2,
      handlers: {
        onRequestHeaders: () =>
          Effect.sync(() => (peak = Math.max(peak, ++running))).pipe(
            Effect.zipRight(Deferred.await(gate)),
            Effect.ensuring(Effect.sync(() => running--)),
            Effect.as(allow())
          )
      }
    })
    const c = await connect(socketPath)
    const hs = await c.handshake()
    expect(hs.capabilities.features.concurrent_requests).toBe(2)
    const events = Array.from({ length: 6 }, () => requestHeadersEvent())
    for (const ev of events) c.send(MessageType.RequestHeaders, ev)
    // The third event must not start while two are held: wait until two run, then give reading a chance.
    for (let i = 0; i < 200 && running < 2; i++) await new Promise((r) => setTimeout(r, 5))
    expect(running).toBe(2)
    Effect.runSync(Deferred.succeed(gate, undefined))
    for (const ev of events) expect((await c.answerFor(ev.correlation_id)).decision).toBe("allow")
    expect(peak).toBeLessThanOrEqual(2)
  })

  it("Cancel interrupts the in-flight handler of that correlation id and sends no answer for it", async () => {
    const started = Effect.runSync(Deferred.make<void>())
    const interrupted = Effect.runSync(Deferred.make<void>())
    const { socketPath, server } = await startAgent({
      handlers: {
        onRequestHeaders: (e) =>
          e.uri === "/slow"
            ? Deferred.succeed(started, undefined).pipe(
                Effect.zipRight(Effect.never),
                Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)),
                Effect.as(allow())
              )
            : Effect.succeed(allow())
      }
    })
    const c = await connect(socketPath)
    await c.handshake()
    const slow = requestHeadersEvent({ uri: "/slow" })
    c.send(MessageType.RequestHeaders, slow)
    await Effect.runPromise(Deferred.await(started))
    expect(server.inFlight()).toBe(1)
    c.send(MessageType.Cancel, { correlation_id: slow.correlation_id, reason: 2, timestamp_ms: Date.now() })
    await Effect.runPromise(Deferred.await(interrupted))
    // A later event is answered, and it is the first answer on the connection.
    const next = requestHeadersEvent({ uri: "/next" })
    c.send(MessageType.RequestHeaders, next)
    const first = await c.next((f) => f.type === MessageType.AgentResponse)
    expect((first.payload as any).audit.custom.correlation_id).toBe(next.correlation_id)
    expect(server.inFlight()).toBe(0)
  })

  it("a handler failure or defect becomes the safe answer: block 500 with AGENT_HANDLER_FAILED", async () => {
    const { socketPath } = await startAgent({
      handlers: {
        onRequestHeaders: (e) => {
          if (e.uri === "/throw") throw new Error("sync throw")
          if (e.uri === "/die") return Effect.die(new Error("defect"))
          if (e.uri === "/bad-header") return Effect.sync(() => allow().setRequestHeader("X-A", "line\r\nbreak"))
          return Effect.fail("typed failure")
        }
      }
    })
    const c = await connect(socketPath)
    await c.handshake()
    for (const uri of ["/throw", "/die", "/fail", "/bad-header"]) {
      const ev = requestHeadersEvent({ uri })
      c.send(MessageType.RequestHeaders, ev)
      const ans = await c.answerFor(ev.correlation_id)
      expect(ans.decision).toEqual({ block: { status: 500, body: "agent error", headers: null } })
      expect(ans.audit.reason_codes).toEqual(["AGENT_HANDLER_FAILED"])
    }
  })

  it("uses a configured onError policy (fail open)", async () => {
    const { socketPath } = await startAgent({
      onError: () => allow().withAudit({ reasonCodes: ["FAIL_OPEN"] }),
      handlers: { onRequestHeaders: () => Effect.die("boom") }
    })
    const c = await connect(socketPath)
    await c.handshake()
    const ev = requestHeadersEvent()
    c.send(MessageType.RequestHeaders, ev)
    const ans = await c.answerFor(ev.correlation_id)
    expect(ans.decision).toBe("allow")
    expect(ans.audit.reason_codes).toEqual(["FAIL_OPEN"])
  })

  it("answers a schema-malformed event that has a correlation id with the safe answer, keeping the connection", async () => {
    const { socketPath } = await startAgent({ handlers: { onRequestHeaders: () => Effect.succeed(allow()) } })
    const c = await connect(socketPath)
    await c.handshake()
    c.send(MessageType.RequestHeaders, { correlation_id: "broken", method: 42 })
    expect((await c.answerFor("broken")).decision).toMatchObject({ block: { status: 500 } })
    c.send(MessageType.Ping, { sequence: 1, timestamp_ms: 1 })
    await c.next((f) => f.type === MessageType.Pong)
  })

  it("a malformed frame closes only that connection", async () => {
    const { socketPath, server } = await startAgent({ handlers: { onRequestHeaders: () => Effect.succeed(allow()) } })
    const good = await connect(socketPath)
    await good.handshake()
    for (const bytes of [
      Buffer.from([0, 0, 0, 0]), // L = 0
      Buffer.from([0, 0, 0, 3, 0x7f, 0x7b, 0x7d]), // unknown type
      Buffer.from([0, 0, 0, 3, 0x10, 0x7b, 0x7b]), // bad JSON
      Buffer.from([0x02, 0, 0, 0, 0x10]) // L > 16 MiB
    ]) {
      const bad = await connect(socketPath)
      await bad.handshake()
      bad.writeRaw(bytes)
      await bad.closed
    }
    const ev = requestHeadersEvent()
    good.send(MessageType.RequestHeaders, ev)
    expect((await good.answerFor(ev.correlation_id)).decision).toBe("allow")
    expect(server.connections()).toBe(1)
  })
})

describe("AgentServer socket lifecycle", () => {
  it("replaces a stale socket file left by a dead agent", async () => {
    const socketPath = tempSocket()
    // A process that dies by SIGKILL leaves its socket file behind.
    const child = ChildProcess.spawn(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(socketPath)}, () => process.stdout.write("up"))`
    ])
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()))
    child.kill("SIGKILL")
    await new Promise((resolve) => child.once("exit", resolve))
    expect(Fs.lstatSync(socketPath).isSocket()).toBe(true)
    await startAgent({ handlers: {} }, socketPath)
    const c = await connect(socketPath)
    expect((await c.handshake()).success).toBe(true)
  })

  it("refuses a socket a live agent answers on, and a path that is not a socket", async () => {
    const { socketPath } = await startAgent({ handlers: {} })
    const exit = await Effect.runPromiseExit(Effect.scoped(serveAgent({ socketPath, info, handlers: {} })))
    expect(exit).toMatchObject({ _tag: "Failure", cause: { error: { _tag: "AgentSocketUnavailable", reason: "in-use" } } })
    const file = tempSocket()
    Fs.writeFileSync(file, "not a socket")
    const exit2 = await Effect.runPromiseExit(Effect.scoped(serveAgent({ socketPath: file, info, handlers: {} })))
    expect(exit2).toMatchObject({ _tag: "Failure", cause: { error: { reason: "not-a-socket" } } })
    expect(Fs.readFileSync(file, "utf8")).toBe("not a socket")
  })

  it("on scope close: reports draining, lets in-flight handlers answer, then closes and removes the socket", async () => {
    const started = Effect.runSync(Deferred.make<void>())
    const release = Effect.runSync(Deferred.make<void>())
    const { socketPath, close } = await startAgent({
      drainTimeoutMs: 5000,
      handlers: {
        onRequestHeaders: () => Deferred.succeed(started, undefined).pipe(Effect.zipRight(Deferred.await(release)), Effect.as(block(451)))
      }
    })
    const c = await connect(socketPath)
    await c.handshake()
    const ev = requestHeadersEvent()
    c.send(MessageType.RequestHeaders, ev)
    await Effect.runPromise(Deferred.await(started))
    const closing = close()
    const health = await c.next((f) => f.type === MessageType.HealthStatus)
    expect(health.payload).toEqual({ state: 3 })
    Effect.runSync(Deferred.succeed(release, undefined))
    expect((await c.answerFor(ev.correlation_id)).decision).toMatchObject({ block: { status: 451 } })
    await closing
    await c.closed
    expect(Fs.existsSync(socketPath)).toBe(false)
  })

  it("on scope close with a stuck handler: gives up after the drain timeout and interrupts it", async () => {
    const interrupted = Effect.runSync(Deferred.make<void>())
    const started = Effect.runSync(Deferred.make<void>())
    const { socketPath, close } = await startAgent({
      drainTimeoutMs: 100,
      handlers: {
        onRequestHeaders: () =>
          Deferred.succeed(started, undefined).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)),
            Effect.as(allow())
          )
      }
    })
    const c = await connect(socketPath)
    await c.handshake()
    c.send(MessageType.RequestHeaders, requestHeadersEvent())
    await Effect.runPromise(Deferred.await(started))
    await close()
    await c.closed
    await Effect.runPromise(Deferred.await(interrupted))
  })
})
