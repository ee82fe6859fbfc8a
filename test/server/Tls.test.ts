/**
 * src/tls/Certificates.ts: loading a listener's certificates, the SNI lookup, and
 * real handshakes against `tls.createServer(serverOptions)` on 127.0.0.1:0
 * (certificates made by openssl at test time, test/support/certs.ts).
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import fc from "fast-check"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import * as tls from "node:tls"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ListenerTlsConfig } from "../../src/config/Schema.js"
import {
  certificateNames, type ListenerTls, loadListenerTls, mapCipherSuite, matchServerName, nodeCiphers, parseTlsVersion,
  serverNamePatternProblem
} from "../../src/tls/Certificates.js"
import { type CertSet, makeCerts } from "../support/certs.js"

const specs = {
  ca: { ca: true, cn: "Sentinel Test CA" },
  default: { cn: "default.test", sans: ["localhost", "IP:127.0.0.1"] },
  api: { cn: "api.example.com", sans: ["api.example.com", "www.example.com"] },
  wildcard: { cn: "*.example.com", sans: ["*.example.com"] },
  shared: { cn: "example.com", sans: ["example.com", "shared.example.com"] },
  overlap: { cn: "other.example.com", sans: ["other.example.com", "api.example.com"] },
  cnOnly: { cn: "cn-only.example.com" },
  client: { cn: "client-1", client: true },
  mismatched: { cn: "api.example.com", sans: ["api.example.com"], keyOf: "default" }
} as const
type Name = keyof typeof specs

let certs: CertSet<Name>
let caPem: string
const f = (n: Name) => certs.files[n]

beforeAll(() => {
  certs = makeCerts(specs)
  caPem = readFileSync(f("ca").cert, "utf8")
})
afterAll(() => certs?.cleanup())

const config = (input: Record<string, unknown>): ListenerTlsConfig =>
  Schema.decodeUnknownSync(ListenerTlsConfig)({ certFile: f("default").cert, keyFile: f("default").key, ...input })
const sni = (n: Name, extra: Record<string, unknown> = {}) => ({ certFile: f(n).cert, keyFile: f(n).key, ...extra })
const load = (input: Record<string, unknown>): ListenerTls => {
  const r = loadListenerTls("https", config(input))
  if (Either.isLeft(r)) throw new Error(r.left.join("\n"))
  return r.right
}
const problems = (input: Record<string, unknown>): ReadonlyArray<string> => {
  const r = loadListenerTls("https", config(input))
  return Either.isLeft(r) ? r.left : []
}

/** A TLS server on 127.0.0.1:0 answering "ok" on every connection; closed by the returned function. */
const serve = async (t: ListenerTls) => {
  const server = tls.createServer(t.serverOptions, (s) => {
    s.on("error", () => {})
    s.end(`ok ${s.authorized ? "authorized" : "anonymous"}`)
  })
  server.on("tlsClientError", () => {})
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

interface Hello {
  readonly cn: string
  readonly san: string
  readonly data: string
  readonly reused: boolean
  readonly protocol: string | null
  readonly cipher: string
  readonly session: Buffer | undefined
}

/** One connection: the certificate seen, what the server said, whether the session was resumed. Bounded (5 s). */
const hello = (port: number, opts: tls.ConnectionOptions = {}) =>
  new Promise<Hello>((resolve, reject) => {
    let seen: Omit<Hello, "data" | "session"> | undefined
    let data = ""
    let session: Buffer | undefined
    const s = tls.connect({ host: "127.0.0.1", port, ca: caPem, checkServerIdentity: () => undefined, ...opts }, () => {
      const c = s.getPeerCertificate()
      seen = {
        cn: String(c.subject?.CN ?? ""), san: c.subjectaltname ?? "", reused: s.isSessionReused(), protocol: s.getProtocol(),
        cipher: s.getCipher().standardName
      }
    })
    s.setTimeout(5000, () => s.destroy(new Error("no answer within 5 s")))
    s.on("session", (b) => (session = b))
    s.on("data", (d) => (data += d))
    s.once("error", reject)
    s.once("close", () => (seen !== undefined && data.startsWith("ok") ? resolve({ ...seen, data, session }) : reject(new Error(`closed: ${data}`))))
  })

describe("server names", () => {
  it("matchServerName: a wildcard covers exactly one label (RFC 6125), case-insensitive, trailing dot tolerant", () => {
    const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/)
    const domain = fc.array(label, { minLength: 1, maxLength: 3 }).map((ls) => ls.join("."))
    fc.assert(fc.property(label, label, domain, fc.boolean(), (a, b, d, upper) => {
      const name = `${a}.${d}`
      const shown = upper ? name.toUpperCase() : name
      expect(matchServerName(`*.${d}`, shown)).toBe(true)
      expect(matchServerName(`*.${d}`, `${shown}.`)).toBe(true)
      expect(matchServerName(`*.${d}.`, shown)).toBe(true)
      expect(matchServerName(`*.${d}`, d)).toBe(false)
      expect(matchServerName(`*.${d}`, `${b}.${name}`)).toBe(false)
      expect(matchServerName(name, shown)).toBe(true)
      expect(matchServerName(name, `${b}.${name}`)).toBe(false)
    }), { numRuns: 300 })
    expect(matchServerName("*.example.com", ".example.com")).toBe(false)
    expect(matchServerName("*.example.com", "aexample.com")).toBe(false)
  })

  it("patterns: a wildcard is the whole left-most label; IP addresses are refused", () => {
    for (const ok of ["example.com", "*.example.com", "API.Example.COM.", "a_b.example.com", "localhost", "*.com"]) {
      expect(serverNamePatternProblem(ok)).toBeUndefined()
    }
    const wild = "has a wildcard that is not the whole left-most label: write \"*.example.com\" (it matches exactly one label)"
    for (const bad of ["a*.example.com", "*.*.x", "foo.*.com", "*a.example.com", "example.*"]) expect(serverNamePatternProblem(bad)).toBe(wild)
    expect(serverNamePatternProblem("10.0.0.1")).toMatch(/^is an IP address/)
    expect(serverNamePatternProblem("*")).toBe("needs a domain after \"*.\"")
    expect(serverNamePatternProblem("a b.com")).toMatch(/^is not a DNS name/)
    expect(serverNamePatternProblem("-a.com")).toMatch(/^is not a DNS name/)
  })

  it("versions and cipher suites: Sentinel's spellings, IANA names to OpenSSL's", () => {
    expect(["1.2", "tls1.2", "TLSv1.2", "tlsv1.2"].map(parseTlsVersion)).toEqual(["1.2", "1.2", "1.2", "1.2"])
    expect(["1.3", "TLS1.3", "1.0", "1.1"].map(parseTlsVersion)).toEqual(["1.3", "1.3", "1.0", "1.1"])
    expect(["1.4", "2", "", "ssl3"].map(parseTlsVersion)).toEqual([undefined, undefined, undefined, undefined])
    expect(mapCipherSuite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")).toEqual({
      iana: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", openssl: "ECDHE-RSA-AES128-GCM-SHA256", version: "1.2", forwardSecret: true
    })
    expect(mapCipherSuite("TLS13_AES_256_GCM_SHA384")?.iana).toBe("TLS_AES_256_GCM_SHA384")
    expect(mapCipherSuite("TLS_RSA_WITH_AES_128_GCM_SHA256")?.forwardSecret).toBe(false)
    expect(mapCipherSuite("ECDHE-RSA-AES128-GCM-SHA256")).toBeUndefined()
    expect(nodeCiphers(["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"])).toBe("TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-CHACHA20-POLY1305")
    expect(nodeCiphers([])).toBeUndefined()
  })
})

