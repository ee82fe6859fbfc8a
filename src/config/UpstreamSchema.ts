/**
 * Typed model of `upstreams { upstream "id" { ... } }`: targets, timeouts and
 * connection pool, and the resilience settings: balancing options, active and
 * passive health, circuit breakers, retry policy and budget, DNS, and (model
 * only for now) upstream TLS and HTTP version.
 *
 * Field names and units mirror the feature modules' own config interfaces
 * (src/upstream/Balancer.ts, Health.ts, Circuit.ts, Retry.ts, Dns.ts), so a
 * decoded value is passed to them as is: the KDL keys are in seconds where
 * Sentinel uses seconds, and the decoder converts them to the modules'
 * milliseconds once (`intervalMs`, `openTimeoutMs`, ...).
 */
import * as Duration from "effect/Duration"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import {
  Count, defaulted, defaultedStruct, NonNegativeDuration, NonNegativeNumber, parseHostPort, Port, PositiveCount, Ratio, StatusCode
} from "./SchemaPrimitives.js"
import { algorithms } from "../upstream/Balancer.js"

// ---------------------------------------------------------------------------
// load balancing

/** Algorithms this build implements (`load-balancing "<name>"`): the balancer's own list. */
export const loadBalancingAlgorithms = algorithms
export const LoadBalancingAlgorithm = Schema.Literal(...loadBalancingAlgorithms)
export type LoadBalancingAlgorithm = typeof LoadBalancingAlgorithm.Type

/** Sentinel algorithms (and the aliases its parser has for them) rejected with "not supported yet". */
export const loadBalancingNotSupportedYet: ReadonlyArray<string> = [
  "adaptive", "least_tokens_queued", "leasttokensqueued", "least_tokens", "locality_aware", "localityaware", "locality",
  "deterministic_subset", "subset", "subsetting"
]

/**
 * Every alias Sentinel's parser (`parse_load_balancing`) has for an algorithm this build
 * implements. Names are matched case-insensitively with `-` read as `_`, so `Least-Connections`
 * is `least_connections` (Sentinel would silently run round robin for it) and `sticky-session`
 * is `sticky_session`.
 */
export const loadBalancingAliases: Readonly<Record<string, LoadBalancingAlgorithm>> = {
  roundrobin: "round_robin",
  leastconnections: "least_connections",
  weighted_round_robin: "weighted",
  iphash: "ip_hash",
  consistenthash: "consistent_hash",
  p2c: "power_of_two_choices",
  peakewma: "peak_ewma",
  ewma: "peak_ewma",
  weighted_least_conn: "weighted_least_connections",
  wlc: "weighted_least_connections",
  sticky_session: "sticky",
  stickysession: "sticky"
}

/** A `load-balancing` name as the decoder compares it: lower case, `-` read as `_`, surrounding blanks ignored. */
export const normaliseAlgorithmName = (name: string): string => name.trim().toLowerCase().replace(/-/g, "_")

/** Where consistent_hash / maglev take their key from (`hash-key "client-ip"|"path"|"header:<n>"|"cookie:<n>"`). */
export const HashKey = Schema.Union(
  Schema.Struct({ source: Schema.Literal("client-ip") }),
  Schema.Struct({ source: Schema.Literal("path") }),
  Schema.Struct({ source: Schema.Literal("header"), name: Schema.NonEmptyString }),
  Schema.Struct({ source: Schema.Literal("cookie"), name: Schema.NonEmptyString })
)
export type HashKey = typeof HashKey.Type

/** `load-balancing "sticky" { ... }` (Balancer.ts `StickyConfig`). */
export const StickyConfig = Schema.Struct({
  /** `cookie-name`. Default "SERVERID". */
  cookieName: defaulted(Schema.NonEmptyString, () => "SERVERID"),
  /** `cookie-ttl`: seconds, or "30m"/"1h"/"1d"; 0 = session cookie. Default 3600. */
  cookieTtlSecs: defaulted(Count, () => 3600),
  /** `cookie-path`. Default "/". */
  cookiePath: defaulted(Schema.String, () => "/"),
  /** `cookie-secure`. Default #true. */
  cookieSecure: defaulted(Schema.Boolean, () => true),
  /** `cookie-same-site`: "strict", "lax" or "none". Default "lax". */
  cookieSameSite: defaulted(Schema.Literal("strict", "lax", "none"), () => "lax" as const),
  /** `fallback`: algorithm for requests without a valid cookie (not "sticky"). Default "round_robin". */
  fallback: defaulted(
    Schema.Literal(...loadBalancingAlgorithms.filter((a): a is Exclude<LoadBalancingAlgorithm, "sticky"> => a !== "sticky")),
    () => "round_robin" as const
  )
})
export type StickyConfig = typeof StickyConfig.Type

