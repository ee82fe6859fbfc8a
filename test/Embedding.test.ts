/**
 * The README's "Embedding and extending", each example run for real: the proxy on port 0 in
 * front of a real origin, built from the package's public entry (src/index.ts) as layers.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import { afterEach, describe, expect, it } from "vitest"
import {
  App,
  ConfigSource,
  makeMetrics,
  MetricsService,
  after,
  before,
  replace,
  type RouteExtension,
  Sentinel,
  type SentinelService
} from "../src/index.js"
import { startEchoOrigin, type EchoOrigin } from "./support/origins.js"
import { get, testConfig } from "./support/proxy.js"

const origins: Array<EchoOrigin> = []
afterEach(async () => {
  await Promise.all(origins.splice(0).map((o) => o.close()))
})

const origin = async () => {
  const o = await startEchoOrigin()
  origins.push(o)
  return o
}

const configFor = (o: EchoOrigin, extra: object = {}) =>
  testConfig({
    upstreams: [{ id: "app", targets: [{ address: o.address }] }],
    routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "app" }],
    ...extra
  })

/** A request as a promise. */
const send = (port: number, p: string, headers?: Record<string, string>) => Effect.runPromise(get(port, p, headers))

const portOf = (s: SentinelService) => [...s.addresses.values()][0].port

/** Runs `use` with the proxy of `layer` built, then closes (drains) it. */
const withProxy = <E, A>(
  layer: Layer.Layer<Sentinel, E, never>,
  use: (s: SentinelService) => Promise<A>
): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(layer)
        const s = Context.get(ctx, Sentinel)
        return yield* Effect.promise(() => use(s))
      })
    ) as Effect.Effect<A, E, never>
  )

