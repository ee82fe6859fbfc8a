/**
 * The typed configuration model the dataplane consumes.
 *
 * `Schema.Type` of each schema below is exactly the contract in the brief's
 * `config-model.ts`. The `Encoded` side is the *input* shape: every field
 * with a default is optional there, so `makeConfig({...partial})` and the
 * KDL decoder both produce a full model by running the same schema (one
 * place for defaults). Durations are `Duration.Duration` on both sides;
 * sizes are plain numbers of bytes.
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

import { AgentConfig, FailureMode } from "./AgentSchema.js"
import { FilterConfig, RateLimitsConfig } from "./FilterSchema.js"
import { CacheStoreConfig, RouteCacheConfig } from "./CacheSchema.js"
import {
  Count, defaulted, defaultedStruct, NonNegativeDuration, Port, PositiveCount, Ratio, SafeInt
} from "./SchemaPrimitives.js"
import {
  CircuitBreakerConfig, DnsConfig, HashKey, HealthCheckConfig, HttpVersionConfig, LoadBalancingAlgorithm,
  PassiveHealthConfig, RetryBudgetConfig, RetryPolicyConfig, StickyConfig, UpstreamTlsConfig
} from "./UpstreamSchema.js"

export { Count, NonNegativeDuration, Port, PositiveCount } from "./SchemaPrimitives.js"
export * from "./UpstreamSchema.js"
export * from "./FilterSchema.js"
export * from "./AgentSchema.js"
export * from "./CacheSchema.js"

// ---------------------------------------------------------------------------
// Addresses

/** Splits `"host:port"` / `"[v6]:port"`; `undefined` when malformed. */
export const parseHostPort = (text: string): { host: string; port: number } | undefined => {
  // no controls or format characters in a host name: it is printed and used as a metric label
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s\p{Cc}\p{Cf}:[\]/]+)):(\d{1,5})$/u.exec(text)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return { host: m[1] ?? m[2], port }
}

/** Formats host and port back into `host:port` (brackets for IPv6). */
export const formatHostPort = (host: string, port: number): string =>
  host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`

const HostPortStruct = Schema.Struct({ host: Schema.NonEmptyString, port: Port })

/** A socket address; input may also be the string `"0.0.0.0:8080"` / `"[::1]:80"`. */
export const SocketAddress = Schema.Union(
  HostPortStruct,
  Schema.transformOrFail(Schema.String, HostPortStruct, {
    strict: true,
    decode: (s, _, ast) => {
      const hp = parseHostPort(s)
      return hp === undefined
        ? ParseResult.fail(new ParseResult.Type(ast, s, `expected "host:port", got ${JSON.stringify(s)}`))
        : ParseResult.succeed(hp)
    },
    encode: (hp) => ParseResult.succeed(formatHostPort(hp.host, hp.port))
  })
)

// ---------------------------------------------------------------------------
// system

export const SystemConfig = Schema.Struct({
  /** `worker-threads`: worker processes; 1 = single process, 0 = one per core. Default 1. */
  workerThreads: defaulted(Count, () => 1),
  /** `max-connections`: total downstream connections. Default 10000. */
  maxConnections: defaulted(PositiveCount, () => 10000),
  /** `graceful-shutdown-timeout-secs`: drain deadline on shutdown. Default 30s. */
  gracefulShutdownTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(30)),
  /** `trace-id-format`: `"tinyflake"` (default) or `"uuid"`. */
  traceIdFormat: defaulted(Schema.Literal("tinyflake", "uuid"), () => "tinyflake" as const),
  /** `auto-reload`: watch the config file and reload on change. Default `#false`. */
  autoReload: defaulted(Schema.Boolean, () => false),
  /** `route-cache-size`: entries in the route-match cache. Default 1000. */
  routeCacheSize: defaulted(Count, () => 1000),
  /** `pid-file`: path to write the primary's pid to. Default: none. */
  pidFile: Schema.optional(Schema.String),
  /**
   * `user`: user name (or numeric uid) the process switches to after binding its listeners,
   * as Sentinel's `system { user }`. Default: none (keep the user it was started as).
   */
  user: Schema.optional(Schema.NonEmptyString),
  /** `group`: group name (or numeric gid) switched to together with `user`. Default: none (the user's, or keep the current). */
  group: Schema.optional(Schema.NonEmptyString),
  /** `working-directory`: directory the process changes to at startup. Default: none (stay where started). */
  workingDirectory: Schema.optional(Schema.NonEmptyString),
  /** `dns { refresh-secs; timeout-secs; max-stale-secs; max-hosts }`: the resolver cache of upstream host names. */
  dns: defaultedStruct(DnsConfig)
})
export type SystemConfig = typeof SystemConfig.Type

