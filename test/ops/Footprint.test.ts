/**
 * What the serving process loads (issue 18, memory): the built `sentinel run` with a probe
 * preloaded (`--import`) that records every ES module resolved (a resolve hook) and lists the
 * CommonJS modules on SIGUSR2. The parts of a library an idle proxy does not use stay
 * unloaded: undici's index (fetch, WebSocket, mocks, cache stores: about 8 MiB resident),
 * ioredis and the gRPC stack, mime-types and http-cache-semantics (LazyModule.ts), effect's Stream machinery (config/Current.ts,
 * about 2 MiB of heap). Our code and effect run from the bundle (scripts/bundle.mjs), whose
 * dist/bundle/inputs.json says which sources each loaded chunk holds. The undici entry points the proxy requires one by one are the very
 * objects undici's index exports.
 */
import { createRequire } from "node:module"
import * as http from "node:http"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { afterEach, describe, expect, it } from "vitest"
import * as Undici from "../../src/upstream/Undici.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request } from "../support/proxy.js"
import { listenerPort, startSentinel, tempDir, type SentinelProcess } from "./sentinelProcess.js"

const require = createRequire(import.meta.url)
const DIST = join(__dirname, "../../dist")

const HOOKS = `import { appendFileSync } from "node:fs"
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context)
  appendFileSync(process.env.FOOTPRINT_ESM, resolved.url + "\\n")
  return resolved
}
`
const PROBE = `import { createRequire, register } from "node:module"
import { writeFileSync } from "node:fs"
register(new URL("./hooks.mjs", import.meta.url))
const require = createRequire(import.meta.url)
process.on("SIGUSR2", () => {
  writeFileSync(process.env.FOOTPRINT_OUT, JSON.stringify(Object.keys(require.cache)))
  process.stderr.write("footprint written\\n")
})
`

describe("start footprint", () => {
  let proc: SentinelProcess | undefined
  let origin: EchoOrigin | undefined
  afterEach(async () => {
    await proc?.stop()
    await origin?.close()
  })

  it("Undici.ts exports undici's own Client, Pool and Agent, and its request works against a real server", async () => {
    const index = require("undici") as typeof import("undici")
    expect(Undici.Client).toBe(index.Client)
    expect(Undici.Pool).toBe(index.Pool)
    expect(Undici.Agent).toBe(index.Agent)
    const seen: Array<string> = []
    const server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers["x-probe"]}`)
      res.writeHead(204).end()
    })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const agent = new Undici.Agent({ connections: 1 })
    try {
      const { port } = server.address() as { port: number }
      const res = await Undici.request(`http://127.0.0.1:${port}/health?deep=1`, { dispatcher: agent, method: "GET", headers: { "x-probe": "yes" } })
      await res.body.dump()
      expect(res.statusCode).toBe(204)
      expect(seen).toEqual(["GET /health?deep=1 yes"])
    } finally {
      await agent.destroy()
      await new Promise((r) => server.close(r))
    }
  })

  it("a proxy that served requests and runs HTTP health checks has not loaded undici's index, ioredis, @grpc, mime-types, http-cache-semantics or effect's Stream", async () => {
    origin = await startEchoOrigin()
    const dir = tempDir()
    const probe = join(dir, "probe.mjs")
    writeFileSync(probe, PROBE)
    writeFileSync(join(dir, "hooks.mjs"), HOOKS)
    const config = join(dir, "sentinel.kdl")
    writeFileSync(
      config,
      `listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "origin" {
  target "127.0.0.1:${origin.port}"
  health-check { type "http" { path "/healthz" }; interval-secs 0.05; timeout-secs 2 }
} }
routes { route "all" { matches { path-prefix "/" }; upstream "origin" } }
`
    )
    const out = join(dir, "modules.json")
    proc = startSentinel(["run", "-c", config], {
      SENTINEL_NO_RESPAWN: "1",
      NODE_OPTIONS: `--import ${probe}`,
      FOOTPRINT_OUT: out,
      FOOTPRINT_ESM: join(dir, "esm.txt")
    })
    const port = await listenerPort(proc)
    const reply = await request(port, { path: "/through" })
    expect(reply.status).toBe(200)
    await origin.arrived("/healthz")
    proc.child.kill("SIGUSR2")
    await proc.waitFor(/footprint written/)
    const modules = JSON.parse(readFileSync(out, "utf8")) as Array<string>
    const loaded = (re: RegExp) => modules.filter((m) => re.test(m))
    expect(loaded(/node_modules\/undici\/lib\/dispatcher\/pool\.js$/)).toHaveLength(1)
    expect(loaded(/node_modules\/undici\/lib\/api\/api-request\.js$/)).toHaveLength(1)
    expect(loaded(/node_modules\/undici\/index\.js$/)).toEqual([])
    expect(loaded(/node_modules\/undici\/lib\/web\//)).toEqual([])
    expect(loaded(/node_modules\/(ioredis|@grpc|mime-types|mime-db|http-cache-semantics)\//)).toEqual([])
    // the service runs from the bundle (scripts/bundle.mjs): no tsc module of ours but the stub
    // dist/main.js, no effect module file; the bundle's chunks loaded hold effect, not its Stream
    const esm = readFileSync(join(dir, "esm.txt"), "utf8").split("\n").filter((u) => u !== "")
    const ours = esm.filter((u) => u.startsWith(pathToFileURL(DIST).href))
    expect(ours.filter((u) => !u.startsWith(pathToFileURL(join(DIST, "bundle")).href))).toEqual([pathToFileURL(join(DIST, "main.js")).href])
    expect(esm.filter((u) => u.includes("/node_modules/effect/"))).toEqual([])
    const chunks = JSON.parse(readFileSync(join(DIST, "bundle", "inputs.json"), "utf8")) as Record<string, Array<string>>
    const bundled = ours
      .filter((u) => u.startsWith(pathToFileURL(join(DIST, "bundle")).href))
      .flatMap((u) => chunks[fileURLToPath(u).slice(join(DIST, "bundle").length + 1)] ?? [`unknown chunk ${u}`])
    expect(bundled).toContain("src/Program.ts")
    expect(bundled).toContain("node_modules/effect/dist/esm/Effect.js")
    expect(bundled.filter((i) => /\/effect\/dist\/esm\/(Stream|SubscriptionRef|PubSub)\.js$/.test(i))).toEqual([])
  })
})
