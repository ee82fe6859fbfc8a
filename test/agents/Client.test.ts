import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import fc from "fast-check"
import { type AgentClient, PendingCalls, pickChannel, type PickableChannel, PickMiss } from "../../src/agents/Channels.js"
import { type AgentClientConfig, make } from "../../src/agents/Client.js"
import { CancelReason, HealthState, MessageType } from "../../src/agents/Protocol.js"
import { eventually, requestHeadersEvent, socketDir, spawnRawAgent, stopAllAgents } from "./rawAgentHarness.js"

afterEach(stopAllAgents)

/** Opens a client in a fresh scope; returns it and a closer. */
const openClient = async (config: AgentClientConfig) => {
  const scope = Effect.runSync(Scope.make())
  const client = Effect.runSync(Scope.extend(make(config), scope))
  return { client, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const call = (client: AgentClient, headers: Record<string, Array<string>> = {}, timeoutMs = 2000, id?: string) =>
  Effect.runPromise(Effect.either(client.call(MessageType.RequestHeaders, requestHeadersEvent(headers, id), timeoutMs)))

const setup = async (args: Array<string> = [], config: Partial<AgentClientConfig> = {}) => {
  const sock = path.join(socketDir(), "a.sock")
  const agent = await spawnRawAgent(sock, args)
  const { client, close } = await openClient({
    id: "raw",
    socketPath: sock,
    poolSize: 2,
    reconnectBaseMs: 10,
    reconnectMaxMs: 100,
    ...config
  })
  await eventually(() => client.status().ready === (config.poolSize ?? 2), 5000, "pool ready")
  return { sock, agent, client, close }
}

describe("agent Client against rawAgent.mjs", () => {
  it("handshakes first on every connection with versions [2] and gets an allow matched by correlation id", async () => {
    const { agent, client, close } = await setup(["--mode", "allow"])
    const hs = agent.lines.filter((l) => l.event === "handshake")
    expect(hs.length).toBe(2)
    expect(hs[0].request.supported_versions).toEqual([2])
    expect(hs[0].request.proxy_id).toBe("sentinel-ts")
    const r = await call(client)
    expect(Either.getOrThrow(r).decision).toBe("allow")
    expect(client.capabilities()?.agent_id).toBe("raw-agent")
    await close()
  })

  it("returns a block decision with status, body and headers", async () => {
    const { client, close } = await setup(["--mode", "block", "--status", "451"])
    const r = Either.getOrThrow(await call(client))
    expect(r.decision).toEqual({ block: { status: 451, body: "blocked by rawAgent", headers: { "x-blocked-by": "raw-agent" } } })
    expect(r.audit.rule_ids).toEqual(["942100"])
    await close()
  })

  it("returns header mutations", async () => {
    const { client, close } = await setup(["--mode", "add-header", "--header", "x-user=alice"])
    const r = Either.getOrThrow(await call(client))
    expect(r.request_headers).toEqual([{ set: { name: "x-user", value: "alice" } }, { remove: { name: "x-remove-me" } }])
    await close()
  })

  it("multiplexes concurrent calls and matches each answer to its call", async () => {
    const { client, close } = await setup(["--mode", "late:30"])
    const ids = Array.from({ length: 40 }, (_, i) => `mux-${i}`)
    const results = await Effect.runPromise(
      Effect.all(
        ids.map((id) => client.call(MessageType.RequestHeaders, requestHeadersEvent({}, id), 3000)),
        { concurrency: "unbounded" }
      )
    )
    expect(results.map((r) => r.audit.custom.correlation_id)).toEqual(ids)
    await close()
  })

  it("times out a late answer with AgentTimeout and sends Cancel(timeout) to the agent", async () => {
    const { agent, client, close } = await setup(["--mode", "late:2000"])
    const t0 = Date.now()
    const r = await call(client, {}, 150, "late-1")
    expect(Either.isLeft(r) && r.left._tag).toBe("AgentTimeout")
    expect(Date.now() - t0).toBeLessThan(1000)
    const cancel = await agent.waitFor((l) => l.event === "cancel" && l.correlation_id === "late-1")
    expect(cancel.reason).toBe(CancelReason.Timeout)
    expect(client.status().pending).toBe(0)
    await close()
  })

  it("sends Cancel(client disconnect) when the calling fiber is interrupted", async () => {
    const { agent, client, close } = await setup(["--mode", "late:5000"])
    const fiber = Effect.runFork(client.call(MessageType.RequestHeaders, requestHeadersEvent({}, "int-1"), 10_000))
    await agent.waitFor((l) => l.event === "frame" && l.correlation_id === "int-1")
    await Effect.runPromise(Fiber.interrupt(fiber))
    const cancel = await agent.waitFor((l) => l.event === "cancel" && l.correlation_id === "int-1")
    expect(cancel.reason).toBe(CancelReason.ClientDisconnect)
    expect(client.status().pending).toBe(0)
    await close()
  })

  it("an answer without correlation id matches nothing: the call times out", async () => {
    const { client, close } = await setup(["--mode", "no-correlation"])
    const r = await call(client, {}, 150)
    expect(Either.isLeft(r) && r.left._tag).toBe("AgentTimeout")
    await close()
  })

  it.each(["bad-json", "unknown-type", "oversize", "zero-length"])(
    "a garbage answer (%s) fails the call with AgentProtocolError and drops that connection",
    async (kind) => {
      const { agent, client, close } = await setup(["--mode", "allow"])
      const closesBefore = agent.lines.filter((l) => l.event === "close").length
      const r = await call(client, { "x-raw-mode": [`garbage:${kind}`] })
      expect(Either.isLeft(r)).toBe(true)
      if (Either.isLeft(r)) {
        expect(r.left._tag).toBe("AgentProtocolError")
        expect((r.left as any).reason).toBe(kind)
      }
      await eventually(() => agent.lines.filter((l) => l.event === "close").length > closesBefore, 3000, "drop")
      // the pool heals: the dropped slot reconnects and calls are allowed again
      await eventually(() => client.status().ready === 2, 3000, "reconnect")
      expect(Either.getOrThrow(await call(client)).decision).toBe("allow")
      await close()
    }
  )

  it("a well-framed but malformed answer fails the call (never an allow) and keeps the connection", async () => {
    const { agent, client, close } = await setup(["--mode", "allow"])
    const r = await call(client, { "x-raw-mode": ["garbage:malformed"] })
    expect(Either.isLeft(r) && r.left._tag).toBe("AgentProtocolError")
    expect(agent.lines.some((l) => l.event === "close")).toBe(false)
    await close()
  })

  it("fails fast while the socket is missing, then connects once the agent appears", async () => {
    const sock = path.join(socketDir(), "late.sock")
    const { client, close } = await openClient({ id: "raw", socketPath: sock, poolSize: 2, reconnectBaseMs: 10, reconnectMaxMs: 50 })
    const t0 = Date.now()
    const r = await call(client, {}, 1000)
    expect(Either.isLeft(r) && r.left._tag).toBe("AgentUnavailable")
    expect(Date.now() - t0).toBeLessThan(200)
    await spawnRawAgent(sock, ["--mode", "allow"])
    await eventually(() => client.status().ready === 2, 5000, "connect after appearing")
    expect(Either.getOrThrow(await call(client)).decision).toBe("allow")
    await close()
  })

  it("SIGKILL mid-run fails in-flight calls at once, fails fast meanwhile, and reconnects to a restarted agent", async () => {
    const { sock, agent, client, close } = await setup(["--mode", "late:3000"])
    const inflight = Array.from({ length: 4 }, () => call(client, {}, 5000))
    await eventually(() => agent.lines.filter((l) => l.event === "frame").length === 4, 3000, "frames")
    const t0 = Date.now()
    agent.signal("SIGKILL")
    const results = await Promise.all(inflight)
    expect(Date.now() - t0).toBeLessThan(1000)
    for (const r of results) expect(Either.isLeft(r) && r.left._tag).toBe("AgentUnavailable")
    const meanwhile = await call(client, {}, 1000)
    expect(Either.isLeft(meanwhile) && meanwhile.left._tag).toBe("AgentUnavailable")
    await agent.exited
    await spawnRawAgent(sock, ["--mode", "allow"])
    await eventually(() => client.status().ready === 2, 5000, "reconnect")
    expect(Either.getOrThrow(await call(client)).decision).toBe("allow")
    await close()
  })

  it("an agent that crashes after N answers fails the call in flight at once, not at the deadline", async () => {
    const { agent, client, close } = await setup(["--mode", "crash-after-2"])
    expect(Either.isRight(await call(client))).toBe(true)
    expect(Either.isRight(await call(client))).toBe(true)
    const t0 = Date.now()
    const r = await call(client, {}, 5000)
    expect(Either.isLeft(r) && r.left._tag).toBe("AgentUnavailable")
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(await agent.exited).toBe(1)
    await close()
  })

  it("SIGSTOP makes calls time out; SIGCONT recovers", async () => {
    const { agent, client, close } = await setup(["--mode", "allow"])
    agent.signal("SIGSTOP")
    const r = await call(client, {}, 150)
    expect(Either.isLeft(r) && r.left._tag).toBe("AgentTimeout")
    agent.signal("SIGCONT")
    let ok = false
    for (let i = 0; i < 50 && !ok; i++) {
      const again = await call(client, {}, 500)
      ok = Either.isRight(again) && again.right.decision === "allow"
    }
    expect(ok).toBe(true)
    await close()
  })

  it("a connection the agent stops reading is dropped once its write buffer passes the cap", async () => {
    const { agent, client, close } = await setup(["--mode", "allow"], { poolSize: 1, maxWriteBufferBytes: 64 * 1024 })
    agent.signal("SIGSTOP")
    const big = { "x-big": ["x".repeat(200_000)] }
    const t0 = Date.now()
    const results = await Promise.all(Array.from({ length: 10 }, () => call(client, big, 10_000)))
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(results.every((r) => Either.isLeft(r) && r.left._tag === "AgentUnavailable")).toBe(true)
    expect(client.status().lastError).toMatch(/unread/)
    agent.signal("SIGCONT")
    await close()
  })

  it("a refused handshake surfaces as AgentRejected", async () => {
    const sock = path.join(socketDir(), "rej.sock")
    const agent = await spawnRawAgent(sock, ["--mode", "reject-handshake"])
    const { client, close } = await openClient({ id: "raw", socketPath: sock, poolSize: 1, reconnectBaseMs: 50 })
    await agent.waitFor((l) => l.event === "handshake")
    await eventually(() => client.status().lastError !== undefined, 3000, "rejection")
    const r = await call(client)
    expect(Either.isLeft(r) && r.left._tag).toBe("AgentRejected")
    await close()
  })

  it("a handshake that never comes back is bounded by connectTimeoutMs", async () => {
    const sock = path.join(socketDir(), "silent.sock")
    const agent = await spawnRawAgent(sock, ["--mode", "silent-handshake"])
    const { client, close } = await openClient({ id: "raw", socketPath: sock, poolSize: 1, connectTimeoutMs: 100, reconnectBaseMs: 1000 })
    await agent.waitFor((l) => l.event === "close", 3000)
    expect(client.status().lastError).toMatch(/timed out/)
    await close()
  })

  it("pings each connection and answers the agent's liveness", async () => {
    const { agent, close } = await setup(["--mode", "allow"], { pingIntervalMs: 30 })
    await agent.waitFor((l) => l.event === "ping")
    await close()
  })

  it("drops a connection whose agent stopped answering pings, and recovers after SIGCONT", async () => {
    const { agent, client, close } = await setup(["--mode", "allow"], { pingIntervalMs: 40, poolSize: 1, connectTimeoutMs: 200 })
    await eventually(() => agent.lines.filter((l) => l.event === "ping").length >= 2, 3000, "pings answered")
    agent.signal("SIGSTOP")
    await eventually(() => client.status().ready === 0, 3000, "liveness drop")
    agent.signal("SIGCONT")
    await eventually(() => client.status().ready === 1, 5000, "reconnect")
    expect(Either.getOrThrow(await call(client)).decision).toBe("allow")
    await close()
  })

  it("closing the scope closes every socket and timer and fails pending calls", async () => {
    const resources = () => {
      const info = process.getActiveResourcesInfo()
      return { pipes: info.filter((r) => r === "PipeWrap").length, timers: info.filter((r) => r === "Timeout").length }
    }
    const before = resources()
    const { agent, client, close } = await setup(["--mode", "late:5000"], { poolSize: 4, pingIntervalMs: 1000 })
    const pending = call(client, {}, 5000)
    await agent.waitFor((l) => l.event === "frame")
    expect(client.status().sockets).toBe(4)
    expect(client.status().timers).toBeGreaterThan(0)
    await close()
    const r = await pending
    expect(Either.isLeft(r) && r.left._tag === "AgentUnavailable" && r.left.reason).toBe("closed")
    expect(client.status()).toMatchObject({ sockets: 0, timers: 0, pending: 0, ready: 0 })
    await eventually(() => agent.lines.filter((l) => l.event === "close").length === 4, 3000, "agent sees 4 closes")
    await eventually(() => {
      const now = resources()
      return now.pipes <= before.pipes + 2 && now.timers <= before.timers
    }, 3000, "resources back to the baseline")
    await agent.stop()
    await eventually(() => resources().pipes <= before.pipes, 3000, "child pipes closed")
  })
})

describe("pickChannel", () => {
  /** The rule as stated: filter out what cannot take the call, then the best by health, then load, the first seen on a tie. */
  const reference = (chans: ReadonlyArray<PickableChannel | undefined>, start: number, id: string) => {
    const n = chans.length
    let best: PickableChannel | undefined
    const rank = (c: PickableChannel) => (c.health === HealthState.Healthy || c.health === HealthState.Degraded ? 0 : 1)
    let sawReady = false, sawPaused = false, sawDuplicate = false
    for (let i = 0; i < n; i++) {
      const c = chans[(start + i) % n]
      if (c === undefined || c.state !== "ready") continue
      sawReady = true
      if (c.paused) sawPaused = true
      else if (c.pending.has(id)) sawDuplicate = true
      else if (best === undefined || rank(c) < rank(best) || (rank(c) === rank(best) && c.pending.size < best.pending.size)) best = c
    }
    return best ?? new PickMiss(sawReady, sawPaused, sawDuplicate)
  }
  const channel = fc.record({
    state: fc.constantFrom("ready", "connecting", "closed"),
    paused: fc.boolean(),
    health: fc.constantFrom(HealthState.Healthy, HealthState.Degraded, HealthState.Draining, HealthState.Unhealthy),
    ids: fc.uniqueArray(fc.constantFrom("a", "b", "c", "d"), { maxLength: 4 })
  }).map(({ ids, ...rest }): PickableChannel => ({ ...rest, pending: { size: ids.length, has: (id: string) => ids.includes(id) } }))

  it("picks what the stated rule picks, with one pending-table lookup when the best channel does not carry the id", () => {
    fc.assert(
      fc.property(fc.array(fc.option(channel, { nil: undefined }), { minLength: 1, maxLength: 6 }), fc.nat(20), fc.constantFrom("a", "b", "z"), (chans, start, id) => {
        const lookups = { n: 0 }
        const counted = chans.map((c) => c && { ...c, pending: { size: c.pending.size, has: (x: string) => (lookups.n++, c.pending.has(x)) } })
        const got = pickChannel(counted.length, (i) => counted[i], start % counted.length, id)
        const want = reference(chans, start % chans.length, id)
        if (want instanceof PickMiss) expect(got).toEqual(want)
        else {
          expect(counted.indexOf(got as PickableChannel)).toBe(chans.indexOf(want))
          if (!chans.some((c) => c?.pending.has(id))) expect(lookups.n).toBe(1)
        }
      }),
      { numRuns: 2000 }
    )
  })
})

describe("PendingCalls", () => {
  it("behaves as a Map of id to call under any sequence of adds, replacements, lookups and removals, below and past the list limit", () => {
    const id = fc.integer({ min: 0, max: 60 }).map((n) => `id-${n}`)
    const op = fc.oneof(
      fc.tuple(fc.constant("set" as const), id, fc.nat()),
      fc.tuple(fc.constant("delete" as const), id, fc.constant(0)),
      fc.tuple(fc.constant("clear" as const), fc.constant(""), fc.constant(0))
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const table = new PendingCalls<{ readonly n: number }>()
        const model = new Map<string, { readonly n: number }>()
        for (const [kind, key, n] of ops) {
          if (kind === "set") {
            const call = { n }
            table.set(key, call)
            model.set(key, call)
          } else if (kind === "delete") {
            table.delete(key)
            model.delete(key)
          } else {
            table.clear()
            model.clear()
          }
          expect(table.size).toBe(model.size)
          expect(table.get(key)).toBe(model.get(key))
          expect(table.has(key)).toBe(model.has(key))
        }
        // every call once, whatever the representation
        expect(new Set(table.values())).toEqual(new Set(model.values()))
        expect(table.values().length).toBe(model.size)
        for (let i = 0; i <= 60; i++) expect(table.get(`id-${i}`)).toBe(model.get(`id-${i}`))
      }),
      { numRuns: 500 }
    )
  })
})
