/**
 * Listener `protocol`, `max-concurrent-streams` and `tls { }`: decoding
 * (every key, Sentinel's spellings, defaults), every strict error with
 * file:line:col, and what `sentinel validate` (certificate dates, files) and
 * `sentinel lint` (weak versions and suites) report about them.
 */
import * as Either from "effect/Either"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { formatIssue } from "../../src/config/ConfigIssue.js"
import { decodeKdl } from "../../src/config/Kdl.js"
import { encodeKdl } from "../../src/config/KdlEncode.js"
import { lintConfig } from "../../src/config/Lint.js"
import { makeConfig, type SentinelConfig } from "../../src/config/Schema.js"
import { checkCertificates, localChecks } from "../../src/config/Validate.js"
import { listenerTlsProblems } from "../../src/tls/Certificates.js"
import { type CertSet, standardCerts } from "../support/certs.js"

const decode = (text: string) => decodeKdl(text, { file: "t.kdl" })
const errs = (text: string) => decode(text).errors.map(formatIssue)
const ok = (text: string) => {
  const r = decode(text)
  expect(r.errors.map(formatIssue)).toEqual([])
  return r.config!
}
/** An https listener whose tls block is `tls` (one key per line, starting on line 6, column 13). */
const H = (tls: string) => `listeners {
    listener "s" {
        address "0.0.0.0:8443"
        protocol "https"
        tls {
${tls.split("\n").map((l) => `            ${l}`).join("\n")}
        }
    }
}
`
const CK = `cert-file "/c"\nkey-file "/k"`

describe("listener protocol and max-concurrent-streams", () => {
  it("http (default), https with tls, h2 without; max-concurrent-streams defaults to 100", () => {
    const c = ok(`listeners {
  listener "a" { address "0.0.0.0:1"; }
  listener "b" { address "0.0.0.0:2"; protocol "h2"; max-concurrent-streams 250; }
  listener "c" { address "0.0.0.0:3"; protocol "https"; tls { cert-file "/c"; key-file "/k"; }; }
}`)
    expect(c.listeners.map((l) => [l.protocol, l.maxConcurrentStreams, l.tls !== undefined])).toEqual([
      ["http", 100, false], ["h2", 250, false], ["https", 100, true]
    ])
  })

  it("errors: https without tls, tls on http or h2, h3, streams out of range", () => {
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; protocol "https"; }; }`)).toEqual([
      "t.kdl:1:49: listener \"a\": protocol \"https\" needs a `tls { cert-file \"...\"; key-file \"...\" }` block"
    ])
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; tls { cert-file "/c"; key-file "/k"; }; }; }`)).toEqual([
      "t.kdl:1:49: `tls` needs protocol \"https\" (listener \"a\" is \"http\" by default)"
    ])
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; protocol "http"; tls { cert-file "/c"; key-file "/k"; }; }; }`)).toEqual([
      "t.kdl:1:66: `tls` needs protocol \"https\" (listener \"a\" is \"http\")"
    ])
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; protocol "h2"; tls { cert-file "/c"; key-file "/k"; }; }; }`)).toEqual([
      "t.kdl:1:64: `tls` on protocol \"h2\": \"h2\" is cleartext HTTP/2 (prior knowledge); for TLS write protocol \"https\" (it offers h2 by ALPN)"
    ])
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; protocol "h3"; }; }`)).toEqual([
      "t.kdl:1:58: `protocol` \"h3\" is not supported yet"
    ])
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; protocol "h2"; max-concurrent-streams 0; }; listener "b" { address "0.0.0.0:2"; max-concurrent-streams 2147483648; }; }`)).toEqual([
      "t.kdl:1:87: `max-concurrent-streams` must be at least 1, got 0",
      "t.kdl:1:152: `max-concurrent-streams` must be at most 2147483647, got 2147483648"
    ])
  })

  it("the schema says the same for configs built in code", () => {
    const base = { id: "l", address: "127.0.0.1:0" }
    expect(() => makeConfig({ listeners: [{ ...base, protocol: "https" }] })).toThrow(/protocol "https" needs a tls block/)
    expect(() => makeConfig({ listeners: [{ ...base, protocol: "h2", tls: { certFile: "/c", keyFile: "/k" } }] })).toThrow(/a tls block needs protocol "https"/)
    expect(() => makeConfig({ listeners: [{ ...base, protocol: "https", tls: { certFile: "/c", keyFile: "/k", clientAuth: true } }] })).toThrow(/client-auth #true needs a ca-file/)
    expect(() => makeConfig({ listeners: [{ ...base, protocol: "https", tls: { certFile: "/c", keyFile: "/k", minVersion: "1.3", maxVersion: "1.2" } }] })).toThrow(/min-version must not exceed max-version/)
  })
})

describe("tls block", () => {
  it("every key, with Sentinel's spellings; names normalized", () => {
    const t = ok(H(`cert-file "/etc/sentinel/default.crt"; key-file "/etc/sentinel/default.key"
