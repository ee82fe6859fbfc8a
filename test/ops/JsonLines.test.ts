/**
 * In `run`, every line the process writes to stderr is one JSON object (the error log's
 * format): start, requests, signals, the drain, a second signal, a refused start, and the
 * cluster primary and workers. The built binary, with its re-exec, as users run it.
 */
import { afterEach, describe, expect, it } from "vitest"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { request } from "../support/proxy.js"
import { startEchoOrigin } from "../support/origins.js"
import { listenerPort, type SentinelProcess, startSentinel, tempDir } from "./sentinelProcess.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** Every non-empty stderr line parsed; the lines that are not JSON objects listed in the failure. */
const jsonLines = (p: SentinelProcess): Array<Record<string, unknown>> => {
  const lines = p.stderr().split("\n").filter((l) => l !== "")
  const notJson = lines.filter((l) => {
    try {
      const v = JSON.parse(l)
      return typeof v !== "object" || v === null || typeof v.message !== "string" || typeof v.level !== "string"
    } catch {
      return true
    }
  })
  expect(notJson).toEqual([])
  return lines.map((l) => JSON.parse(l))
}

const origin = async () => {
  const o = await startEchoOrigin()
  cleanups.push(() => o.close())
  return o
}

const start = (args: Array<string>) => {
  const p = startSentinel(args)
  cleanups.push(() => p.stop())
  return p
}

describe("JSON on stderr", { timeout: 90_000 }, () => {
  it("a config run: start, SIGTERM, drain, exit 0", async () => {
    const o = await origin()
    const dir = tempDir()
    const file = join(dir, "s.kdl")
    writeFileSync(
      file,
      `listeners { listener "m" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${o.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`
    )
    const p = start(["run", "-c", file])
    const port = await listenerPort(p)
    expect((await request(port, { path: "/x" })).status).toBe(200)
    p.child.kill("SIGTERM")
    expect((await p.exited).code).toBe(0)
    const lines = jsonLines(p)
    expect(lines.find((l) => String(l.message).startsWith("SIGTERM received"))).toMatchObject({ level: "info", signal: "SIGTERM" })
  })

  it("quick mode: a second SIGTERM during the drain exits at once, still in JSON", async () => {
    const o = await origin()
    const p = start(["run", "--listen", "127.0.0.1:0", "--upstream", `http://${o.address}`])
    const port = await listenerPort(p)
    const hanging = request(port, { path: "/hold" }).catch(() => "closed")
    await o.arrived("/hold")
    p.child.kill("SIGTERM")
    await p.waitFor(/draining/)
    // a repeat within 500 ms counts as the same signal (Ctrl-C reaches both processes)
    await new Promise((r) => setTimeout(r, 700))
    p.child.kill("SIGTERM")
    expect((await p.exited).code).not.toBe(0)
    await hanging
    const lines = jsonLines(p)
    expect(lines.some((l) => l.message === "second SIGTERM, exiting now" && l.level === "warn")).toBe(true)
  })

  it("a configuration that does not load: one JSON line per problem, then the refusal; exit 1", async () => {
    const dir = tempDir()
    const file = join(dir, "bad.kdl")
    writeFileSync(file, 'listeners {\n  listener "a" {\n    adress "127.0.0.1:1"\n  }\n}\n')
    const p = start(["run", "-c", file])
    expect((await p.exited).code).toBe(1)
    const lines = jsonLines(p)
    expect(lines.some((l) => String(l.message).includes(`${file}:3:5`))).toBe(true)
    expect(lines.at(-1)).toMatchObject({ level: "error", message: "not started: configuration invalid", config: file })
  })

  it("workers: the primary's and the workers' lines, through SIGTERM", async () => {
    const o = await origin()
    const dir = tempDir()
    const file = join(dir, "s.kdl")
    writeFileSync(
      file,
      `system { worker-threads 2; graceful-shutdown-timeout-secs 5 }
listeners { listener "m" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${o.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`
    )
    const p = start(["run", "-c", file])
    await p.waitForCount(/"cluster worker-ready"/, 2)
    p.child.kill("SIGTERM")
    await p.exited
    jsonLines(p)
  })
})