// ---------------------------------------------------------------------------
// listeners

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

// ---------------------------------------------------------------------------
// upstreams

const TargetStruct = Schema.Struct({
  address: Schema.String,
  host: Schema.NonEmptyString,
  port: Port,
  weight: PositiveCount
})

/** A target; input needs only `address` (host/port are derived) and optionally `weight` (default 1). */
export const TargetConfig = Schema.transformOrFail(
  Schema.Struct({
    address: Schema.String,
    weight: defaulted(PositiveCount, () => 1),
    host: Schema.optional(Schema.String),
    port: Schema.optional(Port)
  }),
  TargetStruct,
  {
    strict: true,
    decode: (t, _, ast) => {
      const hp = parseHostPort(t.address)
      return hp === undefined
        ? ParseResult.fail(new ParseResult.Type(ast, t, `expected target address "host:port", got ${JSON.stringify(t.address)}`))
        : ParseResult.succeed({ address: t.address, host: hp.host, port: hp.port, weight: t.weight })
    },
    encode: (t) => ParseResult.succeed(t)
  }
)
export type TargetConfig = typeof TargetConfig.Type

export const UpstreamTimeouts = Schema.Struct({
  /** `connect` (or `connect-secs`): TCP/TLS connect. Default 10s. */
  connect: defaulted(NonNegativeDuration, () => Duration.seconds(10)),
  /**
   * `request` (or `request-secs`): total per attempt, from dispatch to the end of the response
   * body; time the response waits on a client that does not read is not counted. Fires as
   * 504 `timeout_request` before the response head, else aborts the client connection;
   * retried like the other timeouts. 0 = none. Default 60s.
   */
  request: defaulted(NonNegativeDuration, () => Duration.seconds(60)),
  /**
   * `read` (or `read-secs`): response headers (counted from dispatch, or from the end of a
   * streamed upload) and body idle. 0 = none. Default 30s.
   */
  read: defaulted(NonNegativeDuration, () => Duration.seconds(30)),
  /**
   * `write` (or `write-secs`): longest a streamed request body may make no progress because
   * the upstream does not take it (504 `timeout_write`). A slow-uploading client does not trip
   * it (the listener's body timeouts bound that); a buffered body is handed to the socket at
   * once and covered by `read`. 0 = none. Default 30s.
   */
  write: defaulted(NonNegativeDuration, () => Duration.seconds(30))
})

export const ConnectionPoolConfig = Schema.Struct({
  /** `max-connections`: per target. Default 100. */
  maxConnections: defaulted(PositiveCount, () => 100),
  /**
   * `max-idle`: idle keep-alive connections kept per target. Beyond this many, a connection is
   * closed once idle for 1 s (a grace so that traffic above `max-idle` concurrency does not
   * churn connections); the ones undici reuses first are kept. 0 = every connection closes
   * about 1 s after its last request. No effect when >= `max-connections`. Default 20.
   */
  maxIdle: defaulted(Count, () => 20),
  /** `idle-timeout` (or `idle-timeout-secs`): close idle connections after. Default 60s. */
  idleTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(60)),
  /** `max-lifetime` (or `max-lifetime-secs`): recycle connections after. Default: none. */
  maxLifetime: Schema.optional(NonNegativeDuration),
  /**
   * `max-pending-requests`: requests that may wait for a connection to one target when all
   * `max-connections` are busy; beyond it 503 `upstream_queue_full` (with `Retry-After`) or
   * another target. 0 = no waiting. Default 1000.
   */
  maxPendingRequests: defaulted(Count, () => 1000),
  /**
   * `pending-timeout` (or `pending-timeout-secs`): longest wait for a connection, then 503
   * `upstream_queue_timeout` (or another target). 0 = no deadline. Default 5s.
   */
  pendingTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(5)),
  /**
   * `max-client-share`: share (0 < share <= 1) of a target's `max-connections` that the requests
   * of one client address may hold at once; its further requests wait (bounded as above) while
   * other clients use the free connections. 1 = no per-client bound. Default 0.5.
   */
  maxClientShare: defaulted(Ratio.pipe(Schema.filter((n) => n > 0 || "must be greater than 0")), () => 0.5)
})

