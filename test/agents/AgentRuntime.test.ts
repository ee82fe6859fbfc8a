import * as Either from "effect/Either"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { agentConfig } from "../../src/agents/AgentConfig.js"
import { AgentRuntime } from "../../src/agents/AgentRuntime.js"
import { type AgentClient, AgentTimeout, AgentUnavailable } from "../../src/agents/Channels.js"
import { type AgentResponse, CancelReason, MessageType } from "../../src/agents/Protocol.js"

const allow: AgentResponse = {
  version: 2,
  decision: "allow",
  request_headers: [],
  response_headers: [],
  routing_metadata: {},
  audit: { tags: [], rule_ids: [], reason_codes: [], custom: {} },
  needs_more: false,
  request_body_mutation: null,
  response_body_mutation: null,
  websocket_decision: null
}

/** A client whose calls the test settles by hand; any other member throws. */
const fakeClient = () => {
  const calls: Array<{ id: string; done: (r: Either.Either<AgentResponse, any>) => void; cancelled?: CancelReason }> = []
  const die = () => {
    throw new Error("not stubbed")
  }
  const client: AgentClient = {
    id: "fake",
    start: (_type, event, _timeout, done) => {
      const c: (typeof calls)[number] = { id: event.correlation_id, done }
      calls.push(c)
      return (reason) => {
        c.cancelled = reason ?? CancelReason.ClientDisconnect
      }
    },
    call: die as any,
    status: die as any,
    capabilities: die as any
  }
  return { client, calls }
}

const ev = (id: string) => ({ correlation_id: id })

describe("AgentRuntime", () => {
  it("never has more than max-concurrent-calls in flight, whatever the order of completions and cancels", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 4 }),
        fc.array(fc.oneof(fc.constant("start" as const), fc.constant("finish" as const), fc.constant("cancel" as const)), {
          maxLength: 40
        }),
        (max, queue, ops) => {
          const { client, calls } = fakeClient()
          const rt = new AgentRuntime(agentConfig({ id: "a", socketPath: "/x", maxConcurrentCalls: max, maxQueuedCalls: queue }), client)
          const cancels: Array<() => void> = []
          let settled = 0
          let n = 0
          for (const op of ops) {
            if (op === "start") {
              cancels.push(rt.invoke(MessageType.RequestHeaders, ev(`c${n++}`), () => settled++))
            } else if (op === "finish") {
              const open = calls.find((c) => c.cancelled === undefined && !(c as any).finished)
              if (open) {
                ;(open as any).finished = true
                open.done(Either.right(allow))
              }
            } else cancels.shift()?.()
            const s = rt.status()
            expect(s.inflight).toBeLessThanOrEqual(max)
            expect(s.queued).toBeLessThanOrEqual(queue)
          }
          rt.close()
        }
      ),
      { numRuns: 300 }
    )
  })

  it("opens after consecutive failures, and a reused correlation id does not count as one", () => {
    const { client, calls } = fakeClient()
    const rt = new AgentRuntime(agentConfig({ id: "a", socketPath: "/x", circuitBreaker: { failureThreshold: 2 } }), client)
    const results: Array<string> = []
    const record = (r: Either.Either<AgentResponse, any>) => results.push(Either.isRight(r) ? "ok" : r.left._tag)
    for (let i = 0; i < 5; i++) {
      rt.invoke(MessageType.RequestHeaders, ev("dup"), record)
      calls.at(-1)!.done(Either.left(new AgentUnavailable({ agent: "a", reason: "duplicate-correlation-id", message: "" })))
    }
    expect(rt.status().circuit).toBe("closed")
    for (let i = 0; i < 2; i++) {
      rt.invoke(MessageType.RequestHeaders, ev(`t${i}`), record)
      calls.at(-1)!.done(Either.left(new AgentTimeout({ agent: "a", timeoutMs: 1, correlationId: `t${i}` })))
    }
    expect(rt.status().circuit).toBe("open")
    rt.invoke(MessageType.RequestHeaders, ev("x"), record)
    expect(results.at(-1)).toBe("AgentCircuitOpen")
    expect(calls.length).toBe(7)
  })

  it("a queued call whose whole budget went on waiting fails with AgentOverloaded and is never sent", () => {
    let t = 0
    const { client, calls } = fakeClient()
    const rt = new AgentRuntime(
      agentConfig({ id: "a", socketPath: "/x", maxConcurrentCalls: 1, maxQueuedCalls: 5, timeoutMs: 250 }),
      client,
      undefined,
      () => t
    )
    const results: Array<string> = []
    const record = (r: Either.Either<AgentResponse, any>) => results.push(Either.isRight(r) ? "ok" : r.left._tag)
    rt.invoke(MessageType.RequestHeaders, ev("a"), record)
    rt.invoke(MessageType.RequestHeaders, ev("b"), record)
    expect(rt.status()).toMatchObject({ inflight: 1, queued: 1 })
    // b's deadline (250 ms after it was queued) passes while a still holds the only slot
    t = 260
    calls[0].done(Either.right(allow))
    expect([...results].sort()).toEqual(["AgentOverloaded", "ok"])
    expect(calls.map((c) => c.id)).toEqual(["a"])
    expect(rt.status()).toMatchObject({ inflight: 0, queued: 0 })
    rt.close()
  })

  it("cancelling a running call frees its slot for the next queued one and forwards the reason", () => {
    const { client, calls } = fakeClient()
    const rt = new AgentRuntime(agentConfig({ id: "a", socketPath: "/x", maxConcurrentCalls: 1 }), client)
    const cancel = rt.invoke(MessageType.RequestHeaders, ev("a"), () => {})
    rt.invoke(MessageType.RequestHeaders, ev("b"), () => {})
    expect(rt.status()).toMatchObject({ inflight: 1, queued: 1 })
    cancel(CancelReason.BlockedByAgent)
    expect(calls[0].cancelled).toBe(CancelReason.BlockedByAgent)
    expect(calls.map((c) => c.id)).toEqual(["a", "b"])
    expect(rt.status()).toMatchObject({ inflight: 1, queued: 0 })
    rt.close()
  })
})
