/**
 * The bundled service (scripts/bundle.mjs, issue 18's memory): `dist/main.js` runs
 * dist/bundle/main.js, and that alone is the service. Each test runs it from a scratch copy of
 * the package holding only package.json, proto/, dist/main.js and dist/bundle/ (node_modules
 * linked): without the tsc modules beside it, anything the bundle still needed from them, or
 * a path resolved relative to a module's old place (package.json for the version, proto/ for
 * gRPC agents), fails here. The re-exec with the V8 flags and the cluster's workers run it too.
 */
import { spawnSync } from "node:child_process"
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { spawnGrpcRawAgent, stopAllGrpcAgents } from "../agents/grpcAgentHarness.js"
import { startEchoOrigin } from "../support/origins.js"
import { request } from "../support/proxy.js"
import { listenerPort, startCommand, tempDir } from "./sentinelProcess.js"

const ROOT = join(__dirname, "../..")
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version

/** package.json, proto/, dist/main.js and dist/bundle/ in a fresh directory; node_modules linked. */
const bundleOnlyPackage = (withBundle = true): string => {
  const dir = tempDir()
  cpSync(join(ROOT, "package.json"), join(dir, "package.json"))
  cpSync(join(ROOT, "proto"), join(dir, "proto"), { recursive: true })
  mkdirSync(join(dir, "dist"))
  cpSync(join(ROOT, "dist", "main.js"), join(dir, "dist", "main.js"))
  if (withBundle) cpSync(join(ROOT, "dist", "bundle"), join(dir, "dist", "bundle"), { recursive: true })
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir")
  return dir
}

const childrenOf = (pid: number): Array<number> =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)
const cmdline = (pid: number): Array<string> => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
  await stopAllGrpcAgents()
})

const scratch = (withBundle = true): string => {
  const dir = bundleOnlyPackage(withBundle)
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

describe("the bundled service", { timeout: 60_000 }, () => {
  it("`--version` reads package.json from the bundle, as the tsc modules do", () => {
    const dir = scratch()
    const bundled = spawnSync(process.execPath, [join(dir, "dist", "main.js"), "--version"], { encoding: "utf8", timeout: 20_000 })
    expect(bundled.stderr).toBe("")
    expect(bundled.status).toBe(0)
    expect(bundled.stdout).toBe(`sentinel ${VERSION} (node ${process.version})\n`)
    const modules = spawnSync(process.execPath, [join(ROOT, "dist", "Launch.js"), "--version"], { encoding: "utf8", timeout: 20_000 })
    expect(modules.stdout).toBe(bundled.stdout)
  })

  it("without dist/bundle/, dist/main.js says to build and exits 2", () => {
    const dir = scratch(false)
    const r = spawnSync(process.execPath, [join(dir, "dist", "main.js"), "--version"], { encoding: "utf8", timeout: 20_000 })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/dist\/bundle\/main\.js is missing: run `npm run build`/)
  })

  it("re-exec'd with its V8 flags, in two workers: proxies through a gRPC agent (proto/ found from the bundle)", async () => {
    const dir = scratch()
    const origin = await startEchoOrigin()
    cleanups.push(() => origin.close())
    const agent = await spawnGrpcRawAgent(["--mode", "add-header"])
    const config = join(dir, "sentinel.kdl")
    writeFileSync(
      config,
      `system { worker-threads 2; graceful-shutdown-timeout-secs 1 }
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "origin" { target "${origin.address}" } }
agents { agent "g" { grpc "${agent.address}"; failure-mode "closed" } }
filters { filter "fg" { type "agent"; agent "g" } }
routes { route "all" { matches { path-prefix "/" }; upstream "origin"; filters "fg" } }
observability { logging { access-log { enabled #false } } }
`
    )
    // no SENTINEL_NO_RESPAWN: main.js re-executes itself with the V8 flags, that child is the
    // cluster's primary, and its workers run the same file
    const main = join(dir, "dist", "main.js")
    const proc = startCommand(process.execPath, [main, "run", "-c", config])
    cleanups.push(() => proc.stop())
    await proc.waitForCount(/"cluster worker-ready"/, 2)
    const port = await listenerPort(proc)
    const [primary, ...others] = childrenOf(proc.pid)
    expect(others).toEqual([])
    expect(cmdline(primary!)).toEqual(expect.arrayContaining(["--max-semi-space-size=64", main, "run"]))
    const workers = childrenOf(primary!)
    expect(workers).toHaveLength(2)
    for (const w of workers) expect(cmdline(w)).toContain(main)
    for (let i = 0; i < 4; i++) {
      const reply = await request(port, { path: `/through/${i}` })
      expect(reply.status).toBe(200)
      const seen = JSON.parse(reply.body.toString()) as { url: string; headers: Record<string, string> }
      expect(seen.url).toBe(`/through/${i}`)
      expect(seen.headers["x-grpc-agent"]).toBe("seen")
      expect(reply.headers["x-grpc-agent-response"]).toBe("seen")
    }
    const handshake = await agent.waitFor((l) => l.event === "handshake")
    expect(handshake.versions).toEqual([2])
    expect(proc.stderr()).not.toMatch(/"level":"error"/)
  })
})
