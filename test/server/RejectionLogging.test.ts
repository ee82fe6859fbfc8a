/**
 * Every refusal made by the listener before the pipeline is logged and counted: refused
 * requests (parser errors, head deadlines, CONNECT, in-flight admission) get one access line
 * each; connections refused at accept get rate-limited warn lines in the error log plus a
 * "suppressed" summary, while the counter stays exact. Normal requests still log one line each.
 *
 * Real proxy in-process on port 0, real echo origin, access log in a temp file (polled with a
 * bounded loop), error log captured through the Effect logger the proxy was started with.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type * as net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SentinelConfigInput } from "../../src/config/Schema.js"
import fc from "fast-check"
import { headOfPacket, makeRejectionLimiter, REJECTION_LOG_LINES_PER_SECOND } from "../../src/observability/AccessLog.js"
import { makeJsonLogger } from "../../src/observability/Logs.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"
import { connect, rawRequest } from "../support/rawHttp.js"

interface Line {
  readonly status: number
  readonly error: string | null | undefined
  readonly method: string | null
  readonly path: string | null
  readonly protocol: string | null
  readonly host: string | null
  readonly user_agent: string | null
  readonly client_ip: string
  readonly trace_id: string
  readonly listener?: string
  readonly route_id: string | null
  readonly upstream: string | null
  readonly duration_ms: number
  readonly body_bytes_sent: number
}

interface Env {
  readonly proxy: ProxyHandle
  readonly file: string
  /** Error-log lines (JSON) written so far. */
  readonly errors: Array<Record<string, unknown>>
  readonly close: () => Promise<void>
}

