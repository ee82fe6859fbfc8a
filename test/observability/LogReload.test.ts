/**
 * Reloading `observability { logging }` on a running proxy (nginx-like): the
 * access, audit and error logs are switched on/off, moved and reformatted by
 * a reload, without losing or duplicating a line; a log file that cannot be
 * opened refuses the reload and the running configuration keeps logging.
 *
 * Real proxy in-process on port 0, real echo origin, real files in a temp dir.
 * Every request has a unique path, so lines are counted per request.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { restartOnlyChanges } from "../../src/config/Reload.js"
import type { SentinelConfig, SentinelConfigInput } from "../../src/config/Schema.js"
import { makeLogSlot } from "../../src/observability/LogSlot.js"
import { appLoggerLayer, makeErrorLog, type ErrorLogSettings } from "../../src/observability/Logs.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"
import { MAIN, startSentinel, type SentinelProcess } from "../ops/sentinelProcess.js"

let dir: string
const cleanups: Array<() => Promise<void>> = []
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-logreload-"))
})
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
  fs.rmSync(dir, { recursive: true, force: true })
})

const lines = (file: string): Array<string> =>
  fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : []

/** Polls `cond` until true or the bound expires (no sleep stands in for an event). */
const eventually = async (cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** The request path of an access line, JSON or combined. */
const pathOf = (line: string): string =>
  line.startsWith("{") ? (JSON.parse(line) as { path: string }).path : (/"GET (\S+) HTTP/.exec(line)?.[1] ?? "?")

const counts = (...files: Array<string>): Map<string, number> => {
  const m = new Map<string, number>()
  for (const f of files) for (const l of lines(f)) m.set(pathOf(l), (m.get(pathOf(l)) ?? 0) + 1)
  return m
}

interface Env {
  readonly origin: EchoOrigin
  readonly proxy: ProxyHandle
  readonly config: (logging: Record<string, unknown>, extra?: Partial<SentinelConfigInput>) => SentinelConfig
  readonly reload: (c: SentinelConfig) => Promise<Either.Either<unknown, { _tag: string; file?: string; log?: string }>>
  readonly get: (p: string) => Promise<number>
}

const start = async (
  logging: Record<string, unknown>,
  extra: (dir: string) => Partial<SentinelConfigInput> = () => ({})
): Promise<Env> => {
  const origin = await startEchoOrigin("origin")
  cleanups.push(() => origin.close())
  const config = (l: Record<string, unknown>, more: Partial<SentinelConfigInput> = {}) =>
    testConfig({
      upstreams: [{ id: "origin", targets: [{ address: origin.address }] }],
      routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "origin" }],
      ...extra(dir),
      ...more,
      observability: { logging: l }
    } as Partial<SentinelConfigInput>)
  const scope = Effect.runSync(Scope.make())
  const proxy = await Effect.runPromise(Scope.extend(startProxy(config(logging)), scope))
  cleanups.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
  return {
    origin,
    proxy,
    config,
    reload: (c) => Effect.runPromise(Effect.either(proxy.reload(c))) as never,
    get: async (p) => (await request(proxy.port, { path: p })).status
  }
}

/** `n` requests with paths `${prefix}${i}`, `concurrency` at a time; resolves when all answered. */
const burst = async (env: Env, prefix: string, n: number, concurrency = 4, onDone?: (done: number) => void) => {
  let next = 0
  let done = 0
  const statuses: Array<number> = []
  const worker = async () => {
    while (next < n) {
      const i = next++
      statuses.push(await env.get(`${prefix}${i}`))
      onDone?.(++done)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return statuses
}

const dropped = async (env: Env, log: string): Promise<number> => {
  const text = await env.proxy.metrics.registry.metrics()
  const line = text.split("\n").find((l) => l.startsWith(`sentinel_log_dropped_total{log="${log}"}`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1))
}

/** Paths of the files this process holds open (Linux), to see that a replaced sink was closed. */
const openFiles = (): Array<string> => {
  if (!fs.existsSync("/proc/self/fd")) return []
  const out: Array<string> = []
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      out.push(fs.readlinkSync(`/proc/self/fd/${fd}`))
    } catch {
      /* closed meanwhile */
    }
  }
  return out
}

