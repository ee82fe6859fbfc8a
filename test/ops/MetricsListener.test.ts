/**
 * The metrics listener: serves one path with prom-client's text (process
 * metrics and sentinel_build_info included), 404 elsewhere, and releases its
 * port when its scope closes.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as net from "node:net"
import { makeMetrics } from "../../src/observability/Metrics.js"
import { startMetricsListener } from "../../src/server/MetricsListener.js"

describe("startMetricsListener", () => {
  it.live("serves the registry on its path only, and frees the port on close", () =>
    Effect.gen(function* () {
      const metrics = makeMetrics({ version: "9.9.9", defaultMetrics: true })
      const scope = yield* Scope.make()
      const h = yield* startMetricsListener({ host: "127.0.0.1", port: 0, path: "/m" }, async () => ({
        contentType: metrics.registry.contentType,
        body: await metrics.registry.metrics()
      })).pipe(Scope.extend(scope))
      const ok = yield* Effect.promise(() => fetch(`http://127.0.0.1:${h.port}/m`))
      assert.strictEqual(ok.status, 200)
      assert.match(ok.headers.get("content-type") ?? "", /text\/plain/)
      const text = yield* Effect.promise(() => ok.text())
      assert.match(text, /^sentinel_build_info\{version="9\.9\.9",node="v[^"]+"\} 1$/m)
      assert.match(text, /^process_resident_memory_bytes \d+/m)
      const other = yield* Effect.promise(() => fetch(`http://127.0.0.1:${h.port}/metrics`))
      assert.strictEqual(other.status, 404)
      yield* Scope.close(scope, Exit.void)
      const refused = yield* Effect.promise(
        () =>
          new Promise<string>((resolve) => {
            const s = net.connect(h.port, "127.0.0.1")
            s.once("connect", () => (s.destroy(), resolve("connected")))
            s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? ""))
          })
      )
      assert.strictEqual(refused, "ECONNREFUSED")
    })
  )

  it.live("a taken port is a typed bind failure", () =>
    Effect.gen(function* () {
      const server = net.createServer()
      yield* Effect.promise(() => new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r())))
      const port = (server.address() as net.AddressInfo).port
      const exit = yield* Effect.scoped(
        startMetricsListener({ host: "127.0.0.1", port }, async () => ({ contentType: "text/plain", body: "" }))
      ).pipe(Effect.exit)
      server.close()
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.match(String(exit.cause), /MetricsListenerBindFailed|EADDRINUSE/)
    })
  )
})
