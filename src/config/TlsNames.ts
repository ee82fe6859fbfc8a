/**
 * The names a listener's `tls { }` block is written in, and what they mean to
 * node: TLS versions, IANA cipher suite names (mapped to OpenSSL's), and SNI
 * host name patterns (RFC 6125 wildcards). Pure and dependency-free, so the
 * KDL decoder can check them with positions and `src/tls/Certificates.ts` can use
 * the same tables at load time.
 */
import * as net from "node:net"
import type { TlsVersion } from "./Schema.js"

// ---------------------------------------------------------------------------
// Versions

/** Node's name of each TLS version (`tls.SecureVersion`). */
export const nodeTlsVersion = {
  "1.0": "TLSv1",
  "1.1": "TLSv1.1",
  "1.2": "TLSv1.2",
  "1.3": "TLSv1.3"
} as const satisfies Record<TlsVersion, string>

/**
 * A version as written: `"1.2"`, or Sentinel's `"tls1.2"` / `"tlsv1.2"` (any case, so also
 * node's `"TLSv1.2"`). `undefined` for anything else (Sentinel would silently use 1.2).
 */
export const parseTlsVersion = (text: string): TlsVersion | undefined => {
  const m = /^(?:tlsv?)?(1\.[0-3])$/.exec(text.trim().toLowerCase())
  return m === null ? undefined : (m[1] as TlsVersion)
}

export const tlsVersionRank = (v: TlsVersion): number => ["1.0", "1.1", "1.2", "1.3"].indexOf(v)

// ---------------------------------------------------------------------------
// Cipher suites

export interface CipherSuite {
  /** IANA name (what `cipher-suite` takes). */
  readonly iana: string
  /** OpenSSL's name (what node's `ciphers` option takes); TLS 1.3 suites keep the IANA name. */
  readonly openssl: string
  /** "1.3" suites are TLS 1.3 only; "1.2" suites are TLS 1.2 (and earlier) only. */
  readonly version: "1.2" | "1.3"
  /** Ephemeral key exchange (ECDHE/DHE; every TLS 1.3 suite). */
  readonly forwardSecret: boolean
}

const v13 = (iana: string): CipherSuite => ({ iana, openssl: iana, version: "1.3", forwardSecret: true })
const v12 = (iana: string, openssl: string): CipherSuite => ({
  iana, openssl, version: "1.2", forwardSecret: /^TLS_(EC)?DHE_/.test(iana)
})

/** The suites OpenSSL 3 offers for a server certificate (no anonymous, PSK, DSS or export suites). */
export const cipherSuites: ReadonlyArray<CipherSuite> = [
  v13("TLS_AES_128_GCM_SHA256"),
  v13("TLS_AES_256_GCM_SHA384"),
  v13("TLS_CHACHA20_POLY1305_SHA256"),
  v13("TLS_AES_128_CCM_SHA256"),
  v13("TLS_AES_128_CCM_8_SHA256"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
  v12("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
  v12("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
  v12("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
  v12("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ECDHE-ECDSA-AES128-CCM"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_256_CCM", "ECDHE-ECDSA-AES256-CCM"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384"),
  v12("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
  v12("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
  v12("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
  v12("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
  v12("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
  v12("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
  v12("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
  v12("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305"),
  v12("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "DHE-RSA-AES128-SHA256"),
  v12("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "DHE-RSA-AES256-SHA256"),
  v12("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
  v12("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
  v12("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
  v12("TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
  v12("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
  v12("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA")
]

const byIana = new Map(cipherSuites.map((c) => [c.iana, c]))
/** rustls spells the TLS 1.3 suites `TLS13_AES_128_GCM_SHA256`; Sentinel configs may too. */
const cipherAliases: Record<string, string> = Object.fromEntries(
  cipherSuites.filter((c) => c.version === "1.3").map((c) => [c.iana.replace(/^TLS_/, "TLS13_"), c.iana])
)

/** The suite an IANA name (or rustls' TLS13_ spelling) stands for; `undefined` when unknown. */
export const mapCipherSuite = (name: string): CipherSuite | undefined => byIana.get(cipherAliases[name] ?? name)

/** Every accepted `cipher-suite` spelling, for did-you-mean hints. */
export const cipherSuiteNames: ReadonlyArray<string> = [...byIana.keys(), ...Object.keys(cipherAliases)]

/**
 * Node's `ciphers` option for IANA names (in order): OpenSSL names for TLS 1.2 suites, IANA names
 * for TLS 1.3 suites, joined by ':' (node sends the `TLS_` ones to TLS 1.3's ciphersuites).
 * `undefined` for none (node's defaults). Unknown names are dropped (the decoder refuses them).
 */
export const nodeCiphers = (names: ReadonlyArray<string>): string | undefined => {
  const mapped = names.flatMap((n) => {
    const c = mapCipherSuite(n)
    return c === undefined ? [] : [c.openssl]
  })
  return mapped.length === 0 ? undefined : mapped.join(":")
}

// ---------------------------------------------------------------------------
// Server names

/** Lower case, one trailing dot dropped: how names are compared. */
export const normalizeServerName = (name: string): string => {
  const lower = name.toLowerCase()
  return lower.endsWith(".") ? lower.slice(0, -1) : lower
}

const label = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/

/**
 * Why a `hostnames` entry is not usable, or `undefined` when it is: a DNS name (labels of
 * letters, digits, '-', '_'), optionally a wildcard `*.` as the whole left-most label.
 * (`a*.example.com`, `*.*.example.com`, `foo.*.com` are refused.) Checked on the normalized name.
 */
export const serverNamePatternProblem = (pattern: string): string | undefined => {
  const p = normalizeServerName(pattern)
  if (net.isIP(p) !== 0 || /^\[.*\]$/.test(p)) return "is an IP address: clients never send one as SNI (it gets the default certificate)"
  const labels = p.split(".")
  const wildcard = labels[0] === "*"
  if (p.includes("*") && (!wildcard || labels.slice(1).some((l) => l.includes("*")))) {
    return "has a wildcard that is not the whole left-most label: write \"*.example.com\" (it matches exactly one label)"
  }
  const rest = wildcard ? labels.slice(1) : labels
  if (rest.length === 0) return "needs a domain after \"*.\""
  if (p.length > 253 || !rest.every((l) => label.test(l))) return "is not a DNS name (labels of letters, digits, '-' and '_', separated by dots)"
  return undefined
}

/**
 * RFC 6125 matching of one certificate name pattern against a server name: case-insensitive,
 * trailing dot tolerant; `*.example.com` matches exactly one more label (`a.example.com`, not
 * `a.b.example.com`, not `example.com`). Sentinel's `*.` matches any depth; this does not.
 */
export const matchServerName = (pattern: string, name: string): boolean => {
  const p = normalizeServerName(pattern)
  const n = normalizeServerName(name)
  if (!p.startsWith("*.")) return p === n && p !== ""
  const suffix = p.slice(1) // ".example.com"
  if (!n.endsWith(suffix)) return false
  const first = n.slice(0, n.length - suffix.length)
  return first.length > 0 && !first.includes(".")
}

/** TLS 1.2 suites among `names` without forward secrecy (no ECDHE/DHE key exchange). */
export const suitesWithoutForwardSecrecy = (names: ReadonlyArray<string>): Array<string> =>
  names.filter((n) => mapCipherSuite(n)?.forwardSecret === false)