describe("access log reload", () => {
  it("moved from file A to B under traffic: before -> A, after -> B, every line exactly once, A closed", async () => {
    const a = path.join(dir, "a.log")
    const b = path.join(dir, "b.log")
    const env = await start({ accessLog: { file: a } })

    expect(await burst(env, "/before/", 20)).toEqual(Array(20).fill(200))
    await eventually(() => lines(a).length === 20, "20 lines in A")

    // Reload while requests are in flight: they may land in either file, once.
    let reloading: Promise<Either.Either<unknown, unknown>> | undefined
    const during = burst(env, "/during/", 60, 6, (done) => {
      if (done === 20) reloading = env.reload(env.config({ accessLog: { file: b } }))
    })
    expect(await during).toEqual(Array(60).fill(200))
    expect(Either.isRight((await reloading)!)).toBe(true)

    expect(await burst(env, "/after/", 20)).toEqual(Array(20).fill(200))
    await eventually(() => lines(a).length + lines(b).length === 100, "100 lines in A and B")

    const inA = counts(a)
    const inB = counts(b)
    const all = counts(a, b)
    expect(all.size).toBe(100)
    expect([...all.values()].every((n) => n === 1)).toBe(true)
    for (let i = 0; i < 20; i++) {
      expect(inA.get(`/before/${i}`)).toBe(1)
      expect(inB.get(`/after/${i}`)).toBe(1)
    }
    expect([...inA.keys()].some((p) => p.startsWith("/after/"))).toBe(false)
    expect([...inB.keys()].some((p) => p.startsWith("/before/"))).toBe(false)
    expect(await dropped(env, "access")).toBe(0)
    // The old sink was flushed, then closed; the new one is open.
    if (fs.existsSync("/proc/self/fd")) {
      await eventually(() => !openFiles().includes(a), "A closed")
      expect(openFiles()).toContain(b)
    }
  })

  it("disabled then re-enabled by reloads; to stdout and back", async () => {
    const a = path.join(dir, "a.log")
    const env = await start({ accessLog: { file: a } })
    await env.get("/on/1")
    await eventually(() => lines(a).length === 1, "first line")

    expect(Either.isRight(await env.reload(env.config({ accessLog: { enabled: false } })))).toBe(true)
    await burst(env, "/off/", 5)
    expect(Either.isRight(await env.reload(env.config({ accessLog: { enabled: true, file: a } })))).toBe(true)
    await env.get("/on/2")
    await eventually(() => lines(a).length === 2, "second line")
    expect([...counts(a).keys()]).toEqual(["/on/1", "/on/2"])

    // Moved to stdout ("-") and back: the file gets nothing meanwhile.
    expect(Either.isRight(await env.reload(env.config({ accessLog: { file: "-" } })))).toBe(true)
    expect(Either.isRight(await env.reload(env.config({ accessLog: { file: a } })))).toBe(true)
    await env.get("/on/3")
    await eventually(() => lines(a).length === 3, "third line")
    expect([...counts(a).keys()]).toEqual(["/on/1", "/on/2", "/on/3"])
  })

  it("format json -> combined on the same file, without reopening it", async () => {
    const a = path.join(dir, "a.log")
    const env = await start({ accessLog: { file: a, format: "json" } })
    await env.get("/fmt/json")
    await eventually(() => lines(a).length === 1, "json line")
    expect(Either.isRight(await env.reload(env.config({ accessLog: { file: a, format: "combined" } })))).toBe(true)
    await env.get("/fmt/combined")
    await eventually(() => lines(a).length === 2, "combined line")
    const [first, second] = lines(a)
    expect(JSON.parse(first)).toMatchObject({ path: "/fmt/json", status: 200 })
    expect(second).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/fmt\/combined HTTP\/1\.1" 200 \d+ "-" "-" \S+ \d+$/)
  })
})

