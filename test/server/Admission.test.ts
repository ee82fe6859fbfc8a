/**
 * In-flight admission (bounded queue, 503 when full or after the queue timeout) and connection
 * caps (total and per client IP): the counters as units, then end to end through the proxy.
 */
import { afterEach, describe, expect, it, vi } from "vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fc from "fast-check"
import { Admission, ConnectionTracker, type AdmissionRefusal } from "../../src/server/Admission.js"
import { startEchoOrigin } from "../support/origins.js"
import { startProxy, testConfig } from "../support/proxy.js"
import { closedWithin, connect, rawRequest } from "../support/rawHttp.js"

describe("Admission (unit)", () => {
  afterEach(() => vi.useRealTimers())

  it("admits up to the limit, queues up to the queue size, refuses the rest at once", () => {
    const a = new Admission({ maxInFlight: 2, queueSize: 1, queueTimeoutMs: 0 })
    const ran: Array<number> = []
    const refused: Array<AdmissionRefusal> = []
    const tickets = [0, 1, 2, 3].map((i) => a.admit(() => ran.push(i), (why) => refused.push(why)))
    expect(ran).toEqual([0, 1])
    expect(a.queued).toBe(1)
    expect(refused).toEqual(["in_flight_queue_full"])
    tickets[0].release()
    expect(ran).toEqual([0, 1, 2])
    expect(a.inFlight).toBe(2)
    tickets[0].release() // twice: ignored
    expect(a.inFlight).toBe(2)
  })

  it("a queued request is refused when its wait passes the queue timeout", () => {
    vi.useFakeTimers()
    const a = new Admission({ maxInFlight: 1, queueSize: 5, queueTimeoutMs: 100 })
    const refused: Array<AdmissionRefusal> = []
    a.admit(() => undefined, () => undefined)
    let ran = false
    a.admit(() => (ran = true), (why) => refused.push(why))
    vi.advanceTimersByTime(99)
    expect(refused).toEqual([])
    vi.advanceTimersByTime(1)
    expect(refused).toEqual(["in_flight_queue_timeout"])
    expect(a.queued).toBe(0)
    expect(ran).toBe(false)
  })

  it("a withdrawn waiter frees its queue place and never runs", () => {
    const a = new Admission({ maxInFlight: 1, queueSize: 1, queueTimeoutMs: 0 })
    const first = a.admit(() => undefined, () => undefined)
    let ran = false
    const waiting = a.admit(() => (ran = true), () => undefined)
    waiting.cancel()
    expect(a.queued).toBe(0)
    let next = false
    a.admit(() => (next = true), () => undefined)
    first.release()
    expect(ran).toBe(false)
    expect(next).toBe(true)
  })

  it("property: never more than maxInFlight running, never more than queueSize waiting, every request ends exactly once", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 5 }),
        fc.array(fc.oneof(fc.constant("arrive" as const), fc.constant("finish" as const), fc.constant("cancel" as const)), { maxLength: 80 }),
        (maxInFlight, queueSize, ops) => {
          const a = new Admission({ maxInFlight, queueSize, queueTimeoutMs: 0 })
          const running: Array<{ release: () => void }> = []
          const waiting: Array<{ cancel: () => void; release: () => void }> = []
          let outcomes = 0
          let arrivals = 0
          for (const op of ops) {
            if (op === "arrive") {
              arrivals++
              let ticket: { release: () => void; cancel: () => void } | undefined
              let ranNow = false
              ticket = a.admit(
                () => {
                  outcomes++
                  ranNow = true
                  if (ticket !== undefined) {
                    const i = waiting.indexOf(ticket)
                    if (i >= 0) waiting.splice(i, 1)
                    running.push(ticket)
                  }
                },
                () => outcomes++
              )
              if (ranNow) running.push(ticket)
              else if (a.queued > waiting.length) waiting.push(ticket)
            } else if (op === "finish" && running.length > 0) {
              running.shift()!.release()
            } else if (op === "cancel" && waiting.length > 0) {
              waiting.shift()!.cancel()
              outcomes++ // the client went away: that is its end
            }
            if (a.inFlight > maxInFlight || a.queued > queueSize) return false
          }
          return outcomes + a.queued === arrivals
        }
      )
    )
  })
})

