import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Writable } from "node:stream"
import { afterEach, beforeEach } from "vitest"
import { clfEscape, formatAccessCombined, formatAccessJson, type AccessLogEntry } from "../../src/observability/AccessFormat.js"
import { formatAudit } from "../../src/observability/AuditFormat.js"
import { appLoggerLayer } from "../../src/observability/Logs.js"
import { makeLogWriter, makeLogWriterScoped, type LogWriter } from "../../src/observability/LogWriter.js"
import { stalledSink } from "../support/stalledSink.js"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-logs-"))
})
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true })
})

const lines = (file: string): Array<string> =>
  fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : []

const entry: AccessLogEntry = {
  timestamp: Date.UTC(2000, 9, 10, 13, 55, 36, 123),
  trace_id: "2Kj8mNpQ3xR",
  method: "GET",
  path: "/apache_pb.gif",
  query: "a=1&b=2",
  protocol: "HTTP/1.1",
  status: 200,
  body_bytes: 0,
  duration_ms: 12.3456,
  client_ip: "127.0.0.1",
  user_agent: "Mozilla/4.08 [en] (Win98; I ;Nav)",
  referer: "http://www.example.com/start.html",
  host: "example.com",
  route_id: "static",
  upstream: "origin",
  upstream_attempts: 1,
  upstream_addr: "10.0.0.5:8080",
  instance_id: "host:1",
  body_bytes_sent: 2326
}

describe("log formats", () => {
  it("combined: Apache combined plus ` trace_id duration_ms`, exactly", () => {
    expect(formatAccessCombined(entry)).toBe(
      '127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /apache_pb.gif?a=1&b=2 HTTP/1.1" 200 2326 ' +
        '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)" 2Kj8mNpQ3xR 12'
    )
    expect(
      formatAccessCombined({ ...entry, query: undefined, referer: undefined, user_agent: "", body_bytes_sent: 0 })
    ).toBe('127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /apache_pb.gif HTTP/1.1" 200 - "-" "-" 2Kj8mNpQ3xR 12')
  })

  it("combined: client-controlled fields cannot break the line or its quoting", () => {
    // Invariant: whatever a client sends, the formatted entry is one line whose quoted fields stay balanced.
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 64 }), fc.string({ unit: "binary", maxLength: 64 }), (ua, p) => {
        const line = formatAccessCombined({ ...entry, user_agent: ua, path: p, query: undefined })
        expect(line).not.toMatch(/[\r\n\x00-\x1f]/)
        // six unescaped quotes: request line, referer, user agent
        expect(line.replace(/\\\\/g, "").replace(/\\"/g, "").split('"').length - 1).toBe(6)
      })
    )
    expect(clfEscape('a"b\\c\nd\u00e9')).toBe('a\\"b\\\\c\\x0Ad\\xE9')
  })

  it("json access line carries Sentinel's fields", () => {
    const o = JSON.parse(formatAccessJson({ ...entry, error: "UpstreamTimeout" }))
    expect(o).toEqual({
      timestamp: "2000-10-10T13:55:36.123Z",
      trace_id: "2Kj8mNpQ3xR",
      method: "GET",
      path: "/apache_pb.gif",
      query: "a=1&b=2",
      protocol: "HTTP/1.1",
      status: 200,
      body_bytes: 0,
      duration_ms: 12.346,
      client_ip: "127.0.0.1",
      user_agent: "Mozilla/4.08 [en] (Win98; I ;Nav)",
      referer: "http://www.example.com/start.html",
      host: "example.com",
      route_id: "static",
      upstream: "origin",
      upstream_attempts: 1,
      upstream_addr: "10.0.0.5:8080",
      instance_id: "host:1",
      body_bytes_sent: 2326,
      error: "UpstreamTimeout"
    })
    expect(JSON.parse(formatAccessJson({ ...entry, upstream: undefined })).upstream).toBeNull()
    expect("error" in JSON.parse(formatAccessJson(entry))).toBe(false)
  })

  it("audit line", () => {
    const o = JSON.parse(
      formatAudit({
        timestamp: 0,
        trace_id: "t",
        event_type: "agent_decision",
        source: "agent:waf",
        decision: "block",
        status: 403,
        rule_ids: ["942100"],
        tags: ["sqli"],
        reason: "SQL injection",
        client_ip: "1.2.3.4",
        route_id: "api"
      })
    )
    expect(o).toMatchObject({
      timestamp: "1970-01-01T00:00:00.000Z",
      event_type: "agent_decision",
      source: "agent:waf",
      decision: "block",
      status: 403,
      rule_ids: ["942100"],
      tags: ["sqli"],
      reason: "SQL injection",
      client_ip: "1.2.3.4",
      route_id: "api"
    })
  })
})