describe("audit log reload", () => {
  it("moves the audit log: a fail-open decision before the reload goes to A, after it to B", async () => {
    const a = path.join(dir, "audit-a.log")
    const b = path.join(dir, "audit-b.log")
    // An agent that is not there and a fail-open filter: every request is an audited fail-open.
    const agents = (d: string): Partial<SentinelConfigInput> =>
      ({
        agents: [{ id: "gone", socketPath: path.join(d, "gone.sock"), timeoutMs: 200, reconnectBaseMs: 20, reconnectMaxMs: 100 }],
        filters: [{ id: "open", type: "agent", agent: "gone", failureMode: "open" }],
        routes: [{ id: "open", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "origin", filters: ["open"] }]
      }) as Partial<SentinelConfigInput>
    const env = await start({ accessLog: { enabled: false }, auditLog: { file: a } }, agents)
    const audit = (f: string) => lines(f).map((l) => JSON.parse(l) as { path: string; decision: string })

    expect(await env.get("/audit/1")).toBe(200)
    await eventually(() => audit(a).some((l) => l.path === "/audit/1"), "audit line in A")
    expect(Either.isRight(await env.reload(env.config({ accessLog: { enabled: false }, auditLog: { file: b } })))).toBe(true)
    expect(await env.get("/audit/2")).toBe(200)
    await eventually(() => audit(b).some((l) => l.path === "/audit/2"), "audit line in B")
    expect(audit(a).map((l) => [l.path, l.decision])).toEqual([["/audit/1", "fail-open"]])
    expect(audit(b).map((l) => [l.path, l.decision])).toEqual([["/audit/2", "fail-open"]])

    // log-agent-decisions #false applies too: fail-open passes are no longer audited.
    const quiet = env.config({ accessLog: { enabled: false }, auditLog: { file: b, logAgentDecisions: false } })
    expect(Either.isRight(await env.reload(quiet))).toBe(true)
    expect(await env.get("/audit/3")).toBe(200)
    expect(await env.get("/audit/4")).toBe(200)
    expect(Either.isRight(await env.reload(env.config({ accessLog: { enabled: false }, auditLog: { file: b } })))).toBe(true)
    expect(await env.get("/audit/5")).toBe(200)
    await eventually(() => audit(b).some((l) => l.path === "/audit/5"), "audit line 5 in B")
    expect(audit(b).map((l) => l.path)).toEqual(["/audit/2", "/audit/5"])
  })
})

describe("a log that cannot be opened refuses the reload (as nginx -s reload does)", () => {
  it("access log in a missing directory: LogOpenFailed, the running configuration and sink stay", async () => {
    const a = path.join(dir, "a.log")
    const env = await start({ accessLog: { file: a } })
    const before = env.proxy.dataplane()
    const missing = path.join(dir, "no-such-dir", "access.log")
    // The rejected config also moves the route: none of it may apply.
    const next = env.config(
      { accessLog: { file: missing } },
      { routes: [{ id: "moved", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "origin" }] as never }
    )
    const result = await env.reload(next)
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(result.left).toMatchObject({ _tag: "LogOpenFailed", log: "access", file: missing })
    expect(env.proxy.dataplane()).toBe(before)
    expect(env.proxy.dataplane().config.routes.map((r) => r.id)).toEqual(["all"])
    await env.get("/still/1")
    await eventually(() => lines(a).length === 1, "line in the old file")
    expect(fs.existsSync(path.dirname(missing))).toBe(false)
  })

  it("audit log unwritable while the access log moves: neither changes (the opened access file is discarded)", async () => {
    const a = path.join(dir, "a.log")
    const b = path.join(dir, "b.log")
    const env = await start({ accessLog: { file: a }, auditLog: { enabled: false } })
    const result = await env.reload(env.config({ accessLog: { file: b }, auditLog: { file: dir } })) // a directory
    expect(Either.isLeft(result)).toBe(true)
    if (Either.isLeft(result)) expect(result.left).toMatchObject({ _tag: "LogOpenFailed", log: "audit", file: dir })
    await burst(env, "/kept/", 5)
    await eventually(() => lines(a).length === 5, "lines in A")
    expect(lines(b)).toEqual([])
    if (fs.existsSync("/proc/self/fd")) await eventually(() => !openFiles().includes(b), "B closed")
  })
})

describe("restart-only settings", () => {
  it("a logging change is no longer reported as needing a restart; tracing still is", () => {
    const base = testConfig({})
    const logging = testConfig({
      observability: {
        logging: { level: "debug", accessLog: { file: "/tmp/x.log", format: "combined" }, errorLog: { level: "info" }, auditLog: { enabled: false } }
      }
    } as Partial<SentinelConfigInput>)
    expect(restartOnlyChanges(base, logging)).toEqual([])
    const traced = testConfig({ observability: { tracing: { endpoint: "http://127.0.0.1:4318" } } } as Partial<SentinelConfigInput>)
    expect(restartOnlyChanges(base, traced)).toEqual(["observability.tracing"])
  })
})

