/**
 * Slow and idle clients are closed on time while normal traffic keeps flowing. Deadlines are
 * short (1 s) so the file runs in seconds; each assertion allows the sweep interval plus one
 * second of slack ("closed within about a second of its deadline").
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"
import { closedWithin, connect, rawRequest, statusesOf } from "../support/rawHttp.js"
import { slowlorisClient, slowPostClient, slowReader } from "../support/slowClients.js"

let origin: EchoOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope

const DEADLINE = 1000
const SLACK = 1200

beforeAll(async () => {
  origin = await startEchoOrigin("slow")
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        listeners: [
          {
            id: "main",
            address: "127.0.0.1:0",
            headerTimeout: Duration.millis(DEADLINE),
            bodyIdleTimeout: Duration.millis(DEADLINE),
            requestTimeout: Duration.millis(2500),
            writeTimeout: Duration.millis(DEADLINE),
            keepaliveTimeout: Duration.millis(500),
            keepaliveMaxRequests: 2
          } as never
        ],
        upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
        routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }],
        system: { gracefulShutdownTimeout: Duration.millis(200) } as never
      })
    ).pipe(Scope.extend(scope))
  )
})

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
})

/** Normal requests, one after another, while `until` is pending; all must succeed. */
const normalTraffic = async (until: Promise<unknown>): Promise<number> => {
  let done = false
  void until.finally(() => (done = true))
  let ok = 0
  while (!done) {
    const r = await request(proxy.port, { path: "/normal" })
    expect(r.status).toBe(200)
    ok++
  }
  return ok
}

describe("slow clients", () => {
  it("slowloris sockets get 408 and are closed within about a second of the header deadline; normal traffic flows", async () => {
    const clients = await Promise.all(Array.from({ length: 5 }, () => slowlorisClient(proxy.port, 150)))
    const all = Promise.all(clients.map((c) => c.closed))
    const [times, served] = await Promise.all([all, normalTraffic(all)])
    for (const t of times) {
      expect(t).toBeGreaterThanOrEqual(DEADLINE - 50)
      expect(t).toBeLessThan(DEADLINE + SLACK)
    }
    expect(clients.every((c) => statusesOf(c.received())[0] === 408)).toBe(true)
    expect(served).toBeGreaterThan(0)
    expect(origin.requests.some((r) => r.url === "/slowloris")).toBe(false)
  })

  it("a slow-POST client that stops sending its body gets 408 at the body idle deadline", async () => {
    const c = await slowPostClient(proxy.port, 100, 0, "/upload?stall")
    const [t, served] = await Promise.all([c.closed, normalTraffic(c.closed)])
    expect(t).toBeGreaterThanOrEqual(DEADLINE - 50)
    expect(t).toBeLessThan(DEADLINE + SLACK)
    expect(statusesOf(c.received())).toEqual([408])
    expect(served).toBeGreaterThan(0)
  })

  it("a slow-POST client that trickles a byte at a time is cut at the total request deadline", async () => {
    const c = await slowPostClient(proxy.port, 1000, 200, "/upload?trickle")
    const t = await c.closed
    expect(t).toBeGreaterThanOrEqual(2500 - 50)
    expect(t).toBeLessThan(2500 + SLACK)
    c.stop()
  })

  it("a client that never reads a large response is dropped at the write deadline", async () => {
    const counted = async () =>
      (await proxy.metrics.registry.getSingleMetricAsString("sentinel_rejected_requests_total")).includes('reason="write_timeout"')
    const c = await slowReader(proxy.port, `/big?n=${256 * 1024 * 1024}`)
    const started = Date.now()
    // the kernel buffers fill first (a few MB), then the proxy's writes stall for DEADLINE
    for (let i = 0; i < 160 && !(await counted()); i++) await new Promise((r) => setTimeout(r, 50))
    expect(await counted()).toBe(true)
    expect(Date.now() - started).toBeGreaterThanOrEqual(DEADLINE - 50)
    // a paused socket only notices the close once it reads again
    c.socket.resume()
    await closedWithin(c.socket, 5000)
    // the upstream exchange was abandoned too
    await origin.aborted(`/big?n=${256 * 1024 * 1024}`)
  })

  it("an idle keep-alive connection is closed after the keep-alive timeout", async () => {
    const s = await connect(proxy.port)
    const answered = new Promise<void>((r) => s.once("data", () => r()))
    s.write("GET /ka HTTP/1.1\r\nHost: a.example\r\n\r\n")
    await answered
    // node adds one second to the advertised keep-alive timeout before closing
    const t = await closedWithin(s, 500 + 1000 + SLACK)
    expect(t).toBeGreaterThanOrEqual(400)
  })

  it("keepalive-max-requests closes the connection after that many requests", async () => {
    const reply = await rawRequest(
      proxy.port,
      "GET /k1 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /k2 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /k3 HTTP/1.1\r\nHost: a.example\r\n\r\n"
    )
    expect(reply.closed).toBe(true)
    expect(reply.statuses.slice(0, 2)).toEqual([200, 200])
    expect(reply.statuses.filter((s) => s === 200).length).toBe(2)
    expect(origin.requests.some((r) => r.url === "/k3")).toBe(false)
  })
})
