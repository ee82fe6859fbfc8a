/**
 * Start the proxy in-process for a test: from a config value, on port 0,
 * inside a scope the test closes. `fetchVia` sends real HTTP through it.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Scope from "effect/Scope"
import * as App from "../../src/App.js"
import { makeConfig, type SentinelConfig, type SentinelConfigInput } from "../../src/config/Schema.js"

export type ProxyHandle = Effect.Effect.Success<ReturnType<typeof App.make>> & { readonly port: number; readonly url: string }

/** A config with one listener on 127.0.0.1:0 and access log off unless asked for. */
export const testConfig = (input: Partial<SentinelConfigInput>): SentinelConfig =>
  makeConfig({
    listeners: [{ id: "main", address: "127.0.0.1:0" }],
    observability: { logging: { accessLog: { enabled: false } } },
    ...input
  } as SentinelConfigInput)

/** A catch-all route `r` to `upstream`, plus `extra` fields (retryPolicy, filters, ...). */
export const catchAllRoute = (upstream: string, extra: object = {}) => ({
  id: "r",
  matches: [{ _tag: "PathPrefix" as const, prefix: "/" }],
  upstream,
  ...extra
})

/** Sum of a metric's series whose labels include `labels`; 0 when it has none. */
export const metricSum = async (proxy: ProxyHandle, name: string, labels: Record<string, string> = {}): Promise<number> => {
  const m = await proxy.metrics.registry.getSingleMetric(name)?.get()
  if (m === undefined) return 0
  return m.values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((s, v) => s + v.value, 0)
}

/** Polls `check` on the event loop until it holds (bounded); succeeds with whether it did. */
export const eventually = (check: () => Promise<boolean> | boolean, within = 5000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + within
    while (Date.now() < deadline) {
      if (await check()) return true
      await new Promise((r) => setTimeout(r, 20))
    }
    return await check()
  })

export const startProxy = (config: SentinelConfig, options?: App.SentinelOptions): Effect.Effect<ProxyHandle, never, Scope.Scope> =>
  App.make(config, options).pipe(
    Effect.orDie,
    Effect.map((s) => {
      const port = [...s.addresses.values()][0].port
      return Object.assign(s, { port, url: `http://127.0.0.1:${port}` })
    }),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )

export interface Reply {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly rawHeaders: Array<string>
  readonly body: Buffer
}

/** One request over a fresh connection (no agent pooling: tests stay independent). */
export const request = (
  port: number,
  options: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders | Array<string>; body?: Buffer | string | AsyncIterable<Buffer> } = {}
): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      method: options.method ?? "GET",
      path: options.path ?? "/",
      headers: options.headers as http.OutgoingHttpHeaders,
      agent: false
    })
    req.on("response", (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }))
      res.on("error", reject)
    })
    req.on("error", reject)
    const body = options.body
    if (body === undefined) req.end()
    else if (typeof body === "string" || Buffer.isBuffer(body)) req.end(body)
    else {
      ;(async () => {
        for await (const chunk of body) {
          if (!req.write(chunk)) await new Promise((r) => req.once("drain", r))
        }
        req.end()
      })().catch(reject)
    }
  })

export const get = (port: number, path: string, headers?: http.OutgoingHttpHeaders) =>
  Effect.promise(() => request(port, { path, headers }))

/** Polls `cond` every 10 ms until it holds; fails with `what` after `timeoutMs` (bounded, no fixed sleeps). */
export const waitUntil = async (cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** The JSON lines of a log file written so far (none when it does not exist yet). */
export const jsonLines = <A = Record<string, unknown>>(file: string): Array<A> =>
  fs.existsSync(file) ? fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as A) : []

/** The proxy started in a scope of its own; `close` drains and stops it. */
export const openProxy = async (config: SentinelConfig): Promise<{ readonly proxy: ProxyHandle; readonly close: () => Promise<void> }> => {
  const scope = Effect.runSync(Scope.make())
  const proxy = await Effect.runPromise(startProxy(config).pipe(Scope.extend(scope)))
  return { proxy, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** `observability` writing the access log to `file`, each line at once (tests read it back). */
export const accessLogTo = (file: string) => ({ logging: { accessLog: { enabled: true, file, flushIntervalMs: 0 } } }) as never
