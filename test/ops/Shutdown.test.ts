/**
 * Graceful stop of the binary: SIGTERM while a long streaming response is in
 * flight lets it finish, refuses new connections, and exits 0.
 */
import { afterEach, describe, expect, it } from "vitest"
import { writeFileSync } from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import { join } from "node:path"
import { startEchoOrigin } from "../support/origins.js"
import { listenerPort, startSentinel, tempDir } from "./sentinelProcess.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** Resolves with the connect outcome of one TCP connection attempt. */
const tryConnect = (port: number) =>
  new Promise<"connected" | string>((resolve) => {
    const s = net.connect(port, "127.0.0.1")
    s.once("connect", () => {
      s.destroy()
      resolve("connected")
    })
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
  })

describe("SIGTERM", { timeout: 90_000 }, () => {
  it("lets a long streaming response finish, refuses new connections, and exits 0", async () => {
    const origin = await startEchoOrigin()
    cleanups.push(() => origin.close())
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    writeFileSync(
      file,
      `system { graceful-shutdown-timeout-secs 20 }
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${origin.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`
    )
    const p = startSentinel(["run", "-c", file])
    cleanups.push(() => p.stop())
    const port = await listenerPort(p)

    // A streaming response: the first chunk arrives at once, the end 2 s later.
    let received = ""
    let firstChunk: () => void = () => {}
    const gotFirst = new Promise<void>((r) => (firstChunk = r))
    const streaming = new Promise<{ status: number; complete: boolean }>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port, path: "/slow?ms=2000", agent: false }, (res) => {
          res.setEncoding("utf8")
          res.on("data", (c: string) => {
            received += c
            firstChunk()
          })
          res.on("end", () => resolve({ status: res.statusCode ?? 0, complete: res.complete }))
          res.on("error", reject)
        })
        .on("error", reject)
    })
    await gotFirst
    expect(received).toBe("start\n")

    p.child.kill("SIGTERM")
    await p.waitFor(/SIGTERM received, draining/)
    // The listener stops accepting as the drain begins (bounded wait for the close to land).
    // A connection that raced into the accept queue as the listener closed is reset by the
    // kernel (ECONNRESET): not served either; keep trying until the port refuses.
    let outcome = "connected"
    for (let i = 0; i < 50 && outcome !== "ECONNREFUSED"; i++) {
      outcome = await tryConnect(port)
      if (outcome !== "ECONNREFUSED") await new Promise((r) => setTimeout(r, 20))
    }
    expect(outcome).toBe("ECONNREFUSED")

    const done = await streaming
    expect(done).toEqual({ status: 200, complete: true })
    expect(received).toBe("start\nend\n")
    expect((await p.exited).code).toBe(0)
  })
})
