/**
 * What the serving process loads (issue 18, memory): the built `sentinel run` with a probe
 * preloaded (`--import`) that lists the CommonJS modules on SIGUSR2. The parts of a library
 * an idle proxy does not use stay unloaded: undici's index (fetch, WebSocket, mocks, cache
 * stores: about 8 MiB resident), ioredis and the gRPC stack (LazyModule.ts). The undici
 * entry points the proxy requires one by one are the very objects undici's index exports.
 */
import { createRequire } from "node:module"
import * as http from "node:http"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import * as Undici from "../../src/upstream/Undici.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request } from "../support/proxy.js"
import { listenerPort, startSentinel, tempDir, type SentinelProcess } from "./sentinelProcess.js"

const require = createRequire(import.meta.url)

const PROBE = `import { createRequire } from "node:module"
import { writeFileSync } from "node:fs"
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

  it("a proxy that served requests and runs HTTP health checks has not loaded undici's index, ioredis or @grpc", async () => {
    origin = await startEchoOrigin()
    const dir = tempDir()
    const probe = join(dir, "probe.mjs")
    writeFileSync(probe, PROBE)
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
      FOOTPRINT_OUT: out
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
    expect(loaded(/node_modules\/(ioredis|@grpc)\//)).toEqual([])
  })
})