describe("LogWriter", () => {
  it("appends lines to a real file and flushes", async () => {
    const file = path.join(dir, "access.log")
    const w = makeLogWriter({ name: "access", file })
    for (let i = 0; i < 1000; i++) w.write(`line ${i}`)
    await w.flush()
    expect(lines(file)).toEqual(Array.from({ length: 1000 }, (_, i) => `line ${i}`))
    expect(w.stats()).toEqual({ queued: 0, written: 1000, dropped: 0 })
    await w.close()
  })

  it("a stalled sink: lines beyond the bound are dropped and counted, memory bounded, event loop free", async () => {
    // Invariant: write() never blocks; queued lines never exceed bufferSize; delivered + dropped = written.
    const sink = stalledSink()
    let dropCalls = 0
    const w = makeLogWriter({ name: "access", sink: () => sink.stream, bufferSize: 500, onDrop: (n) => (dropCalls += n) })
    const total = 50_000
    w.write("first")
    // Let the first batch reach the sink so the writer sees back-pressure.
    await new Promise((r) => setImmediate(r))
    const t0 = performance.now()
    for (let i = 1; i < total; i++) w.write(`line ${i} ${"x".repeat(100)}`)
    const elapsed = performance.now() - t0
    expect(elapsed).toBeLessThan(1000)
    // The event loop still turns while the sink is stalled.
    const lag = await new Promise<number>((resolve) => {
      const s = performance.now()
      setTimeout(() => resolve(performance.now() - s), 0)
    })
    expect(lag).toBeLessThan(200)
    expect(w.stats().queued).toBeLessThanOrEqual(500)
    expect(w.stats().dropped).toBeGreaterThanOrEqual(total - 500 - 1)
    expect(dropCalls).toBe(w.stats().dropped)
    sink.resume()
    await w.flush()
    const received = sink.lines()
    expect(received.length + w.stats().dropped).toBe(total)
    expect(received[0]).toBe("first")
    // the oldest lines are kept, in order
    expect(received[1]).toBe(`line 1 ${"x".repeat(100)}`)
    await w.close()
  })

  it("property: every line arrives once, in order, byte-exact (any Unicode, lines larger than a batch, flushes anywhere)", async () => {
    const line = fc.oneof(
      { weight: 8, arbitrary: fc.string({ unit: "binary", maxLength: 200 }) },
      { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 2000 }) },
      { weight: 1, arbitrary: fc.nat({ max: 300_000 }).map((n) => "z".repeat(n)) }
    )
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(line.map((l) => l.replace(/\n/g, " ")), fc.boolean()), { maxLength: 40 }), async (ops) => {
        const chunks: Array<Buffer> = []
        const w = makeLogWriter({
          name: "p",
          sink: () => new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(Buffer.from(c)), cb()) })
        })
        for (const [l, flushNow] of ops) {
          w.write(l)
          if (flushNow) await w.flush()
        }
        await w.close()
        expect(Buffer.concat(chunks).toString("utf8")).toBe(ops.map(([l]) => l + "\n").join(""))
        expect(w.stats()).toEqual({ queued: 0, written: ops.length, dropped: 0 })
      }),
      { numRuns: 60 }
    )
  })

  it("flush interval: small batches wait for it (one write, not one per line); 256 KiB or a flush go out at once", async () => {
    const writes: Array<string> = []
    const sink = () =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          writes.push(chunk.toString())
          cb()
        }
      })
    const turns = async (n: number) => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
    }
    // an interval far longer than the test: only size or an explicit flush can send lines
    const w = makeLogWriter({ name: "access", sink, flushIntervalMs: 600_000 })
    for (let i = 0; i < 10; i++) {
      w.write(`l${i}`)
      await turns(2)
    }
    expect(writes).toEqual([])
    expect(w.stats().queued).toBe(10)
    for (let i = 0; i < 300; i++) w.write("x".repeat(1023))
    await turns(5)
    expect(writes.length).toBeGreaterThanOrEqual(1)
    expect(writes[0].startsWith("l0\nl1\n")).toBe(true)
    w.write("last")
    await w.flush()
    expect(writes.join("").split("\n").filter((l) => l !== "").length).toBe(311)
    expect(w.stats()).toEqual({ queued: 0, written: 311, dropped: 0 })
    await w.close()

    // a short interval sends without any flush, the lines of the interval in one write
    const seen: Array<string> = []
    const w2 = makeLogWriter({
      name: "access",
      sink: () => new Writable({ write: (c: Buffer, _e, cb) => (seen.push(c.toString()), cb()) }),
      flushIntervalMs: 5
    })
    for (let i = 0; i < 5; i++) w2.write(`m${i}`)
    for (let i = 0; i < 500 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5))
    expect(seen).toEqual(["m0\nm1\nm2\nm3\nm4\n"])
    await w2.close()
  })

  it("bounds queued bytes too", async () => {
    const sink = stalledSink()
    const w = makeLogWriter({ name: "x", sink: () => sink.stream, bufferSize: 1_000_000, maxBufferBytes: 10_000 })
    w.write("first")
    await new Promise((r) => setImmediate(r))
    for (let i = 0; i < 1000; i++) w.write("y".repeat(99))
    expect(w.stats().queued).toBe(100)
    expect(w.stats().dropped).toBe(900)
    sink.resume()
    await w.close()
  })

  it("reopen after rename (logrotate): old lines stay in the renamed file, new ones go to a new file, none lost", async () => {
    const file = path.join(dir, "access.log")
    const w = makeLogWriter({ name: "access", file })
    for (let i = 0; i < 100; i++) w.write(`a${i}`)
    await w.flush()
    fs.renameSync(file, `${file}.1`)
    for (let i = 0; i < 100; i++) w.write(`b${i}`) // queued while rotating
    const reopened = w.reopen()
    for (let i = 0; i < 100; i++) w.write(`c${i}`)
    await reopened
    await w.flush()
    const old = lines(`${file}.1`)
    const fresh = lines(file)
    expect(old.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => `a${i}`))
    expect([...old, ...fresh]).toEqual([
      ...Array.from({ length: 100 }, (_, i) => `a${i}`),
      ...Array.from({ length: 100 }, (_, i) => `b${i}`),
      ...Array.from({ length: 100 }, (_, i) => `c${i}`)
    ])
    expect(fresh.at(-1)).toBe("c99")
    expect(w.stats().dropped).toBe(0)
    await w.close()
  })

  it("an unwritable path reports the error, counts drops and never throws; it recovers once the path works", async () => {
    const file = path.join(dir, "missing", "access.log")
    const errors: Array<Error> = []
    let dropped = 0
    const w = makeLogWriter({
      name: "access",
      file,
      retryMs: 20,
      onError: (e) => errors.push(e),
      onDrop: (n) => (dropped += n)
    })
    w.write("lost?")
    for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 5))
    expect(errors.length).toBe(1)
    // several failed retries (every 20 ms) are one outage: still one report
    await new Promise((r) => setTimeout(r, 120))
    expect(errors.length).toBe(1)
    fs.mkdirSync(path.join(dir, "missing"))
    w.write("after")
    for (let i = 0; i < 200 && !lines(file).includes("after"); i++) await new Promise((r) => setTimeout(r, 5))
    expect(lines(file)).toContain("after")
    // (the line is in the file a moment before its write callback counts it)
    await w.flush()
    expect(w.stats().written + dropped).toBe(2)
    await w.close()
  })

  it.effect("as a scoped resource it flushes on scope close; later writes are dropped", () =>
    Effect.gen(function* () {
      const file = path.join(dir, "audit.log")
      const scope = yield* Scope.make()
      const w: LogWriter = yield* makeLogWriterScoped({ name: "audit", file }).pipe(Scope.extend(scope))
      for (let i = 0; i < 10; i++) w.write(`e${i}`)
      yield* Scope.close(scope, Exit.void)
      expect(lines(file)).toHaveLength(10)
      w.write("late")
      expect(w.stats().dropped).toBe(1)
    })
  )
})

describe("application logger", () => {
  it.effect("writes JSON lines and filters below the level before the logger runs", () => {
    const out: Array<string> = []
    const writer: LogWriter = {
      write: (l) => out.push(l),
      flush: async () => {},
      reopen: async () => {},
      close: async () => {},
      stats: () => ({ queued: 0, written: 0, dropped: 0 })
    }
    return Effect.gen(function* () {
      yield* Effect.logDebug("hidden")
      yield* Effect.logInfo("started").pipe(Effect.annotateLogs({ listener: "main" }))
      yield* Effect.logError("boom", new Error("x"))
      expect(out).toHaveLength(2)
      const info = JSON.parse(out[0])
      expect(info).toMatchObject({ level: "info", message: "started", listener: "main" })
      expect(typeof info.timestamp).toBe("string")
      expect(JSON.parse(out[1])).toMatchObject({ level: "error", message: "boom x" })
    }).pipe(Effect.provide(appLoggerLayer({ level: "info", writer })))
  })
})
