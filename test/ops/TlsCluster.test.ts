/**
 * TLS session resumption across `worker-threads`: every worker has the same session ticket
 * keys (the primary's, TicketKeys.ts; node's cluster also shares a listening server's keys),
 * so a client resuming its session is accepted whichever worker its next connection goes to
 * (the cluster primary hands connections out in turn), also after a reload rebuilt the
 * workers' secure contexts.
 */
import { afterEach, describe, expect, it } from "vitest"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as tls from "node:tls"
import { standardCerts } from "../support/certs.js"
import { startEchoOrigin } from "../support/origins.js"
import { listenerPort, startSentinel, tempDir } from "./sentinelProcess.js"

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** One TLS connection: a request, its status line, whether the session was resumed, and the session to resume next. */
const exchange = (port: number, ca: Buffer, session: Buffer | undefined) =>
  new Promise<{ status: string; reused: boolean; session: Buffer | undefined }>((resolve, reject) => {
    let latest: Buffer | undefined
    const s = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost", ALPNProtocols: ["http/1.1"], ...(session ? { session } : {}) })
    s.on("session", (b: Buffer) => (latest = b))
    let data = ""
    let reused = false
    s.on("secureConnect", () => {
      reused = s.isSessionReused()
      s.write("GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    })
    s.on("data", (c: Buffer) => (data += c.toString("latin1")))
    s.on("error", reject)
    s.on("close", () => resolve({ status: data.split("\r\n")[0], reused, session: latest }))
  })

describe("TLS across workers", { timeout: 60_000 }, () => {
  it("a session resumes on either worker (shared ticket keys)", async () => {
    const origin = await startEchoOrigin()
    cleanups.push(() => origin.close())
    const certs = standardCerts()
    cleanups.push(() => certs.cleanup())
    const dir = tempDir()
    const file = join(dir, "sentinel.kdl")
    writeFileSync(
      file,
      `system { worker-threads 2; graceful-shutdown-timeout-secs 1 }
listeners {
  listener "tls" {
    address "127.0.0.1:0"
    protocol "https"
    tls { cert-file "${certs.files.default.cert}"; key-file "${certs.files.default.key}" }
  }
}
upstreams { upstream "o" { target "${origin.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`
    )
    const p = startSentinel(["run", "-c", file])
    cleanups.push(() => p.stop())
    await p.waitForCount(/"cluster worker-ready"/, 2)
    const port = await listenerPort(p)
    const ca = readFileSync(certs.files.ca.cert)

    const first = await exchange(port, ca, undefined)
    expect(first.status).toBe("HTTP/1.1 200 OK")
    expect(first.session).toBeDefined()
    let session = first.session
    const reused: Array<boolean> = []
    // consecutive connections go to the workers in turn: each one is tried several times
    for (let i = 0; i < 6; i++) {
      const r = await exchange(port, ca, session)
      expect(r.status).toBe("HTTP/1.1 200 OK")
      reused.push(r.reused)
      session = r.session ?? session
    }
    expect(reused).toEqual(Array(6).fill(true))

    // a reload rebuilds the secure contexts (certificates re-read): sessions from before it
    // still resume, on both workers
    p.child.kill("SIGHUP")
    await p.waitForCount(/"configuration reloaded"/, 2)
    const afterReload: Array<boolean> = []
    for (let i = 0; i < 4; i++) {
      const r = await exchange(port, ca, session)
      expect(r.status).toBe("HTTP/1.1 200 OK")
      afterReload.push(r.reused)
    }
    expect(afterReload).toEqual(Array(4).fill(true))
  })
})