export const UpstreamConfig = Schema.Struct({
  /** Unique upstream id. Required. */
  id: Schema.NonEmptyString,
  /** `target "host:port" weight=N` (repeatable) or `targets { target {address; weight} }`. At least one. */
  targets: Schema.Array(TargetConfig).pipe(Schema.minItems(1)),
  /** `load-balancing "<algorithm>"`. Default `"round_robin"`. */
  loadBalancing: defaulted(LoadBalancingAlgorithm, () => "round_robin" as const),
  /** `load-balancing "consistent_hash"|"maglev" { hash-key "..." }`. Default client IP. */
  hashKey: defaulted(HashKey, () => ({ source: "client-ip" as const })),
  /** `load-balancing "consistent_hash" { virtual-nodes N }`: ring points per unit of weight. Default 160. */
  virtualNodes: defaulted(PositiveCount, () => 160),
  /** `load-balancing "maglev" { table-size N }`: lookup table size (a prime at or above). Default 65537. */
  maglevTableSize: defaulted(PositiveCount.pipe(Schema.filter((n) => n <= 1_048_576 || "at most 1048576")), () => 65537),
  /** `load-balancing "sticky" { ... }`: cookie options (used only by "sticky"). */
  sticky: defaultedStruct(StickyConfig),
  /** `timeouts { connect; request; read; write }` in seconds. */
  timeouts: defaultedStruct(UpstreamTimeouts),
  /** `connection-pool { max-connections; max-idle; idle-timeout; max-lifetime }`. */
  connectionPool: defaultedStruct(ConnectionPoolConfig),
  /** `health-check { ... }`: active probes. Default: none (only passive health). */
  healthCheck: Schema.optional(HealthCheckConfig),
  /** `passive-health { ... }`: ejection on observed failures. Always on. */
  passiveHealth: defaultedStruct(PassiveHealthConfig),
  /** `circuit-breaker { ... }`: one breaker per target, always on (defaults without the block). */
  circuitBreaker: defaultedStruct(CircuitBreakerConfig),
  /** `retry-budget { ... }`: bounds retries to this upstream. */
  retryBudget: defaultedStruct(RetryBudgetConfig),
  /** `tls { ... }`: TLS to the targets. Default: none (plaintext). Not applied yet. */
  tls: Schema.optional(UpstreamTlsConfig),
  /** `http-version { ... }`. Not applied yet. */
  httpVersion: defaultedStruct(HttpVersionConfig)
})
export type UpstreamConfig = typeof UpstreamConfig.Type

// ---------------------------------------------------------------------------
// routes

const compiles = (pattern: string): true | string => {
  try {
    new RegExp(pattern)
    return true
  } catch (e) {
    return `invalid regular expression: ${(e as Error).message}`
  }
}

export const RouteMatch = Schema.Union(
  /** `path "/exact"` */
  Schema.TaggedStruct("Path", { path: Schema.String }),
  /** `path-prefix "/api/"`: segment-boundary prefix; `/` matches all. */
  Schema.TaggedStruct("PathPrefix", { prefix: Schema.String }),
  /** `path-regex "^/v[0-9]+/"`: a JavaScript RegExp. */
  Schema.TaggedStruct("PathRegex", { pattern: Schema.String.pipe(Schema.filter(compiles)) }),
  /** `host "api.example.com"` (also `*.example.com`). */
  Schema.TaggedStruct("Host", { host: Schema.NonEmptyString }),
  /** `header NAME [VALUE]`: present, or equal to VALUE. */
  Schema.TaggedStruct("Header", { name: Schema.NonEmptyString, value: Schema.optional(Schema.String) }),
  /** `method GET [POST ...]`: any of (upper-cased). */
  Schema.TaggedStruct("Method", { methods: Schema.Array(Schema.Uppercase).pipe(Schema.minItems(1)) }),
  /** `query-param NAME [VALUE]`: present, or equal to VALUE. */
  Schema.TaggedStruct("QueryParam", { name: Schema.NonEmptyString, value: Schema.optional(Schema.String) })
)
export type RouteMatch = typeof RouteMatch.Type

const Pair = Schema.Tuple(Schema.String, Schema.String)

export const HeaderOps = Schema.Struct({
  /** `rename { "Old" "New" }`: applied first. Default none. */
  rename: defaulted(Schema.Array(Pair), () => []),
  /** `set { "Name" "value" }`: replace. Default none. */
  set: defaulted(Schema.Array(Pair), () => []),
  /** `add { "Name" "value" }`: append. Default none. */
  add: defaulted(Schema.Array(Pair), () => []),
  /** `remove "A" "B"`. Default none. */
  remove: defaulted(Schema.Array(Schema.String), () => [])
})
export type HeaderOps = typeof HeaderOps.Type

