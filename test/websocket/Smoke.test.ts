import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import { startProxy } from "../support/proxy.js"
import { closed, connectWs, nextMessage, startWsOrigin, wsConfig } from "./support.js"

describe("smoke", () => {
  it("echo", async () => {
    const origin = await startWsOrigin()
    await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const proxy = yield* startProxy(wsConfig(origin.port))
      const ws = yield* Effect.promise(() => connectWs(proxy.port))
      ws.send("hello")
      const m = yield* Effect.promise(() => nextMessage(ws))
      expect(m.data.toString()).toBe("hello")
      ws.close(4001, "bye")
      const c = yield* Effect.promise(() => closed(ws))
      expect(c.code).toBe(4001)
    })))
    await origin.close()
  })
})
