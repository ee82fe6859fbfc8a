/**
 * TLS termination on a `protocol "https"` listener, with certificates made at test time
 * (`certs.ts`) and real TLS clients: HTTP/1.1 and HTTP/2 by ALPN through the same pipeline,
 * SNI choosing the certificate, mTLS (refused without a client certificate; with one, its facts
 * upstream and in the access log, client copies removed), TLS versions, failed handshakes counted
 * by reason, and a reload swapping a certificate under traffic without a failed request.
 */
import * as fs from "node:fs"
import * as http2 from "node:http2"
import * as https from "node:https"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as tls from "node:tls"
import { X509Certificate } from "node:crypto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { SentinelConfig, SentinelConfigInput } from "../../src/config/Schema.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { accessLogTo, jsonLines, metricSum, openProxy, testConfig, waitUntil, type ProxyHandle } from "../support/proxy.js"
import { makeCerts, standardCerts, type CertSet } from "../support/certs.js"

let origin: EchoOrigin
let certs: CertSet<"ca" | "default" | "api" | "wildcard" | "shared" | "expired" | "soon" | "client" | "mismatched">
let dir: string
let ca: Array<Buffer>
/** A renewal of the default certificate (same name, new key), from a second CA the clients also trust. */
let renewed: CertSet<"ca2" | "renewed">

beforeAll(async () => {
  origin = await startEchoOrigin("tls")
  certs = standardCerts()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-tls-"))
  renewed = makeCerts({ ca2: { ca: true, cn: "Sentinel Test CA 2" }, renewed: { cn: "renewed.test", sans: ["localhost"] } })
  ca = [fs.readFileSync(certs.files.ca.cert), fs.readFileSync(renewed.files.ca2.cert)]
})
afterAll(async () => {
  await origin.close()
  certs.cleanup()
  renewed.cleanup()
  fs.rmSync(dir, { recursive: true, force: true })
})

interface Env {
  readonly proxy: ProxyHandle
  readonly accessLog: string
  readonly config: (tlsBlock: Record<string, unknown>) => SentinelConfig
  readonly close: () => Promise<void>
}

let n = 0
const start = async (tlsBlock: Record<string, unknown>, listener: Record<string, unknown> = {}): Promise<Env> => {
  const accessLog = path.join(dir, `access-${n++}.log`)
  const config = (t: Record<string, unknown>) =>
    testConfig({
      listeners: [{ id: "tls", address: "127.0.0.1:0", protocol: "https", tls: t, ...listener }] as never,
      upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
      routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }] as never,
      system: { gracefulShutdownTimeout: Duration.millis(200) } as never,
      observability: accessLogTo(accessLog)
    } as Partial<SentinelConfigInput>)
  const { proxy, close } = await openProxy(config(tlsBlock))
  return { proxy, accessLog, config, close }
}

const base = () => ({ certFile: certs.files.default.cert, keyFile: certs.files.default.key })

/** One HTTPS/1.1 request; resolves with status, body, the peer certificate and the negotiated protocol. */
const get = (
  port: number,
  p: string,
  options: { servername?: string; headers?: Record<string, string>; cert?: Buffer; key?: Buffer; agent?: https.Agent; maxVersion?: tls.SecureVersion } = {}
) =>
  new Promise<{ status: number; body: string; peer: tls.PeerCertificate; alpn: string | false | null; version: string | null }>((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        path: p,
        ca,
        servername: options.servername ?? "localhost",
        headers: { host: options.servername ?? "localhost", ...options.headers },
        agent: options.agent ?? false,
        ALPNProtocols: ["http/1.1"],
        ...(options.cert !== undefined ? { cert: options.cert, key: options.key } : {}),
        ...(options.maxVersion !== undefined ? { maxVersion: options.maxVersion } : {})
      } as https.RequestOptions,
      (res) => {
        const socket = res.socket as tls.TLSSocket
        const peer = socket.getPeerCertificate()
        const alpn = socket.alpnProtocol
        const version = socket.getProtocol()
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), peer, alpn, version }))
      }
    )
    req.on("error", reject)
    req.end()
  })

/** The certificate the listener presents for `servername` (handshake only). */
const presented = (port: number, servername?: string) =>
  new Promise<tls.PeerCertificate>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca, rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}) }, () => {
      const peer = s.getPeerCertificate()
      s.destroy()
      resolve(peer)
    })
    s.on("error", reject)
  })



const fingerprintOf = (file: string) => new X509Certificate(fs.readFileSync(file)).fingerprint256