export const BuiltinHandler = Schema.Literal("status", "health", "metrics", "not-found", "config", "upstreams", "cache-purge", "cache-stats")
export type BuiltinHandler = typeof BuiltinHandler.Type

/** Named priorities (`priority "high"`). */
export const namedPriorities = { low: 10, normal: 50, high: 100, critical: 1000 } as const

export const RoutePolicies = Schema.Struct({
  /** `request-headers {…}`: edits to the request sent upstream. */
  requestHeaders: defaultedStruct(HeaderOps),
  /** `response-headers {…}`: edits to the response sent to the client. */
  responseHeaders: defaultedStruct(HeaderOps),
  /** `timeout-secs`: whole-request deadline for this route. Default: none. */
  timeout: Schema.optional(NonNegativeDuration),
  /** `failure-mode "open"|"closed"`: agent failure policy for this route's agent filters that set none. Default: the agent's. */
  failureMode: Schema.optional(FailureMode),
  /**
   * `max-body-size` (or `max-body-size-bytes`): request body bytes on this route, instead of
   * `limits { max-body-size }` (larger or smaller): 413, before any of a declared body is read.
   * Default: the limits' value.
   */
  maxBodySize: Schema.optional(Count),
  /**
   * `buffer-requests`: every request body (declared, chunked or HTTP/2) is read whole, up to
   * the route's max-body-size, before it goes upstream (nginx's `proxy_request_buffering`, for
   * all bodies): the upstream gets it in one piece and a failed attempt can replay it.
   * Default #false (only declared bodies up to `limits { request-buffer-size }`).
   */
  bufferRequests: defaulted(Schema.Boolean, () => false),
  /**
   * `buffer-responses`: the upstream's response is read whole, up to `limits {
   * response-buffer-size }`, before the client gets its head: it then goes out with a
   * Content-Length, and an upstream that fails mid-body is answered with a clean 502 instead of
   * a cut response. A larger response streams once the bound is reached. Default #false.
   */
  bufferResponses: defaulted(Schema.Boolean, () => false)
})

/** Route `static-files { ... }` (src/handlers/StaticFiles.ts `StaticFilesConfig`). */
export const StaticFilesConfig = Schema.Struct({
  /** `root`: directory served. Required. */
  root: Schema.NonEmptyString,
  /** `index`: file served for a directory. Default "index.html". */
  index: defaulted(Schema.String, () => "index.html"),
  /** `directory-listing`: HTML listing of a directory without index. Default #false. */
  directoryListing: defaulted(Schema.Boolean, () => false),
  /** `cache-control`: Cache-Control of file responses. Default "public, max-age=3600". */
  cacheControl: defaulted(Schema.String, () => "public, max-age=3600"),
  /** `compress`: serve .br/.gz siblings or compress on the fly. Default #true. */
  compress: defaulted(Schema.Boolean, () => true),
  /** `compress-min-size`: smallest file compressed on the fly. Default 1024. */
  compressMinSize: defaulted(Count, () => 1024),
  /** `fallback`: URL path served when the file does not exist (SPA). Default none. */
  fallback: defaulted(Schema.NullOr(Schema.String), () => null),
  /** `allow-dotfiles`: serve names starting with "." (.well-known always allowed). Default #false. */
  allowDotfiles: defaulted(Schema.Boolean, () => false)
})
export type StaticFilesConfig = typeof StaticFilesConfig.Type

