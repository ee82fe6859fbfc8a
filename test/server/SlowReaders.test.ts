/**
 * Slow readers cannot take the proxy down for everyone (issue 10, D1 and D2), proven by
 * attack on real sockets: a real proxy on port 0, a real origin sending large bodies
 * (`bigOrigin.ts`), raw clients that pipeline, read slowly or not at all.
 * - D1: a pipelined response starting while the one before it is paused on its client made
 *   node emit `drain` inside another undici parser; resuming there broke undici (502, a cut
 *   response, a hung connection, and the failures opened the target's breaker). Now every
 *   pipelined response arrives whole and in order, and nothing counts against the target.
 * - D2: one client address cannot hold every upstream connection (`max-client-share`), a wait
 *   for a connection is bounded (`max-pending-requests`, `pending-timeout`: 503 with
 *   Retry-After), a response whose client takes nothing releases its upstream connection
 *   after `slow-reader-timeout-secs`, and a response within `response-buffer-size` frees its
 *   connection at once however slow the client.
 * Every wait is bounded; no sleep stands in for synchronisation.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import type * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import { bigBody, startBigOrigin, type BigOrigin } from "../support/bigOrigin.js"
import { sha256 } from "../support/origins.js"
import { accessLogTo, jsonLines, metricSum, openProxy, testConfig, waitUntil, type ProxyHandle } from "../support/proxy.js"
import { connect } from "../support/rawHttp.js"

const MiB = 1024 * 1024
let origin: BigOrigin
let dir: string

beforeAll(async () => {
  origin = await startBigOrigin()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-slowread-"))
})
afterAll(async () => {
  await origin.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

interface Env {
  readonly proxy: ProxyHandle
  readonly accessLog: string
  readonly close: () => Promise<void>
}

let n = 0
const start = async (
  pool: Record<string, unknown>,
  limits: Record<string, unknown> = {},
  extra: Partial<SentinelConfigInput> = {}
): Promise<Env> => {
  const accessLog = path.join(dir, `access-${n++}.log`)
  const { proxy, close } = await openProxy(
    testConfig({
      upstreams: [
        {
          id: "o",
          targets: [{ address: origin.address }],
          connectionPool: pool,
          // one failure would open it: a client-side failure counted against the target shows
          circuitBreaker: { failureThreshold: 1 }
        }
      ] as never,
      routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }],
      limits: limits as never,
      system: { gracefulShutdownTimeout: Duration.millis(100) } as never,
      observability: accessLogTo(accessLog),
      ...extra
    })
  )
  return { proxy, accessLog, close }
}

const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> =>
  Promise.race([p, new Promise<A>((_, reject) => setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms).unref())])

interface Parsed {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Buffer
}

/** Complete HTTP/1.1 responses with a Content-Length at the start of `buf`, in order. */
const parseResponses = (buf: Buffer): Array<Parsed> => {
  const out: Array<Parsed> = []
  let at = 0
  for (;;) {
    const end = buf.indexOf("\r\n\r\n", at)
    if (end === -1) return out
    const lines = buf.subarray(at, end).toString("latin1").split("\r\n")
    const headers: Record<string, string> = {}
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":")
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim()
    }
    const length = Number(headers["content-length"] ?? 0)
    if (buf.length < end + 4 + length) return out
    out.push({ status: Number(lines[0].split(" ")[1]), headers, body: buf.subarray(end + 4, end + 4 + length) })
    at = end + 4 + length
  }
}

/**
 * Reads what `socket` gets, pausing 2 ms every 256 KiB (a slow reader), until it holds
 * `count` complete responses (checked once `minBytes` arrived) or the socket closes.
 */
const readSlowly = (socket: net.Socket, count: number, minBytes: number): Promise<Buffer> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    let got = 0
    let sincePause = 0
    const done = () => resolve(Buffer.concat(chunks))
    socket.on("data", (c: Buffer) => {
      chunks.push(c)
      got += c.length
      sincePause += c.length
      if (got >= minBytes && parseResponses(Buffer.concat(chunks)).length >= count) return done()
      if (sincePause >= 256 * 1024) {
        sincePause = 0
        socket.pause()
        setTimeout(() => socket.resume(), 2)
      }
    })
    socket.once("close", done)
    socket.resume()
  })

/** A GET from `localAddress` on a fresh connection: status, Retry-After and body. */
const probe = (port: number, p: string, localAddress = "127.0.0.2") =>
  new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: p, localAddress, agent: false }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] as string | undefined, body: Buffer.concat(chunks).toString() })
      )
    })
    req.on("error", reject)
  })

