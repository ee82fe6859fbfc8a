/**
 * Configuration reload on a running binary: SIGHUP and auto-reload, under
 * bounded load (20 keep-alive clients for ~2.5 s), with the reload counter
 * read from the metrics listener.
 */
import { afterEach, describe, expect, it } from "vitest"
import { renameSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import {
  listenerPort, metricsPort, runLoad, sample, scrape, startSentinel, tempDir, type SentinelProcess
} from "./sentinelProcess.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const origin = async (name: string): Promise<EchoOrigin> => {
  const o = await startEchoOrigin(name)
  cleanups.push(() => o.close())
  return o
}
const sentinel = (args: Array<string>): SentinelProcess => {
  const p = startSentinel(args)
  cleanups.push(() => p.stop())
  return p
}

const configText = (opts: { upstream: string; a: EchoOrigin; b: EchoOrigin; extra?: string; system?: string }) => `
system { graceful-shutdown-timeout-secs 5${opts.system ?? ""} }
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams {
  upstream "a" { target "${opts.a.address}" }
  upstream "b" { target "${opts.b.address}" }
}
routes { route "all" { matches { path-prefix "/" }; upstream "${opts.upstream}" } }
observability {
  metrics { enabled #true; address "127.0.0.1:0" }
  logging { access-log { enabled #false } }
}
${opts.extra ?? ""}
`

const reloadCount = async (port: number) => {
  const text = await scrape(port)
  return {
    success: sample(text, 'sentinel_config_reload_total{result="success"}'),
    error: sample(text, 'sentinel_config_reload_total{result="error"}')
  }
}

describe("configuration reload (SIGHUP)", { timeout: 90_000 }, () => {
  it("a reload that changes a route applies under load with zero failed requests", async () => {
    const [a, b] = await Promise.all([origin("a"), origin("b")])
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    writeFileSync(file, configText({ upstream: "a", a, b }))
    const p = sentinel(["run", "-c", file])
    const port = await listenerPort(p)
    const mport = await metricsPort(p)

    let reloadAt = -1
    let triggered = false
    const load = runLoad(port, {
      clients: 20,
      durationMs: 2500,
      label: (res) => String(res.headers["x-origin"]),
      onResponse: (r) => {
        // Reload once traffic is flowing; the rest of the run is on the new route.
        if (!triggered && r.ok >= 200) {
          triggered = true
          writeFileSync(file, configText({ upstream: "b", a, b }))
          p.child.kill("SIGHUP")
          p.waitFor(/"configuration reloaded"/).then(() => (reloadAt = r.labels.length), () => {})
        }
      }
    })
    const result = await load
    expect(result.failures.slice(0, 5)).toEqual([])
    expect(result.failed).toBe(0)
    expect(triggered).toBe(true)
    expect(reloadAt).toBeGreaterThan(0)
    expect(result.labels).toContain("a")
    // Once the reload was logged, new requests went to the new upstream only.
    expect(new Set(result.labels.slice(reloadAt + 20))).toEqual(new Set(["b"]))
    expect(await reloadCount(mport)).toEqual({ success: 1, error: 0 })
  })

  it("five invalid reloads in a row change nothing and fail nothing; each is logged with file:line:col", async () => {
    const [a, b] = await Promise.all([origin("a"), origin("b")])
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    const good = configText({ upstream: "a", a, b })
    writeFileSync(file, good)
    const p = sentinel(["run", "-c", file])
    const port = await listenerPort(p)
    const mport = await metricsPort(p)

    const invalid: Array<{ text: string; expect: RegExp }> = [
      { text: good.replace('upstream "a" {', 'upstream "a" {{'), expect: /sentinel\.kdl:\d+:\d+/ },
      { text: good.replace("graceful-shutdown-timeout-secs 5", "graceful-shutdown-timeout-secs 5; wrker-threads 2"), expect: /sentinel\.kdl:2:\d+: [^\n]*did you mean/ },
      { text: good.replace('upstream "b" }', 'upstream "nope" }').replace('upstream "a" }', 'upstream "nope" }'), expect: /sentinel\.kdl:\d+:\d+: [^\n]*nope/ },
      { text: `${good}\ninclude "missing.kdl"\n`, expect: /sentinel\.kdl:\d+:\d+: [^\n]*missing\.kdl/ },
      {
        text: good.replace(`target "${b.address}" }`, `target "${b.address}"; tls { ca-cert "${join(dir, "no-ca.pem")}" } }`),
        expect: /no-ca\.pem/
      }
    ]
    let index = 0
    let pending: Promise<unknown> | undefined
    const result = await runLoad(port, {
      clients: 20,
      durationMs: 2500,
      label: (res) => String(res.headers["x-origin"]),
      onResponse: (r) => {
        if (pending !== undefined || index >= invalid.length || r.ok < 100 * (index + 1)) return
        const bad = invalid[index++]
        writeFileSync(file, bad.text)
        const before = p.count(/configuration reload failed/)
        p.child.kill("SIGHUP")
        pending = p.waitForCount(/configuration reload failed/, before + 1).then(() => (pending = undefined))
      }
    })
    if (pending) await pending
    // A signal is only ever taken by a reloader that is ready: finish the sequence if load ended first.
    while (index < invalid.length) {
      writeFileSync(file, invalid[index++].text)
      const before = p.count(/configuration reload failed/)
      p.child.kill("SIGHUP")
      await p.waitForCount(/configuration reload failed/, before + 1)
    }
    expect(result.failed).toBe(0)
    expect(new Set(result.labels)).toEqual(new Set(["a"]))
    const failures = p.stderr().split("\n").filter((l) => l.includes("configuration reload failed"))
    expect(failures).toHaveLength(5)
    invalid.forEach((bad, i) => expect(JSON.parse(failures[i]).message).toMatch(bad.expect))
    expect(await reloadCount(mport)).toEqual({ success: 0, error: 5 })
    // Still the old configuration.
    const r = await fetch(`http://127.0.0.1:${port}/still`)
    expect(r.headers.get("x-origin")).toBe("a")
  })
})