ca-file "/etc/sentinel/clients-ca.crt"; client-auth #true
min-version "TLSv1.2"; max-version "tls1.3"
cipher-suite "TLS_AES_128_GCM_SHA256"; cipher-suite "TLS13_AES_256_GCM_SHA384"; cipher-suite "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
session-resumption #false
ocsp-stapling #false
sni { hostnames "API.example.com" "*.api.example.com."; hostnames "www.example.com"; cert-file "/a.crt"; key-file "/a.key"; }
sni { priority-hostnames "example.com"; cert-file "/e.crt"; key-file "/e.key"; }
sni { cert-file "/s.crt"; key-file "/s.key"; }`)).listeners[0].tls
    expect(t).toEqual({
      certFile: "/etc/sentinel/default.crt", keyFile: "/etc/sentinel/default.key", caFile: "/etc/sentinel/clients-ca.crt", clientAuth: true,
      minVersion: "1.2", maxVersion: "1.3",
      cipherSuites: ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
      sessionResumption: false, ocspStapling: false,
      sni: [
        { hostnames: ["api.example.com", "*.api.example.com", "www.example.com"], priority: false, certFile: "/a.crt", keyFile: "/a.key" },
        { hostnames: ["example.com"], priority: true, certFile: "/e.crt", keyFile: "/e.key" },
        { hostnames: [], priority: false, certFile: "/s.crt", keyFile: "/s.key" }
      ]
    })
  })

  it("defaults", () => {
    expect(ok(H(CK)).listeners[0].tls).toEqual({
      certFile: "/c", keyFile: "/k", clientAuth: false, minVersion: "1.2", maxVersion: "1.3", cipherSuites: [],
      sessionResumption: true, ocspStapling: false, sni: []
    })
  })

  it("a config with tls written as KDL decodes back to the same config", () => {
    const c = ok(H(`${CK}\nca-file "/ca"\nmin-version "1.0"\nmax-version "1.2"\ncipher-suite "TLS_RSA_WITH_AES_128_CBC_SHA"\nsni { priority-hostnames "a.example.com"; cert-file "/a"; key-file "/b"; }`))
    expect(ok(encodeKdl(c))).toEqual(c)
  })

  it("versions: unknown, a number, min above max", () => {
    expect(errs(H(`${CK}\nmin-version "1.4"\nmax-version 1.3`))).toEqual([
      "t.kdl:8:25: `min-version` \"1.4\" is not a TLS version: use \"1.2\" or \"1.3\" (\"1.0\" and \"1.1\" are accepted but weak); Sentinel would silently use 1.2",
      "t.kdl:9:25: `max-version` must be a string like \"1.2\" (Sentinel ignores a number here), got 1.3"
    ])
    expect(errs(H(`${CK}\nmin-version "1.3"\nmax-version "tls1.2"`))).toEqual(["t.kdl:8:13: `min-version` \"1.3\" is above `max-version` \"1.2\""])
  })

  it("client-auth without ca-file; cert-file and key-file required; acme not supported yet; ocsp-stapling decoded", () => {
    expect(errs(H(`${CK}\nclient-auth #true`))).toEqual([
      "t.kdl:8:13: `client-auth` #true needs `ca-file` (the CAs client certificates are verified against)"
    ])
    expect(errs(H(`ca-file "/ca"`))).toEqual([
      "t.kdl:5:9: `tls` needs `cert-file` and `key-file` (the default certificate; missing `cert-file` and `key-file`)"
    ])
    expect(errs(H(`cert-file "/c"`))).toEqual([
      "t.kdl:5:9: `tls` needs `cert-file` and `key-file` (the default certificate; missing `key-file`)"
    ])
    expect(errs(H(`${CK}\nocsp-stapling #true\nacme { }\nsni { cert-file "/a"; key-file "/b"; acme { }; }`))).toEqual([
      "t.kdl:9:13: `acme` is not supported yet",
      "t.kdl:10:50: `acme` is not supported yet"
    ])
    expect(errs(H(`${CK}\nocsp-stapling "on"`))).toEqual(["t.kdl:8:27: `ocsp-stapling` must be #true or #false, got \"on\""])
    expect(errs(H(`${CK}\nsession-resumption "yes"\nkey-flie "/x"`))).toEqual([
      "t.kdl:8:32: `session-resumption` must be #true or #false, got \"yes\"",
      "t.kdl:9:13: unknown node `key-flie` in `tls`; did you mean `key-file`?"
    ])
  })

  it("cipher suites: unknown (did you mean), listed twice, outside the versions, a version left without suites", () => {
    expect(errs(H(`${CK}\ncipher-suite "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265"\ncipher-suite "TLS_AES_128_GCM_SHA256"\ncipher-suite "TLS_AES_128_GCM_SHA256"`))).toEqual([
      "t.kdl:8:26: `cipher-suite` \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA265\" is not a known cipher suite (IANA names like \"TLS_AES_128_GCM_SHA256\" or \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"); did you mean `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`?",
      "t.kdl:10:13: `cipher-suite` \"TLS_AES_128_GCM_SHA256\" is listed twice"
    ])
    expect(errs(H(`${CK}\ncipher-suite "ECDHE-RSA-AES128-GCM-SHA256"`))).toEqual([
      "t.kdl:8:26: `cipher-suite` \"ECDHE-RSA-AES128-GCM-SHA256\" is not a known cipher suite (IANA names like \"TLS_AES_128_GCM_SHA256\" or \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\")"
    ])
    expect(errs(H(`${CK}\ncipher-suite "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"`))).toEqual([
      "t.kdl:8:13: `cipher-suite` lists no TLS 1.3 suite but max-version is \"1.3\" (TLS 1.3 would silently use node's default suites): add the TLS 1.3 suites to allow (e.g. \"TLS_AES_128_GCM_SHA256\") or set max-version \"1.2\""
    ])
    expect(errs(H(`${CK}\ncipher-suite "TLS_AES_128_GCM_SHA256"`))).toEqual([
      "t.kdl:8:13: `cipher-suite` lists no TLS 1.2 suite but min-version is \"1.2\" (TLS 1.2 clients could not connect): add TLS 1.2 suites or set min-version \"1.3\""
    ])
    expect(errs(H(`${CK}\nmin-version "1.3"\ncipher-suite "TLS_AES_128_GCM_SHA256"\ncipher-suite "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"`))).toEqual([
      "t.kdl:10:13: `cipher-suite` \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\" is a TLS 1.2 suite: it is never used with min-version \"1.3\""
    ])
    expect(errs(H(`${CK}\nmax-version "1.2"\ncipher-suite "TLS_AES_128_GCM_SHA256"\ncipher-suite "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"`))).toEqual([
      "t.kdl:9:13: `cipher-suite` \"TLS_AES_128_GCM_SHA256\" is a TLS 1.3 suite: it is never used with max-version \"1.2\""
    ])
  })

  it("sni names: wildcards only as the whole left-most label, no IPs, no name in two blocks, hostnames or priority-hostnames", () => {
    expect(errs(H(`${CK}
sni {
    hostnames "a*.example.com" "*.*.x" "foo.*.com" "10.0.0.1" "API.example.com"
    cert-file "/a"
    key-file "/ak"
}
sni {
    hostnames "api.example.com."
    priority-hostnames "x.example.com"
    cert-file "/b"
    key-file "/bk"
}
sni {
    hostnames "b.example.com" "b.example.com"
    key-file "/ck"
}`))).toEqual([
      "t.kdl:9:27: `hostnames` entry \"a*.example.com\" has a wildcard that is not the whole left-most label: write \"*.example.com\" (it matches exactly one label)",
      "t.kdl:9:44: `hostnames` entry \"*.*.x\" has a wildcard that is not the whole left-most label: write \"*.example.com\" (it matches exactly one label)",
      "t.kdl:9:52: `hostnames` entry \"foo.*.com\" has a wildcard that is not the whole left-most label: write \"*.example.com\" (it matches exactly one label)",
      "t.kdl:9:64: `hostnames` entry \"10.0.0.1\" is an IP address: clients never send one as SNI (it gets the default certificate)",
      "t.kdl:14:27: \"api.example.com\" is already served by the `sni` block at 8:13: a name goes to one certificate (list it in one block, or use priority-hostnames to choose)",
      "t.kdl:15:17: `sni` takes `hostnames` (exactly these names) or `priority-hostnames` (the certificate's SANs, winning these names), not both",
      "t.kdl:19:13: `sni` needs `cert-file` and `key-file` (missing `cert-file`)",
      "t.kdl:20:43: `hostnames` lists \"b.example.com\" twice"
    ])
  })

  it("sni priority: one block wins a name over plain hostnames; two winners are an error", () => {
    const prio = `sni {\n    priority-hostnames "x.example.com"\n    cert-file "/a"\n    key-file "/ak"\n}`
    const plain = `sni {\n    hostnames "x.example.com"\n    cert-file "/b"\n    key-file "/bk"\n}`
    expect(ok(H(`${CK}\n${plain}\n${prio}`)).listeners[0].tls?.sni.map((s) => s.priority)).toEqual([false, true])
    expect(errs(H(`${CK}\n${prio}\n${prio}\n${plain}`))).toEqual([
      "t.kdl:14:36: \"x.example.com\" is already a priority-hostname of the `sni` block at 8:13: only one certificate can win a name"
    ])
  })
})