describe("ConnectionTracker (unit)", () => {
  it("caps per client and in total; the map forgets clients with no connection", () => {
    const t = new ConnectionTracker({ maxTotal: 3, maxPerClient: 2 })
    expect(t.tryOpen("a")).toBeUndefined()
    expect(t.tryOpen("a")).toBeUndefined()
    expect(t.tryOpen("a")).toBe("too_many_connections_per_client")
    expect(t.tryOpen("b")).toBeUndefined()
    expect(t.tryOpen("c")).toBe("too_many_connections")
    t.close("a")
    expect(t.tryOpen("c")).toBeUndefined()
    t.close("a")
    t.close("b")
    t.close("c")
    expect(t.count).toBe(0)
    expect(t.of("a")).toBe(0)
  })
})

const withProxy = async <A>(limits: object, f: (port: number, origin: Awaited<ReturnType<typeof startEchoOrigin>>) => Promise<A>): Promise<A> => {
  const origin = await startEchoOrigin("adm")
  const scope = Effect.runSync(Scope.make())
  try {
    const proxy = await Effect.runPromise(
      startProxy(
        testConfig({
          upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
          routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }],
          limits: limits as never,
          system: { gracefulShutdownTimeout: Duration.millis(100) } as never
        })
      ).pipe(Scope.extend(scope))
    )
    return await f(proxy.port, origin)
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    await origin.close()
  }
}

describe("admission end to end", () => {
  it("in-flight limit: one running, one queued, the next answered 503 at once; the queued one runs when a slot frees", () =>
    withProxy({ maxInFlightRequests: 1, inFlightQueueSize: 1, inFlightQueueTimeout: Duration.seconds(5) }, async (port, origin) => {
      const holder = await connect(port)
      holder.write("GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
      await origin.arrived("/hold")
      // two more: whichever arrives second finds the queue full (the other waits in it)
      const started = Date.now()
      const replies = [
        rawRequest(port, "GET /b1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", { timeoutMs: 5000 }),
        rawRequest(port, "GET /b2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", { timeoutMs: 5000 })
      ]
      const first = await Promise.race(replies)
      expect(first.status).toBe(503)
      expect(first.raw.toLowerCase()).toContain("retry-after: 1")
      expect(first.raw).toContain("in_flight_queue_full")
      expect(Date.now() - started).toBeLessThan(1000)
      // nothing but the holder reached the upstream so far
      expect(origin.requests.map((r) => r.url)).toEqual(["/hold"])
      holder.destroy()
      const statuses = (await Promise.all(replies)).map((r) => r.status).sort()
      expect(statuses).toEqual([200, 503])
      expect(origin.requests.length).toBe(2)
    }))

  it("a queued request is answered 503 when its wait passes in-flight-queue-timeout (never an unbounded wait)", () =>
    withProxy({ maxInFlightRequests: 1, inFlightQueueSize: 10, inFlightQueueTimeout: Duration.millis(300) }, async (port, origin) => {
      const holder = await connect(port)
      holder.write("GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
      await origin.arrived("/hold")
      const started = Date.now()
      const reply = await rawRequest(port, "GET /waits HTTP/1.1\r\nHost: a\r\n\r\n")
      expect(reply.status).toBe(503)
      expect(reply.raw).toContain("in_flight_queue_timeout")
      expect(Date.now() - started).toBeGreaterThanOrEqual(280)
      expect(Date.now() - started).toBeLessThan(1500)
      holder.destroy()
    }))

  it("connections per client IP: the extra connection is refused; another IP is still served", () =>
    withProxy({ maxConnectionsPerClient: 2 }, async (port, origin) => {
      const a = await connect(port)
      const b = await connect(port)
      const third = await rawRequest(port, "GET /third HTTP/1.1\r\nHost: a\r\n\r\n")
      expect(third.closed).toBe(true)
      // either the 503 arrived before the close, or the close won the race; never served
      expect([0, 503]).toContain(third.status)
      expect(origin.requests.some((r) => r.url === "/third")).toBe(false)
      const other = await rawRequest(port, "GET /other HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", { localAddress: "127.0.0.2" })
      expect(other.status).toBe(200)
      // a freed slot is usable again
      a.destroy()
      await closedWithin(a, 1000)
      let again = await rawRequest(port, "GET /again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      for (let i = 0; i < 20 && again.status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 20))
        again = await rawRequest(port, "GET /again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      }
      expect(again.status).toBe(200)
      b.destroy()
    }))

  it("total connections are capped across clients", () =>
    withProxy({ maxTotalConnections: 1 }, async (port, origin) => {
      const a = await connect(port)
      const second = await rawRequest(port, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n", { localAddress: "127.0.0.3" })
      expect(second.closed).toBe(true)
      expect([0, 503]).toContain(second.status)
      expect(origin.requests.length).toBe(0)
      a.destroy()
    }))
})