export const RouteConfig = Schema.Struct({
  /** Unique route id. Required. */
  id: Schema.NonEmptyString,
  /** `priority`: `low` 10, `normal` 50 (default), `high` 100, `critical` 1000, or an integer. */
  priority: defaulted(SafeInt, () => 50),
  /** `matches {…}`: all conditions AND (several `host` OR), in document order. Default: match all. */
  matches: defaulted(Schema.Array(RouteMatch), () => []),
  /** `upstream "id"`: exactly one of upstream / builtin-handler / static-files. */
  upstream: Schema.optional(Schema.NonEmptyString),
  /** `builtin-handler "status"|"health"|…`. */
  builtinHandler: Schema.optional(BuiltinHandler),
  /** `static-files { root; ... }`. */
  staticFiles: Schema.optional(StaticFilesConfig),
  /** `filters "a" "b"`: filter ids applied in this order. Default none. */
  filters: defaulted(Schema.Array(Schema.NonEmptyString), () => []),
  /** `retry-policy { ... }`. Default: none (one attempt, as Retry.ts `noRetryPolicy`). */
  retryPolicy: Schema.optional(RetryPolicyConfig),
  /** `policies { request-headers; response-headers; timeout-secs; failure-mode; max-body-size; buffer-requests }`. */
  policies: defaultedStruct(RoutePolicies),
  /**
   * `circuit-breaker { ... }` on a route (the upstream's keys): one breaker around the route's
   * upstream calls as a whole, besides the per-target ones. Open: 503 `route_circuit_open`
   * with `Retry-After`. A failure is an upstream fault or a 5xx; the client's side never counts.
   * Default: none.
   */
  circuitBreaker: Schema.optional(CircuitBreakerConfig),
  /**
   * `websocket #true`: WebSocket handshakes on this route are tunnelled to its upstream (RFC 6455;
   * HTTP/1.1 upgrade). Without it a handshake is refused with 403. Default #false.
   */
  websocket: defaulted(Schema.Boolean, () => false),
  /**
   * `websocket-inspection #true` (with `websocket`): every frame goes to the route's agents that
   * subscribe to `websocket_frame`, and `Sec-WebSocket-Extensions` is removed from the upstream
   * handshake (no compression can hide a payload from them). Default #false.
   */
  websocketInspection: defaulted(Schema.Boolean, () => false),
  /** `cache { enabled #true; ... }`: responses of this route are cached (src/cache/). Default: off. */
  cache: Schema.optional(RouteCacheConfig)
}).pipe(
  Schema.filter((r) =>
    [r.upstream, r.builtinHandler, r.staticFiles].filter((x) => x !== undefined).length === 1 ||
    `route "${r.id}" needs exactly one of upstream, builtinHandler or staticFiles`
  ),
  Schema.filter((r) => (r.websocket && r.upstream === undefined ? `route "${r.id}": \`websocket\` needs an \`upstream\`` : true)),
  Schema.filter((r) =>
    r.websocketInspection && !r.websocket ? `route "${r.id}": \`websocket-inspection\` needs \`websocket #true\`` : true
  )
)
export type RouteConfig = typeof RouteConfig.Type

// ---------------------------------------------------------------------------
// limits

export const LimitsConfig = Schema.Struct({
  /** `max-header-size` (or `max-header-size-bytes`): total request header bytes. Default 8192. */
  maxHeaderSize: defaulted(PositiveCount, () => 8192),
  /** `max-header-count`: request headers. Default 100. */
  maxHeaderCount: defaulted(PositiveCount, () => 100),
  /** `max-body-size` (or `max-body-size-bytes`): request body bytes. Default 10 MiB. */
  maxBodySize: defaulted(Count, () => 10 * 1024 * 1024),
  /**
   * `request-buffer-size`: a request body with a `Content-Length` up to this is read whole
   * before it goes upstream (nginx's `proxy_request_buffering`), which also lets a failed
   * attempt replay it on another target; larger and chunked bodies stream. 0 = stream every
   * body; a route whose `retry-policy` allows more than one attempt buffers at least 64 KiB.
   * Default 64 KiB.
   */
  requestBufferSize: defaulted(Count, () => 64 * 1024),
  /**
   * `response-buffer-size`: bytes of a response held in memory for a client that reads slower
   * than the upstream sends, before the upstream is paused. A response up to this size frees
   * its upstream connection however slow the client. Default 256 KiB.
   */
  responseBufferSize: defaulted(Count, () => 256 * 1024),
  /**
   * `slow-reader-timeout-secs`: longest time a response may hold its upstream connection paused
   * while the client takes none of what is buffered for it (the buffer does not empty); then the
   * upstream connection is released, the rest of the response dropped and the client connection
   * closed (`slow_reader`). 0 = hold for as long as the listener's `write-timeout-secs` allows.
   * Default 10s.
   */
  slowReaderTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(10)),
  /** `max-uri-length`: request-target bytes. Default 8192. */
  maxUriLength: defaulted(PositiveCount, () => 8192),
  /** `max-connections-per-client`: concurrent connections per client IP. Default 100. */
  maxConnectionsPerClient: defaulted(PositiveCount, () => 100),
  /** `max-total-connections`: concurrent downstream connections. Default 10000. */
  maxTotalConnections: defaulted(PositiveCount, () => 10000),
  /** `max-in-flight-requests`: requests being processed at once. Default 10000. */
  maxInFlightRequests: defaulted(PositiveCount, () => 10000),
  /** `in-flight-queue-size`: requests waiting for an in-flight slot; beyond it 503. 0 = no queue. Default 1000. */
  inFlightQueueSize: defaulted(Count, () => 1000),
  /** `in-flight-queue-timeout-secs`: longest wait in that queue, then 503. Default 5s. */
  inFlightQueueTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(5)),
  /** `max-header-line-size`: bytes of one header line (431). Default 8192. */
  maxHeaderLineSize: defaulted(PositiveCount, () => 8192),
  /** `underscores-in-headers "drop"|"reject"|"allow"`: request header names with `_`. Default "drop" (nginx). */
  underscoresInHeaders: defaulted(Schema.Literal("drop", "reject", "allow"), () => "drop" as const),
  /** `allow-trace`: TRACE is answered 405 unless #true. Default #false. */
  allowTrace: defaulted(Schema.Boolean, () => false),
  /** `merge-slashes`: collapse `//` in paths before routing. Default #true. */
  mergeSlashes: defaulted(Schema.Boolean, () => true),
  /** `normalize-path`: decode unreserved escapes, remove `.`/`..` segments. Default #true. */
  normalizePath: defaulted(Schema.Boolean, () => true),
  /** `escaped-slashes "keep"|"reject"`: `%2F` in a path segment. Default "keep". */
  escapedSlashes: defaulted(Schema.Literal("keep", "reject"), () => "keep" as const),
  /** `websocket-max-frame-size`: payload bytes of one WebSocket frame; a larger one closes the tunnel with 1009. Default 1 MiB (Sentinel's). */
  websocketMaxFrameSize: defaulted(PositiveCount, () => 1024 * 1024),
  /**
   * `websocket-max-message-size`: payload bytes of one (fragmented) message on an inspected
   * tunnel; past it 1009. 0 = no bound. Default 16 MiB.
   */
  websocketMaxMessageSize: defaulted(Count, () => 16 * 1024 * 1024),
  /** `websocket-idle-timeout-secs`: a tunnel with no byte either way for this long is closed (1001). 0 = never. Default 300s. */
  websocketIdleTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(300)),
  /** `websocket-max-lifetime-secs`: a tunnel is closed (1001) this long after it opened. 0 = never (the default). */
  websocketMaxLifetime: defaulted(NonNegativeDuration, () => Duration.zero),
  /**
   * `max-websocket-tunnels`: WebSocket tunnels (and handshakes under way) at once; past it a
   * handshake gets 503. Each also holds a connection of `max-total-connections`. Default 10000.
   */
  maxWebsocketTunnels: defaulted(PositiveCount, () => 10000),
  /** `max-websocket-tunnels-per-client`: the same per client IP. Default 100. */
  maxWebsocketTunnelsPerClient: defaulted(PositiveCount, () => 100)
})
export type LimitsConfig = typeof LimitsConfig.Type

