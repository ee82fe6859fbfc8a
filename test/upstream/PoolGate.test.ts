/**
 * The target's connection admission as pure logic, under random sequences of arrivals,
 * departures and give-ups: it never runs more than its capacity, never gives one client more
 * than its share, never queues more than its bound, never leaves a free slot that a waiter
 * may take, and admits eligible waiters first come first served.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { PoolGate, type GateWaiter } from "../../src/upstream/PoolGate.js"

interface W extends GateWaiter {
  readonly id: number
  state: "waiting" | "running" | "refused" | "gone"
}

type Op = { readonly op: "arrive"; readonly client: string } | { readonly op: "leave"; readonly pick: number } | { readonly op: "giveUp"; readonly pick: number }

const ops: fc.Arbitrary<Array<Op>> = fc.array(
  fc.oneof(
    fc.record({ op: fc.constant("arrive" as const), client: fc.constantFrom("a", "b", "c") }),
    fc.record({ op: fc.constant("leave" as const), pick: fc.nat() }),
    fc.record({ op: fc.constant("giveUp" as const), pick: fc.nat() })
  ),
  { maxLength: 200 }
)

describe("PoolGate", () => {
  it("capacity, share and queue bounds hold; no eligible waiter is left behind; FIFO among the eligible", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 5 }), ops, (capacity, share, maxPending, script) => {
        const perClient = Math.min(share, capacity)
        const gate = new PoolGate({ capacity, maxPending, pendingTimeoutMs: 0, perClient })
        const all: Array<W> = []
        const admittedOrder: Array<number> = []
        const arrive = (client: string) => {
          const w: W = {
            id: all.length,
            client,
            state: "waiting",
            admitted() {
              expect(w.state).toBe("waiting")
              w.state = "running"
              admittedOrder.push(w.id)
            }
          }
          all.push(w)
          if (gate.tryEnter(client)) {
            w.state = "running"
            return
          }
          if (gate.wait(w) !== undefined) w.state = "refused"
        }
        for (const step of script) {
          if (step.op === "arrive") arrive(step.client)
          else {
            const pool = all.filter((w) => w.state === (step.op === "leave" ? "running" : "waiting"))
            if (pool.length === 0) continue
            const w = pool[step.pick % pool.length]
            w.state = "gone"
            if (step.op === "leave") gate.leave(w.client)
            else gate.remove(w)
          }
          const running = all.filter((w) => w.state === "running")
          const waiting = all.filter((w) => w.state === "waiting")
          expect(gate.running).toBe(running.length)
          expect(gate.pending).toBe(waiting.length)
          expect(running.length).toBeLessThanOrEqual(capacity)
          expect(waiting.length).toBeLessThanOrEqual(maxPending)
          const held = (c: string) => running.filter((w) => w.client === c).length
          for (const c of ["a", "b", "c"]) expect(held(c)).toBeLessThanOrEqual(perClient)
          // work-conserving: a waiter waits only while the gate is full or its client holds its share
          for (const w of waiting) expect(running.length === capacity || held(w.client) === perClient).toBe(true)
        }
        // among waiters of one client, admission follows arrival
        for (const c of ["a", "b", "c"]) {
          const mine = admittedOrder.filter((id) => all[id].client === c)
          expect(mine).toEqual([...mine].sort((x, y) => x - y))
        }
      }),
      { numRuns: 300 }
    )
  })

  it("a waiter that gives up says whether it waited for the pool or for its own share", () => {
    const gate = new PoolGate({ capacity: 2, maxPending: 4, pendingTimeoutMs: 0, perClient: 1 })
    const w = (client: string): GateWaiter => ({ client, admitted: () => undefined })
    expect(gate.tryEnter("a")).toBe(true)
    const second = w("a")
    expect(gate.tryEnter("a")).toBe(false)
    expect(gate.wait(second)).toBeUndefined()
    // a free slot, but "a" holds its share
    expect(gate.remove(second)).toBe("client_share")
    expect(gate.tryEnter("b")).toBe(true)
    const third = w("c")
    expect(gate.tryEnter("c")).toBe(false)
    expect(gate.wait(third)).toBeUndefined()
    expect(gate.remove(third)).toBe("queue_timeout")
  })
})