/** A client that asks for `p` and never reads (its socket stays paused). */
const nonReader = async (port: number, p: string): Promise<net.Socket> => {
  const s = await connect(port)
  s.on("error", () => undefined)
  s.pause()
  s.write(`GET ${p} HTTP/1.1\r\nHost: a.example\r\n\r\n`)
  return s
}


interface AccessLine {
  readonly path: string
  readonly status: number
  readonly error: string | null
}
const access = (env: Env) => jsonLines<AccessLine>(env.accessLog)

const breakerOpened = (proxy: ProxyHandle) => metricSum(proxy, "sentinel_circuit_breaker_transitions_total", { to: "open" })

describe("D1: pipelined large responses to a slow reader", () => {
  it("every response arrives whole, byte-exact and in order; nothing counts against the target", async () => {
    const env = await start({})
    try {
      const size = 16 * MiB
      // each response after the first starts only once the one before it is paused on the client
      const paths = ["/p1", "/p2", "/p3"]
      const s = await connect(env.proxy.port)
      s.pause()
      s.write(
        paths.map((p, i) => `GET ${p}?n=${size}${i > 0 ? `&after=${paths[i - 1]}` : ""} HTTP/1.1\r\nHost: a.example\r\n\r\n`).join("")
      )
      await within(origin.stalled("/p1"), 5000, "the first response paused on its client")
      // the second response is held back until the first is paused: then it reads on
      const all = await within(readSlowly(s, paths.length, paths.length * size), 20_000, "all three responses")
      const got = parseResponses(all)
      expect(got.map((r) => r.status)).toEqual([200, 200, 200])
      got.forEach((r, i) => expect(sha256(r.body)).toBe(sha256(bigBody(paths[i], size))))
      s.destroy()
      expect(await metricSum(env.proxy, "sentinel_upstream_failures_total")).toBe(0)
      expect(await breakerOpened(env.proxy)).toBe(0)
      expect((await probe(env.proxy.port, "/after?n=10")).status).toBe(200)
    } finally {
      await env.close()
    }
  })
})

