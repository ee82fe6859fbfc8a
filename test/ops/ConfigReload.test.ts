/**
 * The reloader on its own (src/config/Reload.ts), with a recording `apply`
 * instead of a proxy: validation before apply, serialization, no-op edits
 * ignored, watches following `auto-reload` and the include set.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { loadConfigDetailed } from "../../src/config/Load.js"
import { makeReloader, restartOnlyChanges } from "../../src/config/Reload.js"
import type { SentinelConfig } from "../../src/config/Schema.js"
import { makeMetrics } from "../../src/observability/Metrics.js"
import { tempDir } from "./sentinelProcess.js"

const kdl = (route: string, extra = "") => `${extra}
listeners { listener "main" { address "127.0.0.1:0" } }
routes { route "${route}" { matches { path "/x" }; builtin-handler "status" } }
`

const setup = (text: string) =>
  Effect.gen(function* () {
    const dir = tempDir()
    const file = join(dir, "s.kdl")
    writeFileSync(file, text)
    const initial = yield* loadConfigDetailed(file)
    return { dir, file, initial }
  })

const routeIds = (c: SentinelConfig) => c.routes.map((r) => r.id)

const counts = async (metrics: ReturnType<typeof makeMetrics>) => {
  const m = await metrics.registry.getSingleMetricAsString("sentinel_config_reload_total")
  const v = (r: string) => Number(new RegExp(`result="${r}"\\} (\\d+)`).exec(m)?.[1])
  return { success: v("success"), error: v("error") }
}

describe("makeReloader", () => {
  it.scoped("validates before apply: an invalid file is never applied and is counted as an error", () =>
    Effect.gen(function* () {
      const { file, initial } = yield* setup(kdl("one"))
      const applied: Array<Array<string>> = []
      const metrics = makeMetrics({ defaultMetrics: false })
      const r = yield* makeReloader({ file, initial, metrics, apply: (c) => Effect.sync(() => void applied.push(routeIds(c))) })

      writeFileSync(file, kdl("two").replace("routes", "routez"))
      const bad = yield* r.reload("signal")
      assert.strictEqual(bad._tag, "Rejected")
      if (bad._tag === "Rejected") assert.match(bad.problems[0], /s\.kdl:\d+:\d+: .*routez/)
      assert.deepStrictEqual(applied, [])
      assert.deepStrictEqual(routeIds(yield* r.current.get), ["one"])

      writeFileSync(file, kdl("two"))
      const ok = yield* r.reload("signal")
      assert.strictEqual(ok._tag, "Applied")
      assert.deepStrictEqual(applied, [["two"]])
      assert.deepStrictEqual(routeIds(yield* r.current.get), ["two"])
      assert.deepStrictEqual(yield* Effect.promise(() => counts(metrics)), { success: 1, error: 1 })
    })
  )

  it.scoped("an apply failure (e.g. a listener that cannot bind) keeps the running config and counts an error", () =>
    Effect.gen(function* () {
      const { file, initial } = yield* setup(kdl("one"))
      const metrics = makeMetrics({ defaultMetrics: false })
      const r = yield* makeReloader({ file, initial, metrics, apply: () => Effect.fail({ message: "EADDRINUSE" }) })
      writeFileSync(file, kdl("two"))
      const out = yield* r.reload("signal")
      assert.deepStrictEqual(out, { _tag: "Rejected", problems: ["EADDRINUSE"] })
      assert.deepStrictEqual(routeIds(yield* r.current.get), ["one"])
      assert.deepStrictEqual(yield* Effect.promise(() => counts(metrics)), { success: 0, error: 1 })
    })
  )

  it.scoped("reloads are serialized: a second trigger waits for the first apply to finish", () =>
    Effect.gen(function* () {
      const { file, initial } = yield* setup(kdl("one"))
      const gate = yield* Deferred.make<void>()
      let active = 0
      let maxActive = 0
      const r = yield* makeReloader({
        file,
        initial,
        apply: () =>
          Effect.gen(function* () {
            active++
            maxActive = Math.max(maxActive, active)
            yield* Deferred.await(gate)
            active--
          })
      })
      const first = yield* Effect.fork(r.reload("signal"))
      const second = yield* Effect.fork(r.reload("signal"))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      assert.strictEqual(maxActive, 1)
    })
  )

  it.scoped("a file-change trigger with identical content does nothing; SIGHUP always reloads", () =>
    Effect.gen(function* () {
      const { file, initial } = yield* setup(kdl("one"))
      let applied = 0
      const r = yield* makeReloader({ file, initial, apply: () => Effect.sync(() => void applied++) })
      assert.strictEqual((yield* r.reload("file-change"))._tag, "Unchanged")
      assert.strictEqual((yield* r.reload("signal"))._tag, "Applied")
      assert.strictEqual(applied, 1)
    })
  )

  it.scopedLive("watches only with auto-reload, and follows the setting across reloads", () =>
    Effect.gen(function* () {
      const { file, initial } = yield* setup(kdl("one"))
      const r = yield* makeReloader({ file, initial, debounceMs: 20, pollMs: 50, apply: () => Effect.void })
      assert.isFalse(r.watching())
      writeFileSync(file, kdl("two", "system { auto-reload #true }"))
      yield* r.reload("signal")
      assert.isTrue(r.watching())
      // From now on an edit alone reloads (watch or poll, whichever sees it first).
      writeFileSync(file, kdl("three", "system { auto-reload #true }"))
      const deadline = Date.now() + 10_000
      while (routeIds(yield* r.current.get)[0] !== "three" && Date.now() < deadline) {
        yield* Effect.sleep("20 millis")
      }
      assert.deepStrictEqual(routeIds(yield* r.current.get), ["three"])
      writeFileSync(file, kdl("four"))
      yield* r.reload("signal")
      assert.isFalse(r.watching())
    })
  )

  it("restartOnlyChanges names what a reload cannot apply", () => {
    const a = { system: { workerThreads: 1 }, observability: { logging: { level: "info" }, metrics: { maxSeriesPerMetric: 1 } } }
    const b = { system: { workerThreads: 2 }, observability: { logging: { level: "debug" }, metrics: { maxSeriesPerMetric: 1 } } }
    // logging is applied by the reload itself (test/observability/LogReload.test.ts)
    assert.deepStrictEqual(restartOnlyChanges(a as never, b as never), ["system.worker-threads"])
    assert.deepStrictEqual(restartOnlyChanges(a as never, a as never), [])
  })
})