let dir: string
let origin: EchoOrigin

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-rejlog-"))
  origin = await startEchoOrigin("rej")
})
afterAll(async () => {
  await origin.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

const start = async (name: string, extra: Partial<SentinelConfigInput>, format: "json" | "combined" = "json"): Promise<Env> => {
  const file = path.join(dir, `${name}.log`)
  const errors: Array<Record<string, unknown>> = []
  const scope = Effect.runSync(Scope.make())
  const proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
        routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }],
        system: { gracefulShutdownTimeout: Duration.millis(100) } as never,
        ...extra,
        observability: { logging: { accessLog: { enabled: true, file, format } } }
      } as Partial<SentinelConfigInput>)
    ).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, makeJsonLogger((l) => errors.push(JSON.parse(l) as Record<string, unknown>)))),
      Scope.extend(scope)
    )
  )
  return { proxy, file, errors, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const rawLines = (file: string): Array<string> =>
  fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : []
const lines = (file: string): Array<Line> => rawLines(file).map((l) => JSON.parse(l) as Line)

/** Polls `cond` until it holds or the bound expires. */
const eventually = async <A>(get: () => A, cond: (a: A) => boolean, what: string, timeoutMs = 5000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const a = get()
    if (cond(a)) return a
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(a).slice(0, 2000)}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const withError = (env: Env, error: string) => lines(env.file).filter((l) => l.error === error)

const rejectedCount = async (env: Env, reason: string): Promise<number> => {
  const text = await env.proxy.metrics.registry.metrics()
  const line = text.split("\n").find((l) => l.startsWith(`sentinel_rejected_requests_total{reason="${reason}"}`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

describe("refusals before the pipeline: access log", () => {
  let env: Env
  beforeAll(async () => {
    env = await start("main", {
      listeners: [
        {
          id: "edge",
          address: "127.0.0.1:0",
          headerTimeout: Duration.millis(400),
          requestTimeout: Duration.millis(1500)
        } as never
      ]
    })
  })
  afterAll(() => env.close())

  it("a malformed request line: 400, one line, no request details, unique trace id, no route", async () => {
    const reply = await rawRequest(env.proxy.port, "NOT A REQUEST\r\n\r\n")
    expect(reply.status).toBe(400)
    const [line] = await eventually(() => withError(env, "bad_request"), (ls) => ls.length === 1, "the 400 line")
    expect(line.status).toBe(400)
    expect(line.method).toBeNull()
    expect(line.path).toBeNull()
    expect(line.protocol).toBeNull()
    expect(line.client_ip).toBe("127.0.0.1")
    expect(line.listener).toBe("edge")
    expect(line.route_id).toBeNull()
    expect(line.upstream).toBeNull()
    expect(line.trace_id).toMatch(/^[A-Za-z0-9]{11}$/)
    expect(line.body_bytes_sent).toBeGreaterThan(0)
  })

  it("a malformed header after a good request line: 400 with the method, path, host and user agent the parser read", async () => {
    const reply = await rawRequest(env.proxy.port, "GET /bad-header?x=1 HTTP/1.1\r\nHost: site.test\r\nUser-Agent: probe/1\r\nBad Header\r\n\r\n")
    expect(reply.status).toBe(400)
    const line = (await eventually(() => withError(env, "bad_request").filter((l) => l.path === "/bad-header"), (ls) => ls.length === 1, "the line"))[0]
    expect(line).toMatchObject({ status: 400, method: "GET", protocol: "HTTP/1.1", host: "site.test", user_agent: "probe/1" })
    expect(origin.requests.some((r) => r.url?.startsWith("/bad-header"))).toBe(false)
  })

  it("a head over the size limit: 431 header_too_large, one line", async () => {
    const reply = await rawRequest(env.proxy.port, `GET /big HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`)
    expect(reply.status).toBe(431)
    const ls = await eventually(() => withError(env, "header_too_large"), (ls) => ls.length === 1, "the 431 line")
    expect(ls[0].status).toBe(431)
  })

  it("too many headers: 431 from the validator, exactly one line (the pipeline's)", async () => {
    const headers = Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join("")
    const reply = await rawRequest(env.proxy.port, `GET /many-headers HTTP/1.1\r\nHost: a\r\n${headers}\r\n`)
    expect(reply.status).toBe(431)
    const ls = await eventually(() => lines(env.file).filter((l) => l.status === 431 && l.path === "/many-headers"), (ls) => ls.length >= 1, "the line")
    expect(ls).toHaveLength(1)
  })

  it("a slowloris head: 408 at the header deadline, one line with the deadline as duration", async () => {
    const reply = await rawRequest(env.proxy.port, "GET /slowloris HTTP/1.1\r\nHost: a\r\nX-Slow: ", { timeoutMs: 4000 })
    expect(reply.status).toBe(408)
    const timeouts = () => lines(env.file).filter((l) => l.status === 408)
    const [line] = await eventually(timeouts, (ls) => ls.length === 1, "the 408 line")
    expect(["request_timeout", "headers_timeout"]).toContain(line.error)
    expect(line.duration_ms).toBe(400)
    expect(line.method).toBeNull()
  })

  it("CONNECT: 405 method_connect, one line with the method and authority", async () => {
    const reply = await rawRequest(env.proxy.port, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    expect(reply.status).toBe(405)
    const [line] = await eventually(() => withError(env, "method_connect"), (ls) => ls.length === 1, "the 405 line")
    expect(line).toMatchObject({ status: 405, method: "CONNECT", path: "example.com:443", host: "example.com:443" })
  })

  it("normal requests still log exactly one line each, without an error or a listener field", async () => {
    for (let i = 0; i < 5; i++) expect((await request(env.proxy.port, { path: `/ok-${i}` })).status).toBe(200)
    const ok = await eventually(() => lines(env.file).filter((l) => l.path?.startsWith("/ok-")), (ls) => ls.length >= 5, "5 lines")
    expect(ok.map((l) => l.path).sort()).toEqual(["/ok-0", "/ok-1", "/ok-2", "/ok-3", "/ok-4"])
    for (const l of ok) {
      expect(l.status).toBe(200)
      expect(l.error).toBeUndefined()
      expect(l.listener).toBeUndefined()
    }
    // every line of the file has a distinct trace id
    const ids = lines(env.file).map((l) => l.trace_id)
    expect(new Set(ids).size).toBe(ids.length)
    // and the refusals above were counted as well as logged
    expect(await rejectedCount(env, "method_connect")).toBe(1)
    expect(await rejectedCount(env, "header_too_large")).toBe(1)
  })
})

describe("refusals before the pipeline: admission and connection limits", () => {
  it("a request refused by the in-flight queue timeout: 503 access line with the request and the wait", async () => {
    const env = await start("admission", {
      limits: { maxInFlightRequests: 1, inFlightQueueSize: 4, inFlightQueueTimeout: Duration.millis(200) } as never
    })
    try {
      const holder = await connect(env.proxy.port)
      holder.write("GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
      await origin.arrived("/hold")
      const reply = await rawRequest(env.proxy.port, "GET /queued HTTP/1.1\r\nHost: q.test\r\n\r\n")
      expect(reply.status).toBe(503)
      const [line] = await eventually(() => withError(env, "in_flight_queue_timeout"), (ls) => ls.length === 1, "the 503 line")
      expect(line).toMatchObject({ status: 503, method: "GET", path: "/queued", host: "q.test", duration_ms: 200 })
      holder.destroy()
    } finally {
      await env.close()
    }
  })

  it("a connection over the per-IP limit: one warn line in the error log (not the access log), counted", async () => {
    const env = await start("perip", { limits: { maxConnectionsPerClient: 1 } as never })
    try {
      const held = await connect(env.proxy.port)
      const reply = await rawRequest(env.proxy.port, "GET /over HTTP/1.1\r\nHost: a\r\n\r\n")
      expect([0, 503]).toContain(reply.status)
      const refused = () => env.errors.filter((e) => e.reason === "too_many_connections_per_client")
      const [line] = await eventually(refused, (ls) => ls.length === 1, "the error-log line")
      expect(line).toMatchObject({
        level: "warn",
        message: "connection refused",
        status: 503,
        client_ip: "127.0.0.1",
        listener: "main",
        stage: "connection"
      })
      expect(await rejectedCount(env, "too_many_connections_per_client")).toBe(1)
      // the held connection is still served, and is the only access line
      held.write("GET /held HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      await eventually(() => lines(env.file), (ls) => ls.length === 1, "the held request's line")
      expect(lines(env.file)[0]).toMatchObject({ path: "/held", status: 200 })
      held.destroy()
    } finally {
      await env.close()
    }
  })

  it("a flood of 200 refused connections: at most the per-second budget of lines plus a summary; the counter shows 200", async () => {
    const env = await start("flood", { limits: { maxConnectionsPerClient: 1 } as never })
    const held: Array<net.Socket> = []
    try {
      held.push(await connect(env.proxy.port))
      const started = Date.now()
      const TOTAL = 200
      let next = 0
      const worker = async () => {
        while (next < TOTAL) {
          next++
          await rawRequest(env.proxy.port, "GET /flood HTTP/1.1\r\nHost: a\r\n\r\n", { timeoutMs: 3000 })
        }
      }
      await Promise.all(Array.from({ length: 10 }, worker))
      const elapsed = Date.now() - started
      expect(await rejectedCount(env, "too_many_connections_per_client")).toBe(TOTAL)
      const refused = () => env.errors.filter((e) => e.reason === "too_many_connections_per_client")
      const logged = () => refused().filter((e) => e.message === "connection refused").length
      const suppressed = () =>
        refused()
          .filter((e) => e.message === "client rejection log lines suppressed")
          .reduce((n, e) => n + Number(e.suppressed), 0)
      // every refusal is either a line or part of a summary (summaries come when a window ends)
      await eventually(() => logged() + suppressed(), (n) => n === TOTAL, "lines + suppressed = 200", 4000)
      const windows = Math.ceil(elapsed / 1000) + 1
      expect(logged()).toBeLessThanOrEqual(REJECTION_LOG_LINES_PER_SECOND * windows)
      expect(logged()).toBeGreaterThanOrEqual(REJECTION_LOG_LINES_PER_SECOND)
      expect(suppressed()).toBeGreaterThan(0)
      // nothing of the flood reached the access log
      expect(rawLines(env.file)).toHaveLength(0)
    } finally {
      for (const s of held) s.destroy()
      await env.close()
    }
  })
})

describe("refusals in the combined format", () => {
  it("a refusal before the request line is `\"-\"` with its status, like nginx", async () => {
    const env = await start("combined", {}, "combined")
    try {
      const reply = await rawRequest(env.proxy.port, "NOT A REQUEST\r\n\r\n")
      expect(reply.status).toBe(400)
      const [line] = await eventually(() => rawLines(env.file), (ls) => ls.length === 1, "the combined line")
      expect(line).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "-" 400 \d+ "-" "-" [A-Za-z0-9]{11} 0$/)
    } finally {
      await env.close()
    }
  })
})

describe("rejection logging: pure parts", () => {
  it("headOfPacket reads a well-formed request line with Host and User-Agent, and never throws on garbage", () => {
    expect(headOfPacket(Buffer.from("POST /a/b?c=d HTTP/1.0\r\nUser-Agent: x y\r\nHOST: h.test\r\nBad\r\n\r\n"))).toEqual({
      method: "POST",
      path: "/a/b",
      query: "c=d",
      protocol: "HTTP/1.0",
      host: "h.test",
      userAgent: "x y"
    })
    // a later chunk of a head (starts with a header line), an unterminated line: nothing claimed
    expect(headOfPacket(Buffer.from("Host: a\r\nX: y\r\n"))).toBeUndefined()
    expect(headOfPacket(Buffer.from("GET / HTTP/1.1"))).toBeUndefined()
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        const head = headOfPacket(Buffer.from(bytes))
        return head === undefined || (/^HTTP\/\d\.\d$/.test(head.protocol) && !/\s/.test(head.path))
      }),
      { numRuns: 500 }
    )
  })

  it("the limiter admits at most N per reason per one-second window and accounts for every event", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.constantFrom("a", "b")), { maxLength: 200 }),
        (perSecond, events) => {
          let clock = 0
          const suppressed = new Map<string, number>()
          const limiter = makeRejectionLimiter(
            perSecond,
            (reason, n) => suppressed.set(reason, (suppressed.get(reason) ?? 0) + n),
            () => clock
          )
          const admittedAt = new Map<string, Array<number>>()
          for (const [gap, reason] of events) {
            clock += gap
            if (limiter.admit(reason)) admittedAt.set(reason, [...(admittedAt.get(reason) ?? []), clock])
          }
          limiter.close()
          for (const reason of ["a", "b"]) {
            const total = events.filter(([, r]) => r === reason).length
            const times = admittedAt.get(reason) ?? []
            if (times.length + (suppressed.get(reason) ?? 0) !== total) return false
            // the first N always get through; windows are fixed one-second windows (N each), so
            // any span shorter than a second overlaps at most two of them: never more than 2N
            if (times.length < Math.min(total, perSecond)) return false
            for (let i = 2 * perSecond; i < times.length; i++) if (times[i] - times[i - 2 * perSecond] < 1000) return false
          }
          return true
        }
      ),
      { numRuns: 300 }
    )
  })
})