describe("https listener", () => {
  let env: Env
  beforeAll(async () => {
    env = await start({
      ...base(),
      sni: [
        { hostnames: ["api.example.com"], priority: false, certFile: certs.files.api.cert, keyFile: certs.files.api.key },
        { hostnames: ["*.example.com"], priority: false, certFile: certs.files.wildcard.cert, keyFile: certs.files.wildcard.key }
      ]
    })
  })
  afterAll(() => env.close())

  it("serves HTTP/1.1 over TLS; the upstream is told the client used https", async () => {
    const r = await get(env.proxy.port, "/one")
    expect([r.status, r.alpn]).toEqual([200, "http/1.1"])
    const seen = JSON.parse(r.body) as { headers: Record<string, string> }
    expect(seen.headers["x-forwarded-proto"]).toBe("https")
  })

  it("serves HTTP/2 when ALPN chooses h2, through the same pipeline", async () => {
    const session = http2.connect(`https://127.0.0.1:${env.proxy.port}`, { ca, servername: "localhost" })
    try {
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = session.request({ ":path": "/h2-over-tls", ":authority": "localhost" }, { endStream: true })
        let status = 0
        const chunks: Array<Buffer> = []
        req.on("response", (h) => (status = Number(h[":status"])))
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => resolve({ status, body: Buffer.concat(chunks).toString() }))
        req.on("error", reject)
      })
      expect(reply.status).toBe(200)
      expect((session.socket as tls.TLSSocket).alpnProtocol).toBe("h2")
      expect(JSON.parse(reply.body).headers["x-forwarded-proto"]).toBe("https")
      await waitUntil(() => jsonLines(env.accessLog).some((l) => l.path === "/h2-over-tls"), "the access line")
      expect(jsonLines(env.accessLog).find((l) => l.path === "/h2-over-tls")!.protocol).toBe("HTTP/2.0")
      expect(await metricSum(env.proxy, "sentinel_requests_by_protocol_total", { listener: "tls", protocol: "HTTP/2+TLS" })).toBeGreaterThanOrEqual(1)
    } finally {
      session.close()
    }
  })

  it("SNI picks the certificate: exact name, one-label wildcard, default for no SNI and unknown names", async () => {
    const fp = (c: tls.PeerCertificate) => c.fingerprint256
    expect(fp(await presented(env.proxy.port, "api.example.com"))).toBe(fingerprintOf(certs.files.api.cert))
    expect(fp(await presented(env.proxy.port, "a.example.com"))).toBe(fingerprintOf(certs.files.wildcard.cert))
    // a wildcard covers one label only (RFC 6125)
    expect(fp(await presented(env.proxy.port, "a.b.example.com"))).toBe(fingerprintOf(certs.files.default.cert))
    expect(fp(await presented(env.proxy.port, "unknown.test"))).toBe(fingerprintOf(certs.files.default.cert))
    expect(fp(await presented(env.proxy.port))).toBe(fingerprintOf(certs.files.default.cert))
  })

  it("a client-supplied client-certificate header never reaches the upstream", async () => {
    const r = await get(env.proxy.port, "/forged", { headers: { "x-client-cert-subject": "CN=admin", "x-client-cert-fingerprint": "AA" } })
    const seen = JSON.parse(r.body) as { headers: Record<string, string> }
    expect(seen.headers["x-client-cert-subject"]).toBeUndefined()
    expect(seen.headers["x-client-cert-fingerprint"]).toBeUndefined()
  })

  it("plain HTTP sent to the TLS port is a failed handshake, counted; the listener keeps serving", async () => {
    const before = await metricSum(env.proxy, "sentinel_tls_handshake_errors_total")
    await new Promise<void>((resolve) => {
      const s = net.connect(env.proxy.port, "127.0.0.1", () => s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      s.on("error", () => undefined)
      s.on("close", () => resolve())
      s.resume()
    })
    await waitUntil(async () => (await metricSum(env.proxy, "sentinel_tls_handshake_errors_total")) > before, "the handshake error counted")
    expect((await get(env.proxy.port, "/after")).status).toBe(200)
  })

  it("exports the seconds until each served certificate expires", async () => {
    const v = await metricSum(env.proxy, "sentinel_tls_certificate_expiry_seconds", { listener: "tls", hostname: "api.example.com" })
    expect(v).toBeGreaterThan(300 * 86400)
    expect(v).toBeLessThanOrEqual(366 * 86400)
  })
})