describe("certificates on the machine: validate, lint, sentinel test", () => {
  let certs: CertSet<"ca" | "default" | "api" | "wildcard" | "shared" | "expired" | "soon" | "client" | "mismatched">
  beforeAll(() => {
    certs = standardCerts()
  })
  afterAll(() => certs?.cleanup())

  const withTls = (tls: Record<string, unknown>): SentinelConfig =>
    makeConfig({ listeners: [{ id: "s", address: "127.0.0.1:0", protocol: "https", tls: tls as never }] })
  const pair = (n: keyof typeof certs.files) => ({ certFile: certs.files[n].cert, keyFile: certs.files[n].key })

  it("validate: expired is an error, expiring within 30 days a warning (default and sni certificates, ca-file)", async () => {
    const c = withTls({ ...pair("soon"), caFile: certs.files.ca.cert, clientAuth: true, sni: [{ ...pair("api") }, { ...pair("expired") }] })
    const findings = await checkCertificates(c)
    expect(findings.map((x) => [x.level, x.subject])).toEqual([
      ["warning", `listener "s" tls`],
      ["error", `listener "s" tls sni #2`]
    ])
    expect(findings[0].message).toMatch(new RegExp(`^${certs.files.soon.cert} expires on .+ GMT \\(in (9|10) days; renew it\\)$`))
    expect(findings[1].message).toMatch(new RegExp(`^${certs.files.expired.cert} expired on .+ GMT$`))
    expect(await checkCertificates(c, { expiryWarningMs: 5 * 86_400_000 })).toHaveLength(1)
    // an expired certificate still loads: the listener could serve it (validate and reload refuse it)
    expect(listenerTlsProblems(c)).toEqual([])
  })

  it("validate and reload checks report the files the listener could not load, one finding each", async () => {
    const c = withTls({ ...pair("default"), sni: [{ ...pair("mismatched") }, { certFile: "/nonexistent.crt", keyFile: certs.files.api.key }] })
    const expected = [
      `sni #1: key-file ${certs.files.mismatched.key} does not match cert-file ${certs.files.mismatched.cert} (hint: the key the certificate was issued for)`,
      "sni #2 cert-file: cannot read /nonexistent.crt: ENOENT: no such file or directory, open '/nonexistent.crt'"
    ]
    expect((await checkCertificates(c)).map((x) => [x.level, x.subject, x.message])).toEqual(expected.map((m) => ["error", `listener "s" tls`, m]))
    expect((await localChecks(c)).map((x) => x.message)).toEqual(expected)
    expect(listenerTlsProblems(c)).toEqual(expected.map((m) => `listener "s" tls ${m}`))
    expect(await checkCertificates(withTls({ ...pair("default"), sni: [{ ...pair("api") }, { ...pair("wildcard") }] }))).toEqual([])
  })

  it("lint: TLS 1.0/1.1, suites without forward secrecy, a ca-file that is never used", () => {
    const rules = (tls: Record<string, unknown>) => lintConfig(withTls({ certFile: "/c", keyFile: "/k", ...tls })).filter((w) => w.subject.endsWith(" tls"))
    expect(rules({})).toEqual([])
    expect(rules({ minVersion: "1.0", maxVersion: "1.2", cipherSuites: ["TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA"], caFile: "/ca" })).toEqual([
      { rule: "weak-tls-version", subject: `listener "s" tls`, message: `min-version "1.0" accepts TLS 1.0, deprecated since 2021 (RFC 8996): use "1.2"` },
      {
        rule: "no-forward-secrecy", subject: `listener "s" tls`,
        message: `cipher-suite "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA" have no forward secrecy (RSA key exchange): prefer ECDHE suites`
      },
      { rule: "unused-ca-file", subject: `listener "s" tls`, message: "ca-file without client-auth #true: client certificates are not requested" }
    ])
    expect(rules({ minVersion: "1.1" }).map((w) => w.rule)).toEqual(["weak-tls-version"])
  })

  it("decoding never reads the files: a config naming missing certificates decodes (the load step reports them)", () => {
    const r = decode(H(`cert-file "/nonexistent/a.crt"\nkey-file "/nonexistent/a.key"`))
    expect(Either.isRight(Either.fromNullable(r.config, () => r.errors))).toBe(true)
    expect(listenerTlsProblems(r.config!)).toHaveLength(2)
  })
})
