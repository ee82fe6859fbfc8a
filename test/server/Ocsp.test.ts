/**
 * OCSP stapling against a real responder (`openssl ocsp` on 127.0.0.1, answering from the test
 * CA's database): the listener fetches a "good" response for its certificate and staples it to
 * handshakes that ask; a certificate whose responder is down is served at once, without a
 * staple. The request and response encoders are checked against the same responder.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as tls from "node:tls"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ocspRequest, readOcspResponse } from "../../src/server/Ocsp.js"
import { makeCerts, type CertSet } from "../support/certs.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { startProxy, testConfig, waitUntil } from "../support/proxy.js"

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })


let origin: EchoOrigin
let certs: CertSet<"ca" | "stapled" | "unreachable">
let responder: ChildProcess
let responderPort: number
let ca: Buffer

beforeAll(async () => {
  origin = await startEchoOrigin("ocsp")
  responderPort = await freePort()
  const deadPort = await freePort()
  certs = makeCerts({
    ca: { ca: true, cn: "OCSP Test CA" },
    stapled: { sans: ["localhost"], ocspUrl: `http://127.0.0.1:${responderPort}`, chain: true },
    unreachable: { sans: ["down.test"], ocspUrl: `http://127.0.0.1:${deadPort}`, chain: true }
  })
  ca = fs.readFileSync(certs.files.ca.cert)
  responder = spawn(
    "openssl",
    ["ocsp", "-index", certs.index, "-port", String(responderPort), "-CA", certs.files.ca.cert, "-rsigner", certs.files.ca.cert, "-rkey", certs.files.ca.key, "-ndays", "1"],
    { stdio: ["ignore", "pipe", "ignore"] }
  )
  // it says ACCEPT once it listens (a probe connection would hold up its one-at-a-time loop)
  let out = ""
  responder.stdout!.on("data", (d: Buffer) => (out += d.toString()))
  await waitUntil(() => out.includes("ACCEPT"), "the OCSP responder")
})
afterAll(async () => {
  responder?.kill("SIGKILL")
  await origin.close()
  certs.cleanup()
})

/** A handshake asking for a stapled response: what the listener stapled (null = none). */
const stapled = (port: number, servername: string) =>
  new Promise<Buffer | null>((resolve, reject) => {
    let response: Buffer | null = null
    // requestOCSP is a tls.connect option node documents but its types lack
    const s = tls.connect({ host: "127.0.0.1", port, ca, servername, requestOCSP: true } as tls.ConnectionOptions)
    s.on("OCSPResponse", (r: Buffer) => (response = r))
    s.on("secureConnect", () => {
      s.destroy()
      resolve(response)
    })
    s.on("error", reject)
  })

const leafOf = (file: string) => new X509Certificate(fs.readFileSync(file))

describe("OCSP", () => {
  it("the request encoder is understood by a real responder, which says the certificate is good", async () => {
    const leaf = leafOf(certs.files.stapled.cert)
    const { der, serial } = ocspRequest(leaf, leafOf(certs.files.ca.cert))
    const res = await fetch(`http://127.0.0.1:${responderPort}`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: der })
    const status = readOcspResponse(Buffer.from(await res.arrayBuffer()), serial)
    expect(status.status).toBe("good")
    expect(status.nextUpdate!.getTime()).toBeGreaterThan(Date.now())
  })

  it("staples a good response to handshakes that ask; a certificate whose responder is down is served without one, at once", async () => {
    const scope = Effect.runSync(Scope.make())
    try {
      const proxy = await Effect.runPromise(
        startProxy(
          testConfig({
            listeners: [
              {
                id: "tls",
                address: "127.0.0.1:0",
                protocol: "https",
                tls: {
                  certFile: certs.files.stapled.cert,
                  keyFile: certs.files.stapled.key,
                  ocspStapling: true,
                  sni: [{ hostnames: ["down.test"], priority: false, certFile: certs.files.unreachable.cert, keyFile: certs.files.unreachable.key }]
                }
              }
            ] as never,
            upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
            routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }] as never,
            system: { gracefulShutdownTimeout: Duration.millis(100) } as never
          })
        ).pipe(Scope.extend(scope))
      )
      let response: Buffer | null = null
      await waitUntil(async () => (response = await stapled(proxy.port, "localhost")) !== null, "a stapled response")
      const { serial } = ocspRequest(leafOf(certs.files.stapled.cert), leafOf(certs.files.ca.cert))
      expect(readOcspResponse(response!, serial).status).toBe("good")
      // the responder of this one refuses connections: the handshake does not wait for it
      const started = Date.now()
      expect(await stapled(proxy.port, "down.test")).toBeNull()
      expect(Date.now() - started).toBeLessThan(2000)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
    }
  })
})