describe("error log reload", () => {
  const settings = (file: string | undefined, level: ErrorLogSettings["level"]): ErrorLogSettings => ({ file, level, bufferSize: 100 })

  it("file and level switch together; lines queued before go to the old file, once", async () => {
    const a = path.join(dir, "error-a.log")
    const b = path.join(dir, "error-b.log")
    const errorLog = makeErrorLog(settings(a, "warn"))
    cleanups.push(() => errorLog.close())
    const runtime = await Effect.runPromise(Effect.scoped(Layer.toRuntime(appLoggerLayer({ errorLog }))))
    const run = Runtime.runSync(runtime)

    run(Effect.logInfo("info-1"))
    run(Effect.logWarning("warn-1"))
    const swap = errorLog.prepare(settings(b, "info"))
    if (Either.isLeft(swap)) throw swap.left
    // queued, not yet written when the swap happens: still flushed to A
    swap.right.commit()
    run(Effect.logDebug("debug-2"))
    run(Effect.logInfo("info-2"))
    await errorLog.writer.flush()
    await eventually(() => lines(a).length === 1 && lines(b).length === 1, "lines in A and B")
    const msg = (f: string) => lines(f).map((l) => (JSON.parse(l) as { message: string }).message)
    expect(msg(a)).toEqual(["warn-1"])
    expect(msg(b)).toEqual(["info-2"])

    // Unwritable: refused, the error log in force unchanged.
    const bad = errorLog.prepare(settings(path.join(dir, "nope", "e.log"), "debug"))
    expect(Either.isLeft(bad)).toBe(true)
    run(Effect.logDebug("debug-3"))
    run(Effect.logInfo("info-3"))
    await errorLog.writer.flush()
    await eventually(() => lines(b).length === 2, "second line in B")
    expect(msg(b)).toEqual(["info-2", "info-3"])
  })

  it("a slot keeps its writer when only other settings change, and an aborted swap writes nothing", async () => {
    const a = path.join(dir, "slot-a.log")
    const b = path.join(dir, "slot-b.log")
    const slot = makeLogSlot({ name: "access" }, { file: a, bufferSize: 10 })
    cleanups.push(() => slot.close())
    const first = slot.current
    const same = slot.prepare({ file: a, bufferSize: 10 })
    if (Either.isLeft(same)) throw same.left
    same.right.commit()
    expect(slot.current).toBe(first)
    const aborted = slot.prepare({ file: b, bufferSize: 10 })
    if (Either.isLeft(aborted)) throw aborted.left
    aborted.right.abort()
    aborted.right.commit() // a settled swap does nothing
    expect(slot.current).toBe(first)
    slot.current!.write("x")
    await slot.current!.flush()
    await slot.retired()
    expect(lines(a)).toEqual(["x"])
    expect(lines(b)).toEqual([])
  })
})

// The whole program: SIGHUP moves the error log and changes its level (needs `npm run build`).
describe.runIf(fs.existsSync(MAIN))("error log reload through SIGHUP (built binary)", { timeout: 60_000 }, () => {
  it("moves the error log and changes its level; a log it cannot open fails the reload", async () => {
    const origin = await startEchoOrigin("origin")
    cleanups.push(() => origin.close())
    const a = path.join(dir, "error-a.log")
    const b = path.join(dir, "error-b.log")
    const file = path.join(dir, "sentinel.kdl")
    const kdl = (errorLog: string, level: string) => `
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${origin.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false }; error-log { file "${errorLog}"; level "${level}" } } }
`
    const has = (f: string, text: string) => lines(f).filter((l) => l.includes(text)).length
    fs.writeFileSync(file, kdl(a, "info"))
    const p: SentinelProcess = startSentinel(["run", "-c", file])
    cleanups.push(() => p.stop())
    await eventually(() => has(a, '"sentinel started"') === 1, "start-up line in A", 40_000)

    // To B at "warn": the reload's own info lines are filtered out.
    fs.writeFileSync(file, kdl(b, "warn"))
    p.child.kill("SIGHUP")
    // B is created when the reload opens it, after the file was read: the next edit is safe.
    await eventually(() => fs.existsSync(b), "B opened", 20_000)
    // A log it cannot open: the reload fails, logged (error) in B.
    fs.writeFileSync(file, kdl(path.join(dir, "missing", "e.log"), "info"))
    p.child.kill("SIGHUP")
    await eventually(() => has(b, "configuration reload failed") === 1, "reload failure in B", 20_000)
    expect(lines(b).find((l) => l.includes("configuration reload failed"))).toMatch(/error log cannot be opened: [^"]*missing/)
    // Back to "info" in B: now the reload's info line is written.
    fs.writeFileSync(file, kdl(b, "info"))
    p.child.kill("SIGHUP")
    await eventually(() => has(b, '"configuration reloaded"') === 1, "reload line in B", 20_000)

    expect(has(a, "configuration")).toBe(0)
    expect(lines(b).map((l) => (JSON.parse(l) as { message: string }).message.split(";")[0])).toEqual([
      "configuration reload failed",
      "configuration applied",
      "configuration reloaded"
    ])
    expect(has(b, "take effect after a restart")).toBe(0)
  })
})