describe("auto-reload", { timeout: 90_000 }, () => {
  it("a change to an included file reloads; a broken edit is refused with the included file's position", async () => {
    const [a, b] = await Promise.all([origin("a"), origin("b")])
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    const routes = join(dir, "routes.kdl")
    writeFileSync(routes, 'routes { route "all" { matches { path-prefix "/" }; upstream "a" } }\n')
    writeFileSync(
      file,
      configText({ upstream: "a", a, b, system: "; auto-reload #true" }).replace(/routes \{[^\n]*\n/, 'include "routes.kdl"\n')
    )
    const p = sentinel(["run", "-c", file])
    const port = await listenerPort(p)
    const mport = await metricsPort(p)
    expect((await fetch(`http://127.0.0.1:${port}/`)).headers.get("x-origin")).toBe("a")

    writeFileSync(routes, 'routes { route "all" { matches { path-prefix "/" }; upstream "b" } }\n')
    await p.waitFor(/"configuration reloaded"[^\n]*"trigger":"file-change"|"trigger":"file-change"[^\n]*"configuration reloaded"/)
    expect((await fetch(`http://127.0.0.1:${port}/`)).headers.get("x-origin")).toBe("b")

    writeFileSync(routes, 'routes { route "all" { matches { path-prefix "/" }; upstrem "a" } }\n')
    await p.waitFor(/"configuration reload failed/)
    const line = p.stderr().split("\n").find((l) => l.includes("configuration reload failed"))!
    expect(JSON.parse(line).message).toMatch(/routes\.kdl:1:\d+: [^\n]*upstrem/)
    expect((await fetch(`http://127.0.0.1:${port}/`)).headers.get("x-origin")).toBe("b")
    expect(await reloadCount(mport)).toEqual({ success: 1, error: 1 })
  })
})

describe("log files", { timeout: 90_000 }, () => {
  it("SIGUSR1 reopens the access log: after logrotate's rename, new lines go to a new file", async () => {
    const [a, b] = await Promise.all([origin("a"), origin("b")])
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    const access = join(dir, "access.log")
    writeFileSync(
      file,
      configText({ upstream: "a", a, b }).replace("access-log { enabled #false }", `access-log { file "${access}" }`)
    )
    const p = sentinel(["run", "-c", file])
    const port = await listenerPort(p)
    expect((await fetch(`http://127.0.0.1:${port}/before`)).status).toBe(200)
    // The writer is asynchronous: wait (bounded) for the line to land before rotating.
    for (let i = 0; i < 100 && !readFileSync(access, "utf8").includes("/before"); i++) await new Promise((r) => setTimeout(r, 20))
    renameSync(access, `${access}.1`)
    p.child.kill("SIGUSR1")
    await p.waitFor(/"log files reopened"/)
    expect((await fetch(`http://127.0.0.1:${port}/after`)).status).toBe(200)
    let current = ""
    for (let i = 0; i < 100 && !current.includes("/after"); i++) {
      await new Promise((r) => setTimeout(r, 20))
      try {
        current = readFileSync(access, "utf8")
      } catch {
        current = ""
      }
    }
    expect(current).toContain("/after")
    expect(current).not.toContain("/before")
    expect(readFileSync(`${access}.1`, "utf8")).toContain("/before")
  })
})
