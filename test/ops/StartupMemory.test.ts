/**
 * Start-up's memory given back once the proxy is up (issue 18, memory; src/StartupMemory.ts).
 * Without the step the young generation a running proxy has grown during start-up stays at
 * 16 MiB per semi-space (32 committed) with the proxy's V8 flags until V8's memory reducer runs,
 * 8-35 s later; with it the proxy starts at V8's minimum.
 */
import * as v8 from "node:v8"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { PROXY_V8_FLAGS } from "../../src/RuntimeFlags.js"
import { releaseStartupMemory } from "../../src/StartupMemory.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { request } from "../support/proxy.js"
import { listenerPort, MAIN, startCommand, tempDir, type SentinelProcess } from "./sentinelProcess.js"

const MiB = 1024 * 1024
const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")!

const PROBE = `import v8 from "node:v8"
import { writeFileSync } from "node:fs"
process.on("SIGUSR2", () => {
  writeFileSync(process.env.HEAP_OUT, JSON.stringify(v8.getHeapSpaceStatistics()))
  process.stderr.write("heap written\\n")
})
`

describe("start-up memory", () => {
  let proc: SentinelProcess | undefined
  let origin: EchoOrigin | undefined
  afterEach(async () => {
    await proc?.stop()
    await origin?.close()
  })

  it("releaseStartupMemory collects what died and shrinks a grown young generation, keeping what is live", async () => {
    const kept: Array<{ readonly i: number; readonly s: string }> = []
    // survivors grow the young generation, as module loading does
    for (let round = 0; round < 8 && (round === 0 || newSpace().space_size < 8 * MiB); round++) {
      for (let i = 0; i < 100_000; i++) kept.push({ i, s: `item-${i}` })
    }
    const grown = newSpace().space_size
    expect(grown).toBeGreaterThanOrEqual(8 * MiB)
    expect(await releaseStartupMemory()).toBe(true)
    expect(newSpace().space_size).toBeLessThan(grown / 4)
    expect(kept.length).toBeGreaterThanOrEqual(100_000)
    expect(kept[kept.length - 1]!.s).toBe(`item-${kept[kept.length - 1]!.i}`)
  })

  it("a proxy started with its V8 flags serves with the smallest young generation, not the one start-up grew", async () => {
    origin = await startEchoOrigin()
    const dir = tempDir()
    const probe = join(dir, "probe.mjs")
    writeFileSync(probe, PROBE)
    const config = join(dir, "sentinel.kdl")
    writeFileSync(
      config,
      `listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "origin" { target "127.0.0.1:${origin.port}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "origin" } }
observability { logging { access-log { enabled #true; file "${join(dir, "access.log")}"; format "json" } } }
`
    )
    const out = join(dir, "heap.json")
    // the flags on the command line: main.ts then runs in this process (no re-exec), probe included
    proc = startCommand(process.execPath, [...PROXY_V8_FLAGS, "--import", probe, MAIN, "run", "-c", config], { HEAP_OUT: out })
    const port = await listenerPort(proc)
    for (let i = 0; i < 5; i++) expect((await request(port, { path: `/r${i}` })).status).toBe(200)
    proc.child.kill("SIGUSR2")
    await proc.waitFor(/heap written/)
    const spaces = JSON.parse(readFileSync(out, "utf8")) as Array<v8.HeapSpaceInfo>
    const young = spaces.find((s) => s.space_name === "new_space")!
    // start-up alone grows it to 32 MiB committed with --max-semi-space-size=64
    expect(young.space_size).toBeLessThanOrEqual(4 * MiB)
    expect(spaces.find((s) => s.space_name === "old_space")!.space_used_size).toBeGreaterThan(8 * MiB)
  })
})