// ---------------------------------------------------------------------------
// observability

export const AccessLogConfig = Schema.Struct({
  /** `enabled`. Default `#true`. */
  enabled: defaulted(Schema.Boolean, () => true),
  /** `file`: path; absent or `"-"` = stdout. */
  file: Schema.optional(Schema.String),
  /** `format`: `"json"` (default) or `"combined"`. */
  format: defaulted(Schema.Literal("json", "combined"), () => "json" as const),
  /** `buffer-size`: entries buffered before dropping. Default 8192. */
  bufferSize: defaulted(PositiveCount, () => 8192),
  /**
   * `flush-interval-ms`: how long lines may wait to be written together (nginx's `flush=`,
   * Envoy's `file_flush_interval`); 256 KiB queued go out at once. 0 = write as soon as the
   * previous write finished (one write per request at low concurrency). Default 50.
   */
  flushIntervalMs: defaulted(Count, () => 50)
})
export type AccessLogConfig = typeof AccessLogConfig.Type

const LogLevel = Schema.Literal("trace", "debug", "info", "warn", "error")

export const ErrorLogConfig = Schema.Struct({
  /** `enabled`. Default `#true`. */
  enabled: defaulted(Schema.Boolean, () => true),
  /** `file`: path; absent or `"-"` = stderr. */
  file: Schema.optional(Schema.String),
  /** `level`: lowest level written. Default `"warn"`. */
  level: defaulted(LogLevel, () => "warn" as const),
  /** `buffer-size`: lines buffered before dropping. Default 8192. */
  bufferSize: defaulted(PositiveCount, () => 8192)
})
export type ErrorLogConfig = typeof ErrorLogConfig.Type

