/**
 * The access log tells proxy-side timeouts from clients that left (issue 10, D3): a request
 * the listener cuts at a deadline gets one access line with the status the client got and
 * the deadline as `error` (`request_timeout`, `body_idle_timeout`, `write_timeout`); 499
 * `client_closed` is kept for a client that really went away first.
 *
 * Each case runs on both ways a request goes upstream: plain callbacks (route "all") and a
 * fiber (route "fx", whose request stage is an Effect).
 *
 * Real proxy in-process on port 0, real echo origin, access log in a temp file (polled with a
 * bounded loop). Deadlines are short: body idle and write 1 s, the whole request 1.5 s.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RouteExtension } from "../../src/pipeline/Stage.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { metricSum, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"
import { closedWithin, connect, statusesOf } from "../support/rawHttp.js"
import { slowPostClient, slowReader } from "../support/slowClients.js"

interface Line {
  readonly status: number
  readonly error: string | null | undefined
  readonly method: string | null
  readonly path: string | null
  readonly query: string | null | undefined
  readonly route_id: string | null
  readonly body_bytes_sent: number
}

const BODY_IDLE = 1000
const REQUEST = 1500
const WRITE = 1000

/** Route "fx" gets a request stage that is an Effect: its upstream exchange runs in a fiber. */
const viaFiber: RouteExtension = {
  name: "via-fiber",
  compile: (route) => (route.id === "fx" ? { request: [() => Effect.succeed(undefined)] } : undefined)
}

let dir: string
let file: string
let origin: EchoOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-timeoutlog-"))
  file = path.join(dir, "access.log")
  // served as /files/big.bin; sparse: large enough for the socket buffers to fill, made at once
  fs.mkdirSync(path.join(dir, "www", "files"), { recursive: true })
  fs.writeFileSync(path.join(dir, "www", "files", "big.bin"), "")
  fs.truncateSync(path.join(dir, "www", "files", "big.bin"), 256 * 1024 * 1024)
  origin = await startEchoOrigin("timeouts")
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        listeners: [
          {
            id: "main",
            address: "127.0.0.1:0",
            headerTimeout: Duration.millis(BODY_IDLE),
            bodyIdleTimeout: Duration.millis(BODY_IDLE),
            requestTimeout: Duration.millis(REQUEST),
            writeTimeout: Duration.millis(WRITE)
          } as never
        ],
        upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
        routes: [
          { id: "fx", matches: [{ _tag: "PathPrefix", prefix: "/fx" }], upstream: "o" },
          { id: "files", matches: [{ _tag: "PathPrefix", prefix: "/files" }], staticFiles: { root: path.join(dir, "www") } },
          { id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }
        ],
        system: { gracefulShutdownTimeout: Duration.millis(100) } as never,
        observability: { logging: { accessLog: { enabled: true, file, flushIntervalMs: 10 } } } as never
      }),
      { extensions: [viaFiber] }
    ).pipe(Scope.extend(scope))
  )
})

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

const lines = (): Array<Line> =>
  fs.existsSync(file)
    ? fs
        .readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Line)
    : []

const linesFor = (p: string): Array<Line> => lines().filter((l) => l.path === p)

/** Polls `cond` until it holds or the bound expires (then fails with what it saw). */
const eventually = async <A>(get: () => A | Promise<A>, cond: (a: A) => boolean, what: string, timeoutMs = 6000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const a = await get()
    if (cond(a)) return a
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(a).slice(0, 2000)}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The request's access line once it is there, after checking that no second one follows. */
const onlyLineFor = async (p: string): Promise<Line> => {
  const [line] = await eventually(() => linesFor(p), (ls) => ls.length >= 1, `the access line of ${p}`)
  // a second line for the same request would come from the same close (the listener's
  // refusal path, a second exit of the pipeline): once a later request's line is flushed
  // behind it, count again
  const marker = `/marker-after${p}`
  const s = await connect(proxy.port)
  s.on("error", () => undefined)
  s.write(`GET ${marker} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n`)
  s.resume()
  await eventually(() => linesFor(marker), (ls) => ls.length === 1, `the marker line ${marker}`)
  s.destroy()
  expect(linesFor(p)).toHaveLength(1)
  return line
}

const rejected = (reason: string) => metricSum(proxy, "sentinel_rejected_requests_total", { reason })

describe("access log of a static file's write timeout", () => {
  it("a client that stops reading a large file: 200 with error write_timeout, one line", async () => {
    const before = await rejected("write_timeout")
    const c = await slowReader(proxy.port, "/files/big.bin")
    await eventually(() => rejected("write_timeout"), (n) => n === before + 1, "the write_timeout rejection", 10_000)
    c.socket.resume()
    await closedWithin(c.socket, 5000)
    const line = await onlyLineFor("/files/big.bin")
    expect(line).toMatchObject({ status: 200, error: "write_timeout", route_id: "files" })
    expect(line.body_bytes_sent).toBeLessThan(256 * 1024 * 1024)
  })
})