// ---------------------------------------------------------------------------
// health

/** `health-check { type "http" { path; expected-status; host } | "tcp" }` (Health.ts `HealthCheckType`). */
export const HealthCheckType = Schema.Union(
  Schema.Struct({
    kind: Schema.Literal("http"),
    /** `path`. Default "/health". */
    path: defaulted(Schema.String, () => "/health"),
    /** `expected-status`: one or more statuses. Default 200. */
    expectedStatus: defaulted(Schema.Array(StatusCode).pipe(Schema.minItems(1)), () => [200]),
    /** `host`: Host header sent. Default the target's "host:port". */
    host: Schema.optional(Schema.NonEmptyString)
  }),
  Schema.Struct({ kind: Schema.Literal("tcp") })
)
export type HealthCheckType = typeof HealthCheckType.Type

/** `health-check { ... }` (Health.ts `ActiveHealthConfig`). */
export const HealthCheckConfig = Schema.Struct({
  /** `type "http" {…}` or `type "tcp"`. Default "tcp" (as Sentinel when `type` is missing). */
  type: defaulted(HealthCheckType, () => ({ kind: "tcp" as const })),
  /** `interval-secs` (ms here): between probes, ±10 % jitter. Default 10 s. */
  intervalMs: defaulted(PositiveCount, () => 10_000),
  /** `timeout-secs` (ms here): deadline of one probe. Default 5 s. */
  timeoutMs: defaulted(PositiveCount, () => 5_000),
  /** `healthy-threshold`: consecutive successes to become healthy. Default 2. */
  healthyThreshold: defaulted(PositiveCount, () => 2),
  /** `unhealthy-threshold`: consecutive failures to become unhealthy. Default 3. */
  unhealthyThreshold: defaulted(PositiveCount, () => 3)
})
export type HealthCheckConfig = typeof HealthCheckConfig.Type

/** `passive-health { ... }` (Health.ts `PassiveHealthConfig`; Sentinel hard-codes these). */
export const PassiveHealthConfig = Schema.Struct({
  /** `window-size`: outcomes remembered per target. Default 100. */
  windowSize: defaulted(PositiveCount, () => 100),
  /** `failure-ratio`: failure share (0..1) above which a target is ejected. Default 0.5. */
  failureRatio: defaulted(Ratio, () => 0.5),
  /** `min-requests`: outcomes needed before judging. Default 10. */
  minRequests: defaulted(PositiveCount, () => 10),
  /** `cooldown-secs` (ms here): how long an ejected target stays out. Default 10 s. */
  cooldownMs: defaulted(Count, () => 10_000)
})
export type PassiveHealthConfig = typeof PassiveHealthConfig.Type

// ---------------------------------------------------------------------------
// circuit breaker

/** `circuit-breaker { ... }` on upstreams (per target) and agents (Circuit.ts `CircuitConfig`). */
export const CircuitBreakerConfig = Schema.Struct({
  /** `failure-threshold`: consecutive failures that open the circuit. Default 5. */
  failureThreshold: defaulted(PositiveCount, () => 5),
  /** `success-threshold`: consecutive half-open successes that close it. Default 2. */
  successThreshold: defaulted(PositiveCount, () => 2),
  /** `timeout-seconds` (alias `timeout-secs`; ms here): time open before probing. Default 30 s. */
  openTimeoutMs: defaulted(PositiveCount, () => 30_000),
  /** `half-open-max-requests`: probes admitted at once while half-open. Default 1. */
  halfOpenMaxRequests: defaulted(PositiveCount, () => 1),
  /** `probe-timeout-secs` (ms here): an unsettled probe slot is reclaimed after. Default: `openTimeoutMs`. */
  probeTimeoutMs: Schema.optional(PositiveCount)
})
export type CircuitBreakerConfig = typeof CircuitBreakerConfig.Type

// ---------------------------------------------------------------------------
// retries