describe("loadListenerTls", () => {
  it("builds one context per certificate, the SNI lookup (exact, one-label wildcard, default) and the certificate list", () => {
    const t = load({ sni: [sni("api", { hostnames: ["api.example.com"] }), sni("wildcard"), sni("shared")] })
    const [dflt, api, wild, shared] = [t.contextFor(undefined), t.contextFor("api.example.com"), t.contextFor("a.example.com"), t.contextFor("example.com")]
    expect(new Set([dflt, api, wild, shared]).size).toBe(4)
    expect(t.contextFor("API.Example.COM.")).toBe(api)
    expect(t.contextFor("b.example.com")).toBe(wild)
    expect(t.contextFor("www.example.com")).toBe(wild) // api's block lists only api.example.com
    expect(t.contextFor("a.b.example.com")).toBe(dflt)
    expect(t.contextFor("shared.example.com")).toBe(shared) // exact beats the wildcard
    expect(t.contextFor("unknown.test")).toBe(dflt)
    expect(t.contextFor("")).toBe(dflt)
    expect(t.contextFor("..")).toBe(dflt)
    expect(t.certificates.map((c) => [c.source, c.hostnames])).toEqual([
      ["default", ["localhost"]],
      ["sni #1", ["api.example.com"]],
      ["sni #2", ["*.example.com"]],
      ["sni #3", ["example.com", "shared.example.com"]]
    ])
    const d = t.certificates[0]
    expect(d.subject).toBe("CN=default.test")
    expect(d.issuer).toBe("CN=Sentinel Test CA")
    expect(d.certFile).toBe(f("default").cert)
    expect(d.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/)
    expect(d.notAfter.getTime()).toBeGreaterThan(Date.now() + 300 * 86_400_000)
    expect(t.serverOptions).toMatchObject({ minVersion: "TLSv1.2", maxVersion: "TLSv1.3", requestCert: false, rejectUnauthorized: false })
    expect(t.serverOptions.SNICallback).toBeTypeOf("function")
    expect(load({}).serverOptions.SNICallback).toBeUndefined()
  })

  it("certificate names: SAN DNS entries (not IPs), else the CN", async () => {
    const { X509Certificate } = await import("node:crypto")
    const names = (n: Name) => certificateNames(new X509Certificate(readFileSync(f(n).cert)))
    expect(names("default")).toEqual(["localhost"])
    expect(names("api")).toEqual(["api.example.com", "www.example.com"])
    expect(names("cnOnly")).toEqual(["cn-only.example.com"])
  })

  it("a name two sni blocks claim is an error, unless one lists it in priority-hostnames (Sentinel's tie-break)", () => {
    expect(problems({ sni: [sni("api"), sni("overlap")] })).toEqual([
      `listener "https" tls: "api.example.com" is claimed by sni #1 and sni #2 (${f("api").cert}, ${f("overlap").cert}): ` +
      `a name goes to one certificate (hint: priority-hostnames "api.example.com" in the block that should win)`
    ])
    const t = load({ sni: [sni("api"), sni("overlap", { hostnames: ["api.example.com"], priority: true })] })
    expect(t.contextFor("api.example.com")).toBe(t.contextFor("other.example.com"))
    expect(t.contextFor("www.example.com")).not.toBe(t.contextFor("api.example.com"))
    expect(t.certificates.map((c) => c.hostnames)).toEqual([["localhost"], ["www.example.com"], ["other.example.com", "api.example.com"]])
    // the order of the blocks does not matter
    const u = load({ sni: [sni("overlap", { hostnames: ["api.example.com"], priority: true }), sni("api")] })
    expect(u.contextFor("api.example.com")).toBe(u.contextFor("other.example.com"))
    expect(problems({ sni: [sni("api", { hostnames: ["api.example.com"], priority: true }), sni("overlap", { hostnames: ["api.example.com"], priority: true })] })).toEqual([
      `listener "https" tls: "api.example.com" is a priority-hostname of both sni #1 and sni #2: only one certificate can win a name`
    ])
    expect(problems({ sni: [sni("api", { hostnames: ["shared.example.com"], priority: true })] })).toEqual([
      `listener "https" tls sni #1: priority-hostnames "shared.example.com" is not a name of ${f("api").cert} (its names: api.example.com, www.example.com)`
    ])
  })

  it("unreadable files, non-PEM files, a key that does not match, an empty CA file: one message each", () => {
    const dir = join(certs.dir, "bad")
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, "text.pem"), "not a certificate\n")
    const missing = join(dir, "missing.crt")
    expect(problems({ certFile: missing })).toEqual([
      `listener "https" tls cert-file: cannot read ${missing}: ENOENT: no such file or directory, open '${missing}'`
    ])
    expect(problems({ certFile: dir })).toEqual([`listener "https" tls cert-file: ${dir} is not a regular file`])
    expect(problems({ certFile: "/dev/zero" })).toEqual([`listener "https" tls cert-file: /dev/zero is not a regular file`])
    expect(problems({ certFile: join(dir, "text.pem") })[0]).toMatch(/^listener "https" tls cert-file: \S+text\.pem is not a PEM certificate: /)
    expect(problems({ keyFile: join(dir, "text.pem") })[0]).toMatch(/^listener "https" tls key-file: \S+text\.pem is not a PEM private key \(or it is encrypted\): /)
    expect(problems({ sni: [sni("mismatched")] })).toEqual([
      `listener "https" tls sni #1: key-file ${f("mismatched").key} does not match cert-file ${f("mismatched").cert} (hint: the key the certificate was issued for)`
    ])
    expect(problems({ caFile: join(dir, "text.pem"), clientAuth: true })).toEqual([
      `listener "https" tls ca-file: ${join(dir, "text.pem")} is not a PEM certificate file: no certificate in it`
    ])
    // every problem at once
    expect(problems({ certFile: missing, sni: [sni("mismatched"), sni("api", { certFile: dir })] })).toHaveLength(3)
  })
})

