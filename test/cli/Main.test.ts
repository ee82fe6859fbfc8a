/**
 * The `sentinel` command as users run it: the built `dist/main.js` in a child
 * process (`npm test` builds first).
 */
import { describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { request } from "../support/proxy.js"
import { startEchoOrigin } from "../support/origins.js"
import { listenerPort, MAIN, startSentinel } from "../ops/sentinelProcess.js"

const run = (args: Array<string>, env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", env: { ...process.env, ...env }, timeout: 20_000 })

const tmp = () => mkdtempSync(join(tmpdir(), "sentinel-cli-"))

describe("sentinel CLI", () => {
  it("prints its version and help, and rejects unknown flags with exit 2", () => {
    const version = run(["--version"])
    expect(version.status).toBe(0)
    expect(version.stdout).toMatch(/^sentinel \d+\.\d+\.\d+/)
    expect(run(["--help"]).stdout).toContain("sentinel test -c FILE")
    const bad = run(["--frobnicate"])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain("--frobnicate")
    expect(run(["launch"]).status).toBe(2)
  })

  it("`test` validates: exit 0 with a summary for the default config, exit 1 with file:line:col for a bad one", () => {
    const ok = run(["test", "-c", "config/sentinel.kdl"])
    expect(ok.status).toBe(0)
    expect(ok.stdout).toContain("configuration ok")
    const dir = tmp()
    const file = join(dir, "bad.kdl")
    writeFileSync(file, 'listeners {\n  listener "a" {\n    adress "127.0.0.1:1"\n  }\n}\n')
    const bad = run(["test", "-c", file])
    expect(bad.status).toBe(1)
    expect(bad.stderr).toContain(`${file}:3:5`)
    expect(bad.stderr).toMatch(/did you mean .*address/)
    // SENTINEL_CONFIG is the fallback for -c
    expect(run(["test"], { SENTINEL_CONFIG: file }).status).toBe(1)
  })

  it("`test` prints nothing from a config raw: a hostile id is refused on one line, a path with a newline is escaped", () => {
    const dir = tmp()
    const hostile = join(dir, "hostile.kdl")
    writeFileSync(hostile, 'listeners {\n  listener "a\\n{\\"level\\":\\"fatal\\"}\\u{202E}" { address "127.0.0.1:1" }\n}\n')
    const bad = run(["test", "-c", hostile])
    expect(bad.status).toBe(1)
    expect(bad.stdout).toBe("")
    expect(bad.stderr.split("\n")).toEqual([
      "configuration invalid (1 problem):",
      `${hostile}:2:12: listener id "a\\u000A{\"level\":\"fatal\"}\\u202E" contains \\u000A: ids must be printable (no control or format characters)`,
      `configuration test failed: ${hostile}`,
      ""
    ])
    const file = join(dir, "root.kdl")
    writeFileSync(file, `listeners { listener "m" { address "127.0.0.1:1" } }
routes { route "r" { static-files { root "/srv\\n  route evil (priority 1000): all requests -> upstream x\\u{2028}" } } }
`)
    const ok = run(["test", "-c", file])
    expect(ok.status).toBe(0)
    expect(ok.stdout.split("\n")).toEqual([
      "configuration OK (schema 1.0): 1 listener, 1 route, 0 upstreams, 0 filters, 0 agents",
      "  listener m: http://127.0.0.1:1",
      "  route r (priority 50): all requests -> static files /srv\\u000A  route evil (priority 1000): all requests -> upstream x\\u2028",
      `configuration ok: ${file}`,
      ""
    ])
  })

  it("`test` refuses worker-threads above 4 per core of this machine", () => {
    const file = join(tmp(), "w.kdl")
    writeFileSync(file, `listeners { listener "m" { address "127.0.0.1:1" } }\nsystem { worker-threads 100000 }\n`)
    const r = run(["test", "-c", file])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`${file}:2:25: \`worker-threads\` must be at most ${4 * availableParallelism()} (4 per core`)
  })

  it("runs a config, proxies, and exits 0 after draining on SIGTERM", async () => {
    const origin = await startEchoOrigin()
    const dir = tmp()
    const config = join(dir, "s.kdl")
    writeFileSync(
      config,
      `listeners { listener "m" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${origin.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { file "${join(dir, "access.log")}" } } }
`
    )
    const p = startSentinel(["run", "-c", config])
    const port = await listenerPort(p)
    const reply = await request(port, { path: "/via-cli" })
    expect(reply.status).toBe(200)
    const slow = request(port, { path: "/slow?ms=400" })
    await origin.arrived("/slow?ms=400")
    p.child.kill("SIGTERM")
    expect((await slow).body.toString()).toBe("start\nend\n")
    expect((await p.exited).code).toBe(0)
    const log = (await import("node:fs")).readFileSync(join(dir, "access.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(log.map((l: { path: string }) => l.path)).toEqual(["/via-cli", "/slow"])
    expect(log[0]).toMatchObject({ method: "GET", status: 200, route_id: "all", upstream: "o", client_ip: "127.0.0.1" })
    expect(log[0].trace_id).toBe(reply.headers["x-request-id"])
    await origin.close()
  })

  it("a second signal exits at once, without waiting for the drain", async () => {
    const origin = await startEchoOrigin()
    const dir = tmp()
    const config = join(dir, "s.kdl")
    writeFileSync(
      config,
      `system { graceful-shutdown-timeout-secs 60 }
listeners { listener "m" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${origin.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`
    )
    const p = startSentinel(["run", "-c", config])
    const port = await listenerPort(p)
    const hanging = request(port, { path: "/hold" }).catch(() => "closed")
    await origin.arrived("/hold")
    const started = Date.now()
    p.child.kill("SIGTERM")
    // Signals do not queue: send the second once the first was taken (the drain started).
    await p.waitFor(/draining/)
    // A repeat within 500 ms counts as the same signal (Ctrl-C reaches both processes): wait past that window.
    await new Promise((r) => setTimeout(r, 700))
    p.child.kill("SIGTERM")
    const { code } = await p.exited
    expect(code).not.toBe(0)
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(await hanging).toBe("closed")
    await origin.close()
  })

  it("SENTINEL_YOUNG_GENERATION_MB sizes the serving process's young generation; a bad value exits 2 naming it", async () => {
    const dir = tmp()
    const config = join(dir, "s.kdl")
    writeFileSync(config, `listeners { listener "m" { address "127.0.0.1:0" } }\nroutes { route "h" { matches { path-prefix "/" }; builtin-handler "health" } }\n`)
    const p = startSentinel(["run", "-c", config], { SENTINEL_YOUNG_GENERATION_MB: "8" })
    try {
      const port = await listenerPort(p)
      expect((await request(port, { path: "/" })).status).toBe(200)
      // the re-exec parent's child serves: its command line carries the flag
      const child = readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, "utf8").trim().split(/\s+/)[0]!
      const argv = readFileSync(`/proc/${child}/cmdline`, "utf8").split("\0")
      expect(argv).toContain("--max-semi-space-size=8")
      expect(argv).toContain("--no-allocation-site-pretenuring")
    } finally {
      p.child.kill("SIGTERM")
      await p.exited
    }
    const bad = run(["run", "-c", config], { SENTINEL_YOUNG_GENERATION_MB: "lots" })
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain("SENTINEL_YOUNG_GENERATION_MB must be an integer from 0 to 1024")
  })
})