describe("mTLS", () => {
  it("without a client certificate the handshake fails; with one, its facts go upstream and into the access log", async () => {
    const env = await start({ ...base(), caFile: certs.files.ca.cert, clientAuth: true })
    try {
      await expect(get(env.proxy.port, "/no-cert")).rejects.toThrow()
      expect(origin.requests.some((q) => q.url === "/no-cert")).toBe(false)
      await waitUntil(async () => (await metricSum(env.proxy, "sentinel_tls_handshake_errors_total", { listener: "tls" })) >= 1, "the refusal counted")
      const r = await get(env.proxy.port, "/with-cert", {
        cert: fs.readFileSync(certs.files.client.cert),
        key: fs.readFileSync(certs.files.client.key),
        headers: { "x-client-cert-subject": "CN=forged" }
      })
      expect(r.status).toBe(200)
      const h = (JSON.parse(r.body) as { headers: Record<string, string> }).headers
      expect(h["x-client-cert-subject"]).toContain("CN=client-1")
      expect(h["x-client-cert-issuer"]).toContain("CN=Sentinel Test CA")
      expect(h["x-client-cert-fingerprint"]).toBe(fingerprintOf(certs.files.client.cert))
      expect(h["x-client-cert-serial"]).toMatch(/^[0-9A-F]+$/)
      await waitUntil(() => jsonLines(env.accessLog).some((l) => l.path === "/with-cert"), "the access line")
      expect(jsonLines(env.accessLog).find((l) => l.path === "/with-cert")!.client_cert_fingerprint).toBe(fingerprintOf(certs.files.client.cert))
    } finally {
      await env.close()
    }
  })
})

describe("TLS versions", () => {
  it("min-version 1.3 refuses a TLS 1.2 client (counted as a version failure) and serves a TLS 1.3 one", async () => {
    const env = await start({ ...base(), minVersion: "1.3" })
    try {
      await expect(get(env.proxy.port, "/v12", { maxVersion: "TLSv1.2" })).rejects.toThrow()
      await waitUntil(async () => (await metricSum(env.proxy, "sentinel_tls_handshake_errors_total", { reason: "version" })) >= 1, "the version failure counted")
      const ok = await get(env.proxy.port, "/v13")
      expect([ok.status, ok.version]).toEqual([200, "TLSv1.3"])
    } finally {
      await env.close()
    }
  })
})

describe("reload", () => {
  it("swaps the certificate under traffic: new handshakes get the new one, no request fails, an open connection keeps working", async () => {
    const certFile = path.join(dir, "live.crt")
    const keyFile = path.join(dir, "live.key")
    fs.copyFileSync(certs.files.default.cert, certFile)
    fs.copyFileSync(certs.files.default.key, keyFile)
    const env = await start({ certFile, keyFile })
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      expect((await get(env.proxy.port, "/ka1", { agent })).peer.fingerprint256).toBe(fingerprintOf(certs.files.default.cert))
      let stop = false
      let failed = 0
      let served = 0
      const traffic = (async () => {
        while (!stop) {
          try {
            if ((await get(env.proxy.port, "/load")).status === 200) served++
            else failed++
          } catch {
            failed++
          }
        }
      })()
      // the same paths, new contents (a renewed certificate for the same names)
      fs.copyFileSync(renewed.files.renewed.cert, certFile)
      fs.copyFileSync(renewed.files.renewed.key, keyFile)
      await Effect.runPromise(env.proxy.reload(env.config({ certFile, keyFile })))
      const after = await presented(env.proxy.port, "localhost")
      stop = true
      await traffic
      expect(after.fingerprint256).toBe(fingerprintOf(renewed.files.renewed.cert))
      expect(failed).toBe(0)
      expect(served).toBeGreaterThan(0)
      // the kept-alive connection still has its first certificate and still works
      const again = await get(env.proxy.port, "/ka2", { agent })
      expect([again.status, again.peer.fingerprint256]).toEqual([200, fingerprintOf(certs.files.default.cert)])
      // a broken certificate fails the reload and the last good one keeps serving
      fs.writeFileSync(certFile, "not a certificate")
      await expect(Effect.runPromise(env.proxy.reload(env.config({ certFile, keyFile })))).rejects.toThrow(/not a PEM certificate/)
      expect((await presented(env.proxy.port, "localhost")).fingerprint256).toBe(fingerprintOf(renewed.files.renewed.cert))
    } finally {
      agent.destroy()
      await env.close()
    }
  })
})
