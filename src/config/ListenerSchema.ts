/** Typed model of `listeners { listener "id" { ... } }`: address, protocol, TLS and SNI, timeouts. */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import { defaulted, NonNegativeDuration, PositiveCount, SocketAddress } from "./SchemaPrimitives.js"

/** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: 1 .. 2^31-1. */
const MaxStreams = PositiveCount.pipe(Schema.filter((n) => n <= 2 ** 31 - 1 || "at most 2147483647"))

/** `"http"` (HTTP/1.1), `"https"` (TLS; ALPN h2 + http/1.1), `"h2"` (cleartext HTTP/2 prior knowledge + HTTP/1.1). */
export const ListenerProtocol = Schema.Literal("http", "https", "h2")
export type ListenerProtocol = typeof ListenerProtocol.Type

/** A TLS protocol version as written in `min-version` / `max-version` (normalized). */
export const TlsVersion = Schema.Literal("1.0", "1.1", "1.2", "1.3")
export type TlsVersion = typeof TlsVersion.Type

/** `sni { hostnames ... | priority-hostnames ...; cert-file; key-file }`: one more certificate, chosen by server name. */
export const SniCertificateConfig = Schema.Struct({
  /**
   * `hostnames` (priority #false): exactly the names this certificate serves (lower-case, no
   * trailing dot; `*.x` = one label). `priority-hostnames` (priority #true): the certificate serves
   * every DNS name of its SANs (CN when it has none), and wins these names when another `sni` block
   * also claims them. Empty (neither written): the certificate's SANs, without priority.
   */
  hostnames: defaulted(Schema.Array(Schema.NonEmptyString), () => []),
  priority: defaulted(Schema.Boolean, () => false),
  /** `cert-file`: PEM certificate (chain). Required. */
  certFile: Schema.NonEmptyString,
  /** `key-file`: PEM private key of `cert-file`. Required. */
  keyFile: Schema.NonEmptyString
}).pipe(Schema.filter((s) => !s.priority || s.hostnames.length > 0 || "priority-hostnames needs at least one name"))
export type SniCertificateConfig = typeof SniCertificateConfig.Type

const tlsVersionRank = (v: TlsVersion): number => TlsVersion.literals.indexOf(v)

/** A listener's `tls { ... }` (Sentinel's keys). Files are read by `src/tls/Certificates.ts`, not by the decoder. */
export const ListenerTlsConfig = Schema.Struct({
  /** `cert-file`: PEM certificate (chain) served by default (no SNI, or a name no `sni` block has). Required. */
  certFile: Schema.NonEmptyString,
  /** `key-file`: PEM private key of `cert-file`. Required. */
  keyFile: Schema.NonEmptyString,
  /** `ca-file`: PEM CAs client certificates are verified against (mTLS). Default none. */
  caFile: Schema.optional(Schema.NonEmptyString),
  /** `client-auth`: require a client certificate signed by `ca-file`. Default #false. */
  clientAuth: defaulted(Schema.Boolean, () => false),
  /** `min-version`: lowest TLS version accepted. Default "1.2". */
  minVersion: defaulted(TlsVersion, () => "1.2" as const),
  /** `max-version`: highest TLS version accepted. Default "1.3". */
  maxVersion: defaulted(TlsVersion, () => "1.3" as const),
  /** `cipher-suite` (repeated): IANA suite names, in preference order. Default none = node's defaults. */
  cipherSuites: defaulted(Schema.Array(Schema.NonEmptyString), () => []),
  /** `session-resumption`: session tickets (and TLS 1.3 PSK resumption). Default #true. */
  sessionResumption: defaulted(Schema.Boolean, () => true),
  /**
   * `ocsp-stapling`: staple a cached OCSP response, fetched from the certificate's responder
   * (its issuer must follow it in `cert-file`), to handshakes that ask (server/Ocsp.ts). Default
   * #false (Sentinel's is #true: most public CAs have stopped running OCSP responders).
   */
  ocspStapling: defaulted(Schema.Boolean, () => false),
  /** `sni { ... }` (repeated): certificates chosen by server name. Default none. */
  sni: defaulted(Schema.Array(SniCertificateConfig), () => [])
}).pipe(
  Schema.filter((t) => !t.clientAuth || t.caFile !== undefined || "client-auth #true needs a ca-file"),
  Schema.filter((t) => tlsVersionRank(t.minVersion) <= tlsVersionRank(t.maxVersion) || "min-version must not exceed max-version")
)
export type ListenerTlsConfig = typeof ListenerTlsConfig.Type

export const ListenerConfig = Schema.Struct({
  /** Unique listener id. Required. */
  id: Schema.NonEmptyString,
  /** `address "host:port"`. Required. */
  address: SocketAddress,
  /** `protocol`: `"http"`, `"https"` (needs `tls`) or `"h2"` (cleartext; no `tls`). Default `"http"`. */
  protocol: defaulted(ListenerProtocol, () => "http" as const),
  /** `tls { ... }`: certificates and TLS settings; required by (and only allowed on) `protocol "https"`. */
  tls: Schema.optional(ListenerTlsConfig),
  /** `max-concurrent-streams`: HTTP/2 streams per connection (`https`, `h2`). Default 100. */
  maxConcurrentStreams: defaulted(MaxStreams, () => 100),
  /**
   * `max-early-resets`: HTTP/2 streams of one connection that the client may reset before their
   * response started (rapid reset, CVE-2023-44487); past it, when they are most of its streams,
   * the connection gets GOAWAY ENHANCE_YOUR_CALM. Default 100.
   */
  maxEarlyResets: defaulted(PositiveCount, () => 100),
  /** `request-timeout-secs`: the whole request (head and body) must arrive within this (408). Default 60s. */
  requestTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(60)),
  /** `header-timeout-secs`: the request head must arrive within this (408; slowloris). Default 10s. */
  headerTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(10)),
  /** `body-idle-timeout-secs`: longest silence between request body chunks (408; slow POST). Default 30s. */
  bodyIdleTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(30)),
  /** `write-timeout-secs`: longest a response write may wait on a client that does not read (slow read). Default 30s. */
  writeTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(30)),
  /** `keepalive-timeout-secs`: idle time between requests on a connection. Default 75s. */
  keepaliveTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(75)),
  /** `keepalive-max-requests`: requests per connection before closing it. Default: unlimited. */
  keepaliveMaxRequests: Schema.optional(PositiveCount),
  /** `default-route`: id of the route used when none matches. Default: none (404). */
  defaultRoute: Schema.optional(Schema.NonEmptyString),
  /** `admin`: this listener also serves admin-only builtins (`builtin-handler "config"`). Default #false. */
  admin: defaulted(Schema.Boolean, () => false),
  /**
   * `trusted-proxies "10.0.0.0/8" "::1"`: peers whose X-Forwarded-* / Forwarded / X-Real-IP are
   * believed (CIDRs or addresses). Default none: those headers are replaced by what the proxy saw.
   */
  trustedProxies: defaulted(Schema.Array(Schema.String), () => [])
}).pipe(
  Schema.filter((l) =>
    l.protocol === "https"
      ? l.tls !== undefined || `listener "${l.id}": protocol "https" needs a tls block`
      : l.tls === undefined || `listener "${l.id}": a tls block needs protocol "https" (got "${l.protocol}")`
  )
)
export type ListenerConfig = typeof ListenerConfig.Type