/** Route `retry-policy { ... }` (Retry.ts `RetryPolicy`). Without the block a route makes one attempt. */
export const RetryPolicyConfig = Schema.Struct({
  /** `max-attempts`: total attempts including the first. Default 3. */
  maxAttempts: defaulted(PositiveCount, () => 3),
  /** `retryable-status-codes`: upstream statuses that trigger a retry. Default none. */
  retryableStatusCodes: defaulted(Schema.Array(StatusCode), () => []),
  /** `backoff` (ms, or "100ms"/"1s"): delay before the 2nd attempt, doubling after. Default 100. */
  backoffMs: defaulted(Count, () => 100),
  /** `max-backoff`: cap of the doubling. Default 2000 ms. */
  maxBackoffMs: defaulted(Count, () => 2000),
  /** `per-attempt-timeout`: deadline of each attempt. Default: none (the upstream timeouts apply). */
  perAttemptTimeoutMs: Schema.optional(PositiveCount),
  /** `retry-non-idempotent`: retry POST/PATCH/... after the request was sent. Default #false. */
  retryNonIdempotent: defaulted(Schema.Boolean, () => false)
})
export type RetryPolicyConfig = typeof RetryPolicyConfig.Type

/** Upstream `retry-budget { ... }` (Retry.ts `RetryBudgetConfig`; not in Sentinel). */
export const RetryBudgetConfig = Schema.Struct({
  /** `ratio`: retries allowed as a share of requests. Default 0.2. */
  ratio: defaulted(NonNegativeNumber, () => 0.2),
  /** `min-per-second`: retries always allowed per second. Default 10. */
  minPerSecond: defaulted(NonNegativeNumber, () => 10),
  /** `max-balance`: tokens the ratio part may bank. Default 100. */
  maxBalance: defaulted(NonNegativeNumber, () => 100)
})
export type RetryBudgetConfig = typeof RetryBudgetConfig.Type

// ---------------------------------------------------------------------------
// DNS (system level: one cache serves every upstream)

/** `system { dns { ... } }` (Dns.ts `DnsConfig`; not in Sentinel, which resolves on every request). */
export const DnsConfig = Schema.Struct({
  /** `refresh-secs` (ms here): re-resolve every host this often, ±10 %. Default 30 s. */
  refreshMs: defaulted(PositiveCount, () => 30_000),
  /** `timeout-secs` (ms here): deadline of one lookup. Default 2 s. */
  timeoutMs: defaulted(PositiveCount, () => 2_000),
  /** `max-stale-secs` (ms here): last good addresses kept while lookups fail. Default 3600 s. */
  maxStaleMs: defaulted(Count, () => 3_600_000),
  /** `max-hosts`: host names cached. Default 10000. */
  maxHosts: defaulted(PositiveCount, () => 10_000)
})
export type DnsConfig = typeof DnsConfig.Type

// ---------------------------------------------------------------------------
// upstream TLS and HTTP version (model only: not applied yet)

/** Upstream `tls { ... }`: without it connections are plaintext, even to port 443. */
export const UpstreamTlsConfig = Schema.Struct({
  /** `sni`: server name sent and verified. Default: the target host. */
  sni: Schema.optional(Schema.NonEmptyString),
  /** `ca-cert`: PEM file of CAs to trust. Default: the system store. */
  caCert: Schema.optional(Schema.NonEmptyString),
  /** `client-cert`: PEM certificate for mTLS (needs `client-key`). Default none. */
  clientCert: Schema.optional(Schema.NonEmptyString),
  /** `client-key`: PEM key for mTLS (needs `client-cert`). Default none. */
  clientKey: Schema.optional(Schema.NonEmptyString),
  /** `insecure-skip-verify`: do not verify the certificate (testing only). Default #false. */
  insecureSkipVerify: defaulted(Schema.Boolean, () => false)
}).pipe(
  Schema.filter((t) => (t.clientCert === undefined) === (t.clientKey === undefined) || "client-cert and client-key go together")
)
export type UpstreamTlsConfig = typeof UpstreamTlsConfig.Type

const HttpVersion = Schema.Literal(1, 2)

/** Upstream `http-version { ... }`. */
export const HttpVersionConfig = Schema.Struct({
  /** `min-version`: 1 or 2. Default 1. */
  minVersion: defaulted(HttpVersion, () => 1 as const),
  /** `max-version`: 1 or 2 (2 only over TLS, by ALPN). Default 1: HTTP/2 upstream is opt-in. */
  maxVersion: defaulted(HttpVersion, () => 1 as const),
  /** `h2-ping-interval` (seconds): HTTP/2 keep-alive pings; 0 = off. Default 0. */
  h2PingInterval: defaulted(NonNegativeDuration, () => Duration.zero),
  /** `max-h2-streams`: concurrent streams per HTTP/2 connection. Default 100. */
  maxH2Streams: defaulted(PositiveCount, () => 100)
}).pipe(Schema.filter((v) => v.minVersion <= v.maxVersion || "min-version must not exceed max-version"))
export type HttpVersionConfig = typeof HttpVersionConfig.Type

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