describe("D2: slow readers and the upstream pool", () => {
  it("one client address holds at most its share of a target's connections; another address gets 200 at once", async () => {
    const env = await start({ maxConnections: 4, maxClientShare: 0.5, pendingTimeout: Duration.seconds(30) }, { slowReaderTimeout: Duration.zero })
    const slow: Array<net.Socket> = []
    try {
      const before = origin.arrived.length
      for (let i = 0; i < 6; i++) slow.push(await nonReader(env.proxy.port, `/share${i}?n=${64 * MiB}`))
      // two of them get connections (half of four) and stall; the other four wait for their own share
      await waitUntil(() => origin.arrived.length - before >= 2, "two slow responses under way")
      await within(Promise.all(origin.arrived.slice(before, before + 2).map(origin.stalled)), 5000, "both paused on their clients")
      const r = await within(probe(env.proxy.port, "/probe?n=100"), 3000, "the probe from another address")
      expect(r.status).toBe(200)
      expect(r.body.length).toBe(100)
      // still only two slow ones ever reached the origin: the share held while they stalled
      expect(origin.arrived.slice(before).filter((p) => p.startsWith("/share"))).toHaveLength(2)
    } finally {
      for (const s of slow) s.destroy()
      await env.close()
    }
  })

  it("waiting for a connection is bounded: a full queue and a queue deadline answer 503 with Retry-After", async () => {
    const env = await start(
      { maxConnections: 1, maxClientShare: 1, maxPendingRequests: 1, pendingTimeout: Duration.millis(400) },
      { slowReaderTimeout: Duration.zero }
    )
    let holder: net.Socket | undefined
    try {
      holder = await nonReader(env.proxy.port, `/hold?n=${64 * MiB}`)
      await within(origin.stalled("/hold"), 5000, "the only connection held by a non-reader")
      const gate = env.proxy.dataplane().upstreams.get("o")!.targets[0].pool.gate
      const waiting = probe(env.proxy.port, "/waits?n=10")
      await waitUntil(() => gate.pending === 1, "the second request waiting for a connection")
      const full = await within(probe(env.proxy.port, "/full?n=10"), 2000, "the answer to a request beyond the queue")
      expect([full.status, full.retryAfter, JSON.parse(full.body).reason]).toEqual([503, "1", "upstream_queue_full"])
      const timedOut = await within(waiting, 3000, "the answer at the queue deadline")
      expect([timedOut.status, timedOut.retryAfter, JSON.parse(timedOut.body).reason]).toEqual([503, "1", "upstream_queue_timeout"])
      expect(origin.arrived.includes("/waits") || origin.arrived.includes("/full")).toBe(false)
      expect(await metricSum(env.proxy, "sentinel_rejected_requests_total", { reason: "upstream_queue_full" })).toBe(1)
      expect(await metricSum(env.proxy, "sentinel_rejected_requests_total", { reason: "upstream_queue_timeout" })).toBe(1)
      // our own limit, not the target's fault: its breaker (threshold 1) stayed closed
      holder.destroy()
      await waitUntil(() => gate.running === 0, "the held connection given back")
      expect((await probe(env.proxy.port, "/after?n=10")).status).toBe(200)
      expect(await breakerOpened(env.proxy)).toBe(0)
      const log = access(env)
      expect(log.filter((l) => l.status === 503).map((l) => l.error).sort()).toEqual(["upstream_queue_full", "upstream_queue_timeout"])
    } finally {
      holder?.destroy()
      await env.close()
    }
  })

  it("a response whose client takes nothing releases its upstream connection after slow-reader-timeout-secs", async () => {
    const env = await start({ maxConnections: 1, maxClientShare: 1 }, { slowReaderTimeout: Duration.millis(500), responseBufferSize: 64 * 1024 })
    let s: net.Socket | undefined
    try {
      const started = Date.now()
      s = await nonReader(env.proxy.port, `/cut?n=${64 * MiB}`)
      await within(origin.aborted("/cut"), 5000, "the upstream exchange released")
      expect(Date.now() - started).toBeGreaterThanOrEqual(450)
      // the connection is free again: another client is served by the only connection
      expect((await within(probe(env.proxy.port, "/next?n=10"), 3000, "the next request")).status).toBe(200)
      // the slow client's connection was closed (it sees the end once it reads)
      s.resume()
      await within(new Promise((r) => s!.once("close", r)), 5000, "the slow client's connection closed")
      await waitUntil(() => access(env).some((l) => l.path === "/cut"), "the access line")
      const line = access(env).find((l) => l.path === "/cut")!
      expect([line.status, line.error]).toEqual([200, "slow_reader"])
      expect(await metricSum(env.proxy, "sentinel_rejected_requests_total", { reason: "slow_reader" })).toBe(1)
      expect(await metricSum(env.proxy, "sentinel_upstream_failures_total")).toBe(0)
      expect(await breakerOpened(env.proxy)).toBe(0)
    } finally {
      s?.destroy()
      await env.close()
    }
  })

  it("a response within response-buffer-size frees its upstream connection although the client reads nothing", async () => {
    // more than the kernel buffers hold on loopback, less than the response buffer
    const size = 24 * MiB
    const env = await start({ maxConnections: 1, maxClientShare: 1 }, { slowReaderTimeout: Duration.zero, responseBufferSize: 32 * MiB })
    let s: net.Socket | undefined
    try {
      s = await nonReader(env.proxy.port, `/buffered?n=${size}`)
      await within(origin.finished("/buffered"), 10_000, "the origin done with the response")
      expect((await within(probe(env.proxy.port, "/next?n=10"), 3000, "the next request on the freed connection")).status).toBe(200)
      // and the slow client still gets the whole response when it reads at last
      const got = parseResponses(await within(readSlowly(s, 1, size), 20_000, "the buffered response"))
      expect(got).toHaveLength(1)
      expect(sha256(got[0].body)).toBe(sha256(bigBody("/buffered", size)))
    } finally {
      s?.destroy()
      await env.close()
    }
  })

  it("clients that vanish mid-upload or mid-download are not the target's fault", async () => {
    const env = await start({})
    try {
      for (let i = 0; i < 3; i++) {
        // a streamed upload (over request-buffer-size) cut halfway
        const up = await connect(env.proxy.port)
        up.on("error", () => undefined)
        up.write(`POST /up${i}?n=10 HTTP/1.1\r\nHost: a.example\r\nContent-Length: ${4 * MiB}\r\n\r\n`)
        up.write(Buffer.alloc(MiB, 1))
        await waitUntil(() => origin.arrived.includes(`/up${i}`), "the upload under way")
        up.destroy()
        // a download dropped while paused on the client
        const down = await nonReader(env.proxy.port, `/down${i}?n=${64 * MiB}`)
        await within(origin.stalled(`/down${i}`), 5000, "the download paused on its client")
        down.destroy()
        await within(origin.aborted(`/down${i}`), 5000, "the download's exchange aborted")
      }
      await waitUntil(() => access(env).filter((l) => /^\/(up|down)/.test(l.path)).length === 6, "six access lines")
      expect(access(env).filter((l) => /^\/(up|down)/.test(l.path)).map((l) => l.status)).toEqual(Array(6).fill(499))
      expect(await metricSum(env.proxy, "sentinel_upstream_failures_total")).toBe(0)
      expect(await breakerOpened(env.proxy)).toBe(0)
      expect((await probe(env.proxy.port, "/after?n=10")).status).toBe(200)
    } finally {
      await env.close()
    }
  })
})