export const AuditLogConfig = Schema.Struct({
  /** `enabled`. Default `#true`. */
  enabled: defaulted(Schema.Boolean, () => true),
  /** `file`: path; absent or `"-"` = stdout. */
  file: Schema.optional(Schema.String),
  /** `buffer-size`: entries buffered before dropping. Default 8192. */
  bufferSize: defaulted(PositiveCount, () => 8192),
  /** `log-blocked`: an entry for every blocked request. Default `#true`. */
  logBlocked: defaulted(Schema.Boolean, () => true),
  /** `log-agent-decisions`: an entry for every non-allow agent decision. Default `#true`. */
  logAgentDecisions: defaulted(Schema.Boolean, () => true)
})
export type AuditLogConfig = typeof AuditLogConfig.Type

export const LoggingConfig = Schema.Struct({
  /** `level`: `trace|debug|info|warn|error`. Default `"info"`. */
  level: defaulted(LogLevel, () => "info" as const),
  /** `format`: `"json"` (default) or `"pretty"`. */
  format: defaulted(Schema.Literal("json", "pretty"), () => "json" as const),
  /** `access-log {…}`. */
  accessLog: defaultedStruct(AccessLogConfig),
  /** `error-log {…}`. */
  errorLog: defaultedStruct(ErrorLogConfig),
  /** `audit-log {…}`. */
  auditLog: defaultedStruct(AuditLogConfig)
})

export const MetricsConfig = Schema.Struct({
  /** `enabled`: serve metrics on a dedicated listener. Default `#false` (routes with `builtin-handler "metrics"` work regardless). */
  enabled: defaulted(Schema.Boolean, () => false),
  /** `address`: where the metrics listener binds. Default "127.0.0.1:9090". */
  address: defaulted(SocketAddress, () => ({ host: "127.0.0.1", port: 9090 })),
  /** `path`. Default "/metrics". */
  path: defaulted(Schema.String, () => "/metrics"),
  /** `max-series-per-metric`: label sets kept per metric before new ones go to "other". Default 2000. */
  maxSeriesPerMetric: defaulted(PositiveCount, () => 2000)
})
export type MetricsConfig = typeof MetricsConfig.Type

/** `tracing { backend "otlp" { endpoint }; ... }` (src/observability/Tracing.ts `TracingConfig`). */
export const TracingConfig = Schema.Struct({
  /** `backend "otlp" { endpoint "http://collector:4318" }` (OTLP/HTTP). Required. */
  endpoint: Schema.NonEmptyString,
  /** `sampling-rate`: fraction of requests traced, 0..1. Default 0.01. */
  samplingRate: defaulted(Ratio, () => 0.01),
  /** `service-name`. Default "sentinel". */
  serviceName: defaulted(Schema.NonEmptyString, () => "sentinel"),
  /** `parent-based`: follow an incoming traceparent's sampled flag. Default `#true`. */
  parentBased: defaulted(Schema.Boolean, () => true),
  /** `max-queue-size`: spans buffered for export before dropping. Default 2048. */
  maxQueueSize: defaulted(PositiveCount, () => 2048),
  /** `max-export-batch-size`: spans per export request. Default 512. */
  maxExportBatchSize: defaulted(PositiveCount, () => 512),
  /** `export-timeout-secs` (ms here): deadline of one export. Default 10 s. */
  exportTimeoutMs: defaulted(PositiveCount, () => 10_000)
}).pipe(Schema.filter((t) => t.maxExportBatchSize <= t.maxQueueSize || "max-export-batch-size must not exceed max-queue-size"))
export type TracingConfig = typeof TracingConfig.Type

export const ObservabilityConfig = Schema.Struct({
  /** `logging {…}`. */
  logging: defaultedStruct(LoggingConfig),
  /** `metrics {…}`. */
  metrics: defaultedStruct(MetricsConfig),
  /** `tracing {…}`. Default: none (tracing off). */
  tracing: Schema.optional(TracingConfig)
})
export type ObservabilityConfig = typeof ObservabilityConfig.Type

// ---------------------------------------------------------------------------
// the whole config

/** The schema version this build implements. */
export const currentSchemaVersion = "1.0"

const duplicates = (ids: ReadonlyArray<string>): Array<string> => {
  const seen = new Set<string>()
  const dup = new Set<string>()
  for (const id of ids) (seen.has(id) ? dup : seen).add(id)
  return [...dup]
}