describe.each([
  ["on callbacks", "", "all"],
  ["in a fiber", "/fx", "fx"]
])("access log of proxy-side timeouts, %s", (_, at, route) => {
  it("a body trickled past the request deadline: the client gets 408, the access line says 408 request_timeout", async () => {
    const before = await rejected("request_timeout")
    // one byte every 100 ms never trips the body idle timer; the whole request does
    const c = await slowPostClient(proxy.port, 1000, 100, `${at}/trickle`)
    await closedWithin(c.socket, REQUEST + 3000)
    c.stop()
    expect(statusesOf(c.received())).toEqual([408])
    const line = await onlyLineFor(`${at}/trickle`)
    expect(line.status).toBe(408)
    expect(line.error).toBe("request_timeout")
    expect(line.route_id).toBe(route)
    expect(await rejected("request_timeout")).toBe(before + 1)
  })

  it("a streamed body trickled past the request deadline: 408 request_timeout as well", async () => {
    // above request-buffer-size: the body streams to the origin instead of being read first
    const c = await slowPostClient(proxy.port, 1024 * 1024, 100, `${at}/trickle-streamed`)
    await closedWithin(c.socket, REQUEST + 3000)
    c.stop()
    expect(statusesOf(c.received())).toEqual([408])
    const line = await onlyLineFor(`${at}/trickle-streamed`)
    expect(line).toMatchObject({ status: 408, error: "request_timeout" })
  })

  it("a body that stops arriving: the client gets 408 body_idle_timeout, and so does its one access line", async () => {
    const before = await rejected("body_idle_timeout")
    const c = await slowPostClient(proxy.port, 1000, 0, `${at}/stalled`)
    await closedWithin(c.socket, BODY_IDLE + 3000)
    expect(statusesOf(c.received())).toEqual([408])
    expect(c.received()).toContain("body_idle_timeout")
    const line = await onlyLineFor(`${at}/stalled`)
    expect(line.status).toBe(408)
    expect(line.error).toBe("body_idle_timeout")
    expect(line.body_bytes_sent).toBeGreaterThan(0)
    expect(await rejected("body_idle_timeout")).toBe(before + 1)
  })

  it("a streamed body that stops arriving: 408 body_idle_timeout as well", async () => {
    const c = await slowPostClient(proxy.port, 1024 * 1024, 0, `${at}/stalled-streamed`)
    await closedWithin(c.socket, BODY_IDLE + 3000)
    expect(statusesOf(c.received())).toEqual([408])
    const line = await onlyLineFor(`${at}/stalled-streamed`)
    expect(line).toMatchObject({ status: 408, error: "body_idle_timeout" })
  })

  it("a body the parser refuses (bad chunk size): the client gets 400, the access line says 400 bad_request", async () => {
    const s = await connect(proxy.port)
    s.on("error", () => undefined)
    let received = ""
    s.on("data", (c: Buffer) => (received += c.toString("latin1")))
    // one write: the head starts the request (its body is being read, request-buffer-size)
    // before the parser reaches the bad chunk size
    s.write(`POST ${at}/bad-chunk HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n`)
    await closedWithin(s, 3000)
    expect(statusesOf(received)).toEqual([400])
    const line = await onlyLineFor(`${at}/bad-chunk`)
    expect(line).toMatchObject({ status: 400, error: "bad_request" })
  })

  it("a client that stops reading a large response: the line keeps the status sent (200) with error write_timeout", async () => {
    const before = await rejected("write_timeout")
    const big = `${at}/big?n=${256 * 1024 * 1024}`
    const c = await slowReader(proxy.port, big)
    // the kernel buffers fill first (a few MB), then the proxy's writes stall for WRITE
    await eventually(() => rejected("write_timeout"), (n) => n === before + 1, "the write_timeout rejection", 10_000)
    c.socket.resume()
    await closedWithin(c.socket, 5000)
    const line = await onlyLineFor(`${at}/big`)
    expect(line.status).toBe(200)
    expect(line.error).toBe("write_timeout")
    expect(line.body_bytes_sent).toBeGreaterThan(0)
    expect(line.body_bytes_sent).toBeLessThan(256 * 1024 * 1024)
    await origin.aborted(big)
  })
})

describe.each([
  ["on callbacks", ""],
  ["in a fiber", "/fx"]
])("a client that really leaves first is still 499 client_closed, %s", (_, at) => {
  it("while the origin is answering", async () => {
    const s = await connect(proxy.port)
    s.on("error", () => undefined)
    s.write(`GET ${at}/slow?ms=5000 HTTP/1.1\r\nHost: a.example\r\n\r\n`)
    await origin.arrived(`${at}/slow?ms=5000`)
    // the head and the first chunk are on their way: the client leaves mid-response
    await eventually(() => s.bytesRead, (n) => n > 0, "the response head")
    s.destroy()
    const line = await onlyLineFor(`${at}/slow`)
    expect(line).toMatchObject({ status: 499, error: "client_closed" })
  })

  it("in the middle of sending its body", async () => {
    const c = await slowPostClient(proxy.port, 1000, 100, `${at}/leaves-mid-body`)
    await eventually(() => c.socket.bytesWritten, (n) => n > 85, "part of the body sent")
    c.stop()
    const line = await onlyLineFor(`${at}/leaves-mid-body`)
    expect(line).toMatchObject({ status: 499, error: "client_closed" })
  })
})
