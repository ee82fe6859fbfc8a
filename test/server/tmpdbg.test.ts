import { it } from "vitest"
import { Effect, Exit, Scope } from "effect"
import { startEchoOrigin } from "../support/origins.js"
import { startProxy, testConfig } from "../support/proxy.js"
import { rawRequest } from "../support/rawHttp.js"
it("dbg", async () => {
  const origin = await startEchoOrigin("x")
  const scope = Effect.runSync(Scope.make())
  const proxy = await Effect.runPromise(startProxy(testConfig({
    upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
    routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }] })).pipe(Scope.extend(scope)))
  for (const end of [true, false]) {
  const r = await rawRequest(proxy.port, "GET / HTTP/1.0\r\n\r\n", { end, timeoutMs: 1500 })
  console.log(end, JSON.stringify(r.raw), r.closed, r.elapsedMs)
  console.log(JSON.stringify(origin.requests.map(r => r.url)))
  }
  await Effect.runPromise(Scope.close(scope, Exit.void)); await origin.close()
})
