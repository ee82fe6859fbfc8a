/**
 * `system { auto-reload #true }` watches a TLS listener's certificate and key files too: a
 * renewed certificate written over the old files is picked up without a signal, new handshakes
 * get it, and the log names the host whose certificate changed.
 */
import { afterEach, describe, expect, it } from "vitest"
import { X509Certificate } from "node:crypto"
import { copyFileSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as tls from "node:tls"
import { makeCerts } from "../support/certs.js"
import { startEchoOrigin } from "../support/origins.js"
import { listenerPort, startSentinel, tempDir } from "./sentinelProcess.js"

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const presented = (port: number, ca: Buffer) =>
  new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
      const fp = s.getPeerCertificate().fingerprint256
      s.destroy()
      resolve(fp)
    })
    s.on("error", reject)
  })

describe("auto-reload of certificates", { timeout: 60_000 }, () => {
  it("a certificate renewed in place is served to new handshakes without a signal", async () => {
    const origin = await startEchoOrigin()
    cleanups.push(() => origin.close())
    const certs = makeCerts({ ca: { ca: true }, first: { sans: ["localhost"] }, second: { sans: ["localhost"] } })
    cleanups.push(() => certs.cleanup())
    const dir = tempDir()
    const cert = join(dir, "live.crt")
    const key = join(dir, "live.key")
    copyFileSync(certs.files.first.cert, cert)
    copyFileSync(certs.files.first.key, key)
    const file = join(dir, "sentinel.kdl")
    writeFileSync(
      file,
      `system { auto-reload #true }
listeners { listener "tls" { address "127.0.0.1:0"; protocol "https"; tls { cert-file "${cert}"; key-file "${key}" } } }
upstreams { upstream "o" { target "${origin.address}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`
    )
    const p = startSentinel(["run", "-c", file])
    cleanups.push(() => p.stop())
    const port = await listenerPort(p)
    const ca = readFileSync(certs.files.ca.cert)
    const fp = (f: string) => new X509Certificate(readFileSync(f)).fingerprint256
    expect(await presented(port, ca)).toBe(fp(certs.files.first.cert))
    // the key first, then the certificate: a reload between the two fails and keeps the old pair
    copyFileSync(certs.files.second.key, key)
    copyFileSync(certs.files.second.cert, cert)
    await p.waitFor(/"listener certificates changed"[^\n]*localhost/, { timeoutMs: 10_000 })
    expect(await presented(port, ca)).toBe(fp(certs.files.second.cert))
  })
})