describe("handshakes (tls.createServer with serverOptions, 127.0.0.1:0)", { timeout: 30_000 }, () => {
  it("the certificate the client sees follows the server name it sends", async () => {
    const t = load({ sni: [sni("api"), sni("wildcard"), sni("shared", { hostnames: ["example.com"] })] })
    const server = await serve(t)
    try {
      const cn = async (servername: string | undefined) => (await hello(server.port, servername === undefined ? {} : { servername })).cn
      expect(await cn(undefined)).toBe("default.test")
      expect(await cn("api.example.com")).toBe("api.example.com")
      expect(await cn("WWW.example.com")).toBe("api.example.com")
      expect(await cn("x.example.com")).toBe("*.example.com")
      expect(await cn("x.y.example.com")).toBe("default.test")
      expect(await cn("example.com")).toBe("example.com")
      expect(await cn("shared.example.com")).toBe("*.example.com") // shared's block lists only example.com
      expect(await cn("nobody.test")).toBe("default.test")
      const h = await hello(server.port, { servername: "api.example.com" })
      expect(h.san).toBe("DNS:api.example.com, DNS:www.example.com")
      expect(h.protocol).toBe("TLSv1.3")
    } finally {
      await server.close()
    }
  })

  it("client-auth: a client without a certificate is refused; one signed by ca-file is authorized, also through an SNI context and on resumption", async () => {
    const t = load({ caFile: f("ca").cert, clientAuth: true, sni: [sni("api")] })
    expect(t.serverOptions).toMatchObject({ requestCert: true, rejectUnauthorized: true })
    const server = await serve(t)
    try {
      await expect(hello(server.port, { servername: "api.example.com" })).rejects.toThrow()
      const client = { cert: readFileSync(f("client").cert), key: readFileSync(f("client").key) }
      for (const servername of [undefined, "api.example.com"]) {
        const first = await hello(server.port, { ...client, ...(servername === undefined ? {} : { servername }) })
        expect(first.data).toBe("ok authorized")
        expect(first.session).toBeDefined()
        const again = await hello(server.port, { ...client, ...(servername === undefined ? {} : { servername }), session: first.session })
        expect([again.data, again.reused]).toEqual(["ok authorized", true])
      }
    } finally {
      await server.close()
    }
  })

  it("session-resumption #false: a returning client gets a full handshake", async () => {
    for (const [resumption, reused] of [[true, true], [false, false]] as const) {
      const server = await serve(load({ sessionResumption: resumption, sni: [sni("api")] }))
      try {
        for (const opts of [{}, { servername: "api.example.com" }, { maxVersion: "TLSv1.2" as const }]) {
          const first = await hello(server.port, opts)
          expect(first.session).toBeDefined() // the client is offered a session either way; only a full handshake follows
          const again = await hello(server.port, { ...opts, session: first.session })
          expect([opts, again.reused]).toEqual([opts, reused])
        }
      } finally {
        await server.close()
      }
    }
  })

  it("versions and cipher suites are what the server negotiates", async () => {
    const tls12 = await serve(load({ maxVersion: "1.2", cipherSuites: ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"], sni: [sni("api")] }))
    try {
      for (const servername of [undefined, "api.example.com"]) {
        const h = await hello(tls12.port, servername === undefined ? {} : { servername })
        expect([h.protocol, h.cipher]).toEqual(["TLSv1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"])
      }
      await expect(hello(tls12.port, { minVersion: "TLSv1.3" })).rejects.toThrow()
    } finally {
      await tls12.close()
    }
    const tls13 = await serve(load({ minVersion: "1.3", cipherSuites: ["TLS_AES_256_GCM_SHA384"] }))
    try {
      const h = await hello(tls13.port)
      expect([h.protocol, h.cipher]).toEqual(["TLSv1.3", "TLS_AES_256_GCM_SHA384"])
      await expect(hello(tls13.port, { maxVersion: "TLSv1.2" })).rejects.toThrow()
      await expect(hello(tls13.port, { ciphers: "TLS_CHACHA20_POLY1305_SHA256" })).rejects.toThrow()
    } finally {
      await tls13.close()
    }
  })
})