/** Cross-field checks (ids unique, references resolve); the KDL decoder reports the same with locations. */
const crossCheck = (c: {
  readonly listeners: ReadonlyArray<ListenerConfig>
  readonly upstreams: ReadonlyArray<UpstreamConfig>
  readonly routes: ReadonlyArray<RouteConfig>
  readonly filters: ReadonlyArray<FilterConfig>
  readonly agents: ReadonlyArray<AgentConfig>
}): Array<string> => {
  const problems: Array<string> = []
  for (const [kind, items] of [
    ["listener", c.listeners], ["upstream", c.upstreams], ["route", c.routes], ["filter", c.filters], ["agent", c.agents]
  ] as const) {
    for (const id of duplicates(items.map((i) => i.id))) problems.push(`duplicate ${kind} id "${id}"`)
  }
  const filterIds = new Set(c.filters.map((f) => f.id))
  const agentIds = new Set(c.agents.map((a) => a.id))
  for (const r of c.routes) {
    for (const f of r.filters) if (!filterIds.has(f)) problems.push(`route "${r.id}" references unknown filter "${f}"`)
    for (const f of duplicates(r.filters)) problems.push(`route "${r.id}" lists filter "${f}" twice`)
  }
  for (const f of c.filters) {
    if (f.type === "agent" && !agentIds.has(f.agent)) problems.push(`filter "${f.id}" references unknown agent "${f.agent}"`)
  }
  if (c.routes.some((r) => r.builtinHandler === "config") && !c.listeners.some((l) => l.admin)) {
    problems.push(`builtin-handler "config" needs a listener with admin #true (it is served only there)`)
  }
  const upstreamIds = new Set(c.upstreams.map((u) => u.id))
  const routeIds = new Set(c.routes.map((r) => r.id))
  for (const r of c.routes) {
    if (r.upstream !== undefined && !upstreamIds.has(r.upstream)) {
      problems.push(`route "${r.id}" references unknown upstream "${r.upstream}"`)
    }
  }
  for (const l of c.listeners) {
    if (l.defaultRoute !== undefined && !routeIds.has(l.defaultRoute)) {
      problems.push(`listener "${l.id}" default-route references unknown route "${l.defaultRoute}"`)
    }
  }
  return problems
}

export const SentinelConfig = Schema.Struct({
  /** `schema-version` (alias `version`). Default "1.0". */
  schemaVersion: defaulted(Schema.String, () => currentSchemaVersion),
  /** `system {…}`. */
  system: defaultedStruct(SystemConfig),
  /** `listeners { listener "id" {…} }`. At least one. */
  listeners: Schema.Array(ListenerConfig).pipe(Schema.minItems(1)),
  /** `upstreams { upstream "id" {…} }`. */
  upstreams: defaulted(Schema.Array(UpstreamConfig), () => []),
  /** `routes { route "id" {…} }`. */
  routes: defaulted(Schema.Array(RouteConfig), () => []),
  /** `limits {…}`. */
  limits: defaultedStruct(LimitsConfig),
  /** `observability {…}`. */
  observability: defaultedStruct(ObservabilityConfig),
  /** `filters { filter "id" { type "..."; ... } }`. */
  filters: defaulted(Schema.Array(FilterConfig), () => []),
  /** `agents { agent "id" { unix-socket "..."; ... } }`. */
  agents: defaulted(Schema.Array(AgentConfig), () => []),
  /** `rate-limits { default-rps; default-burst; key; global {…} }`. */
  rateLimits: defaultedStruct(RateLimitsConfig),
  /** `cache { enabled; backend "memory"; max-size; lock-timeout; status-header; status-header-name }`. */
  cache: defaultedStruct(CacheStoreConfig)
}).pipe(
  Schema.filter((c) => {
    const problems = crossCheck(c)
    return problems.length === 0 ? true : problems.join("; ")
  })
)
export type SentinelConfig = typeof SentinelConfig.Type
/** What a program passes in: every defaulted field optional, addresses may be strings. */
export type SentinelConfigInput = typeof SentinelConfig.Encoded

// ---------------------------------------------------------------------------
// programmatic entry points

/** Decodes a config value built in code (defaults filled, everything checked). */
export const decodeConfig = (value: unknown): Either.Either<SentinelConfig, ParseResult.ParseError> =>
  Schema.decodeUnknownEither(SentinelConfig, { errors: "all", onExcessProperty: "error" })(value)

/**
 * Builds a full config from a partial one, filling defaults; throws with a
 * readable message on invalid input. For tests and embedding.
 */
export const makeConfig = (input: SentinelConfigInput): SentinelConfig => {
  const result = decodeConfig(input)
  if (Either.isLeft(result)) {
    throw new Error(`invalid Sentinel config:\n${ParseResult.TreeFormatter.formatErrorSync(result.left)}`)
  }
  return result.right
}

/** Encodes a config back to its input shape (durations stay `Duration`). */
export const encodeConfig = (config: SentinelConfig): SentinelConfigInput =>
  Schema.encodeSync(SentinelConfig)(config)
