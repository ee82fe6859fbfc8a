/**
 * Upstream TLS and HTTP/2 as configured on the upstream: `tls { sni ca-cert
 * insecure-skip-verify }` verify (or knowingly skip verifying) the origin's
 * certificate, and `http-version { max-version 2 }` speaks HTTP/2 over TLS.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as http2 from "node:http2"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { TLSSocket } from "node:tls"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { request, startProxy, testConfig } from "../support/proxy.js"

let dir = ""
let certFile = ""
let key: Buffer
let cert: Buffer

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "sentinel-tls-"))
  certFile = join(dir, "cert.pem")
  const keyFile = join(dir, "key.pem")
  const cnf = join(dir, "openssl.cnf")
  writeFileSync(
    cnf,
    "[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n[dn]\nCN=origin.test\n[ext]\nsubjectAltName=DNS:origin.test\nbasicConstraints=critical,CA:TRUE\n"
  )
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-keyout", keyFile, "-out", certFile, "-config", cnf
  ], { stdio: "ignore" })
  key = readFileSync(keyFile)
  cert = readFileSync(certFile)
})

afterAll(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true })
})

interface Seen {
  readonly servername: string | false
  readonly httpVersion: string
}

const tlsOrigin = (h2: boolean) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const seen: Array<Seen> = []
      const handler = (req: http2.Http2ServerRequest | import("node:http").IncomingMessage, res: any) => {
        seen.push({ servername: (req.socket as TLSSocket).servername ?? false, httpVersion: req.httpVersion })
        res.writeHead(200, { "content-type": "text/plain" })
        res.end(`hello over ${req.httpVersion}`)
      }
      const server = h2
        ? http2.createSecureServer({ key, cert, allowHTTP1: true }, handler)
        : https.createServer({ key, cert }, handler)
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
      return { server, seen, port: (server.address() as AddressInfo).port }
    }),
    (o) =>
      Effect.promise(
        () =>
          new Promise<void>((r) => {
            ;(o.server as any).closeAllConnections?.()
            o.server.close(() => r())
            // http2 sessions do not close on their own
            setImmediate(r)
          })
      )
  )

const route = { id: "r", matches: [{ _tag: "PathPrefix" as const, prefix: "/" }], upstream: "u" }

describe("upstream TLS", () => {
  it.scopedLive("verifies the origin against ca-cert with the configured SNI; rejects an unknown CA; skip-verify connects", () =>
    Effect.gen(function* () {
      const origin = yield* tlsOrigin(false)
      const target = [{ address: `127.0.0.1:${origin.port}` }]
      const verified = yield* startProxy(
        testConfig({ upstreams: [{ id: "u", targets: target, tls: { sni: "origin.test", caCert: certFile } }], routes: [route] })
      )
      const ok = yield* Effect.promise(() => request(verified.port, { path: "/" }))
      expect(ok.status).toBe(200)
      expect(ok.body.toString()).toBe("hello over 1.1")
      expect(origin.seen[0].servername).toBe("origin.test")

      const unknownCa = yield* startProxy(
        testConfig({ upstreams: [{ id: "u", targets: target, tls: { sni: "origin.test" } }], routes: [route] })
      )
      const rejected = yield* Effect.promise(() => request(unknownCa.port, { path: "/" }))
      expect(rejected.status).toBe(502)
      expect(JSON.parse(rejected.body.toString()).reason).toBe("connect_tls")

      const skip = yield* startProxy(
        testConfig({ upstreams: [{ id: "u", targets: target, tls: { insecureSkipVerify: true } }], routes: [route] })
      )
      expect((yield* Effect.promise(() => request(skip.port, { path: "/" }))).status).toBe(200)
    })
  )

  it.scopedLive("speaks HTTP/2 to the origin when max-version is 2", () =>
    Effect.gen(function* () {
      const origin = yield* tlsOrigin(true)
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [
            {
              id: "u",
              targets: [{ address: `127.0.0.1:${origin.port}` }],
              tls: { sni: "origin.test", caCert: certFile },
              httpVersion: { maxVersion: 2 }
            }
          ],
          routes: [route]
        })
      )
      for (let i = 0; i < 3; i++) {
        const r = yield* Effect.promise(() => request(proxy.port, { path: `/h2/${i}` }))
        expect(r.status).toBe(200)
        expect(r.body.toString()).toBe("hello over 2.0")
      }
      expect(origin.seen.every((s) => s.httpVersion === "2.0")).toBe(true)
    })
  )
})