describe("embedding (README examples)", () => {
  it("starts from a configuration value and drains when its scope closes", async () => {
    const o = await origin()
    const status = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const proxy = yield* App.make(configFor(o))
          return (yield* (get(portOf(proxy), "/hello"))).status
        })
      )
    )
    expect(status).toBe(200)
    expect(o.requests.map((r) => r.url)).toEqual(["/hello"])
  })

  it("starts from a KDL file with ConfigSource.fromFile, and follows it on reload", async () => {
    const o = await origin()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-embed-"))
    const file = path.join(dir, "sentinel.kdl")
    const kdl = (prefix: string) => `
listeners { listener "main" { address "127.0.0.1:0"; protocol "http" } }
upstreams { upstream "app" { target "${o.address}" } }
routes { route "r" { matches { path-prefix "${prefix}" }; upstream "app" } }
`
    fs.writeFileSync(file, kdl("/a/"))
    const layer = App.layer().pipe(
      Layer.provide(App.metricsFromConfig()),
      Layer.provide(ConfigSource.fromFile(file)),
      Layer.provide(Logger.remove(Logger.defaultLogger))
    )
    const [before, after, outcome] = await withProxy(layer, async (s) => {
      const port = portOf(s)
      const b = [(await send(port, "/a/x")).status, (await send(port, "/b/x")).status]
      fs.writeFileSync(file, kdl("/b/"))
      const outcome = await Effect.runPromise(s.config.reload("manual"))
      const a = [(await send(port, "/a/x")).status, (await send(port, "/b/x")).status]
      return [b, a, outcome._tag]
    })
    expect(before).toEqual([200, 404])
    expect(outcome).toBe("Applied")
    expect(after).toEqual([404, 200])
  })

  it("an invalid file fails the layer with ConfigInvalid (file:line:col), binding nothing", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-embed-"))
    const file = path.join(dir, "bad.kdl")
    fs.writeFileSync(file, `listeners { listener "main" { address "127.0.0.1:0"; protocol "gopher" } }\n`)
    const layer = App.layer().pipe(Layer.provide(App.metricsFromConfig()), Layer.provide(ConfigSource.fromFile(file)))
    const exit = await Effect.runPromise(Effect.either(Effect.scoped(Layer.build(layer))))
    expect(exit._tag).toBe("Left")
    const e = (exit as { left: { _tag: string; issues: ReadonlyArray<{ file?: string; line?: number }> } }).left
    expect(e._tag).toBe("ConfigInvalid")
    expect(e.issues.some((i) => i.file === file && (i.line ?? 0) === 1)).toBe(true)
  })

  it("uses the embedder's metrics registry and logger", async () => {
    const o = await origin()
    const metrics = makeMetrics({ defaultMetrics: false })
    const lines: Array<string> = []
    const logger = Logger.make(({ message }) => lines.push(String(message)))
    const layer = App.layer().pipe(
      Layer.provide(Layer.succeed(MetricsService, metrics)),
      Layer.provide(ConfigSource.fromValue(configFor(o))),
      Layer.provide(Logger.replace(Logger.defaultLogger, logger))
    )
    await withProxy(layer, async (s) => {
      expect((await send(portOf(s), "/x")).status).toBe(200)
    })
    const text = await metrics.registry.metrics()
    expect(text).toMatch(/sentinel_requests_total\{[^}]*route="all"[^}]*\} 1/)
    expect(lines).toContain("sentinel started")
  })

  it("puts stages before and after a built-in phase: a filter that answers runs between them", async () => {
    const o = await origin()
    const order: Array<string> = []
    const recorder = (name: string): RouteExtension => ({
      name,
      compile: () => ({
        request: [
          (ctx) => {
            order.push(`${name}:${ctx.routeId}`)
            return undefined
          }
        ]
      })
    })
    // the route's only filter redirects: what runs after the filters never sees the request
    const config = configFor(o, {
      filters: [{ id: "to-https", type: "redirect", scheme: "https" }],
      routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "app", filters: ["to-https"] }]
    })
    const status = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const proxy = yield* App.make(config, { phases: [before("filters", recorder("first")), after("filters", recorder("last"))] })
          return (yield* get(portOf(proxy), "/x")).status
        })
      )
    )
    expect(status).toBe(302)
    expect(order).toEqual(["first:all"])
    expect(o.requests).toEqual([])
  })

  it("replaces the agents phase with the embedder's own authentication: no agent is called", async () => {
    const o = await origin()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-embed-"))
    // an agent that does not exist: with the agents phase in place, fail-closed answers 503
    const config = configFor(o, {
      agents: [{ id: "auth", socketPath: path.join(dir, "missing.sock"), failureMode: "closed", timeoutMs: 200 }],
      filters: [{ id: "auth", type: "agent", agent: "auth" }],
      routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "app", filters: ["auth"] }]
    })
    const bearer: RouteExtension = {
      name: "bearer",
      compile: () => ({
        request: [
          (ctx) =>
            ctx.req.headers.authorization === "Bearer let-me-in"
              ? undefined
              : { status: 401, headers: ["www-authenticate", "Bearer"], body: '{"error":"401 Unauthorized"}', reason: "bearer-missing" }
        ]
      })
    }
    const statuses = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const proxy = yield* App.make(config, { phases: [replace("agents", bearer)] })
          const port = portOf(proxy)
          const without = yield* (get(port, "/x"))
          const withToken = yield* (get(port, "/x", { authorization: "Bearer let-me-in" }))
          return [without.status, without.headers["www-authenticate"], withToken.status]
        })
      )
    )
    expect(statuses).toEqual([401, "Bearer", 200])
    expect(o.requests.length).toBe(1)
    // and without the replacement the same configuration fails closed (the agent is really on the path)
    const closed = await Effect.runPromise(
      Effect.scoped(Effect.flatMap(App.make(config), (proxy) => get(portOf(proxy), "/x")))
    )
    expect(closed.status).toBe(503)
  })

  it("runs a stage written as an Effect that requires a service the embedder provides", async () => {
    const o = await origin()
    class Allowlist extends Context.Tag("test/Allowlist")<Allowlist, { readonly allows: (ip: string) => Effect.Effect<boolean> }>() {}
    const lookups: Array<string> = []
    const AllowlistLive = Layer.succeed(Allowlist, {
      allows: (ip) =>
        Effect.sync(() => {
          lookups.push(ip)
          return ip === "127.0.0.1"
        })
    })
    const denyOthers: RouteExtension<Allowlist> = {
      name: "allowlist",
      compile: () => ({
        request: [
          (ctx) =>
            Effect.gen(function* () {
              const list = yield* Allowlist
              const ok = yield* list.allows(ctx.clientIp)
              return ok ? undefined : { status: 403, headers: [], body: "", reason: "not-allowlisted" }
            })
        ]
      })
    }
    const layer: Layer.Layer<Sentinel, unknown, never> = App.layer({ extensions: [denyOthers] }).pipe(
      Layer.provide(AllowlistLive),
      Layer.provide(App.metricsFromConfig()),
      Layer.provide(ConfigSource.fromValue(configFor(o)))
    )
    const status = await withProxy(layer, async (s) => (await send(portOf(s), "/x")).status)
    expect(status).toBe(200)
    expect(lookups).toEqual(["127.0.0.1"])
  })

  it("refuses a phase edit that names no phase", async () => {
    const o = await origin()
    const ext: RouteExtension = { name: "x", compile: () => undefined }
    const exit = await Effect.runPromiseExit(
      Effect.scoped(App.make(configFor(o), { phases: [{ at: "before", phase: "no-such-phase" as never, extension: ext }] }))
    )
    expect(exit._tag).toBe("Failure")
    expect(JSON.stringify(exit)).toContain('unknown phase \\"no-such-phase\\"')
  })

  it("importing the public entry (and Program) starts nothing: no command line, no socket, no timer", () => {
    // the child printing only its own line and exiting by itself is the proof
    const root = path.resolve(__dirname, "..")
    const out = execFileSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const m = await import("sentinel-proxy"); await import("./dist/Program.js");
         const handles = process.getActiveResourcesInfo().filter((r) => /TCP|UDP|Timeout|Immediate|Signal|Process/.test(r));
         console.log(JSON.stringify({ exports: ["App", "ConfigSource", "Sentinel", "before", "replace"].every((k) => k in m), handles }))`
      ],
      { cwd: root, encoding: "utf8", timeout: 20_000, env: { ...process.env, SENTINEL_NO_RESPAWN: "1" } }
    )
    expect(JSON.parse(out.trim())).toEqual({ exports: true, handles: [] })
  })
})
