/**
 * Typed model of `filters { filter "<id>" { type "<t>"; ... } }`: one variant
 * per filter type, each with exactly the fields of the filter module's own
 * config interface (src/filters/*.ts) plus `id` and `type`, so a decoded
 * filter is passed to its module as is.
 */
import * as Schema from "effect/Schema"
import { Count, defaulted, Port, PositiveCount, StatusCode } from "./SchemaPrimitives.js"

const PositiveNumber = Schema.Number.pipe(Schema.filter((n) => (Number.isFinite(n) && n > 0) || "a positive number"))
const Pair = Schema.Tuple(Schema.String, Schema.String)
const id = Schema.NonEmptyString

/** `phase "request"|"response"|"both"`. */
export const FilterPhase = Schema.Literal("request", "response", "both")

/** `type "headers"` (Headers.ts `HeadersFilterConfig`). */
export const HeadersFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("headers"),
  /** `phase`: which message the edits apply to. Default "request". */
  phase: defaulted(FilterPhase, () => "request" as const),
  /** `rename { "Old" "New" }`. Default none. */
  rename: defaulted(Schema.Array(Pair), () => []),
  /** `set { "Name" "value" }`: replaces every value. Default none. */
  set: defaulted(Schema.Array(Pair), () => []),
  /** `add { "Name" "value" }`: appends. Default none. */
  add: defaulted(Schema.Array(Pair), () => []),
  /** `remove "A" "B"`. Default none. */
  remove: defaulted(Schema.Array(Schema.String), () => [])
})

/** `key` of a rate limit. */
export const RateLimitKey = Schema.Union(
  Schema.Literal("client-ip", "path", "route", "client-ip-and-path"),
  Schema.TemplateLiteral(Schema.Literal("header:"), Schema.String)
)

/** `backend "redis"` and its `redis-*` keys (RateLimit.ts `RedisBackendConfig`). */
export const RedisBackendConfig = Schema.Struct({
  type: Schema.Literal("redis"),
  /** `redis-url`: redis:// or rediss:// URL. Default "redis://127.0.0.1:6379". */
  url: defaulted(Schema.String.pipe(Schema.filter((u) => /^rediss?:\/\/[^\s]+$/.test(u) || "a redis:// or rediss:// URL")), () => "redis://127.0.0.1:6379"),
  /** `redis-prefix`: prepended to every key. Default "sentinel:ratelimit:". */
  prefix: defaulted(Schema.String, () => "sentinel:ratelimit:"),
  /** `redis-pool-size`: connections to this Redis. Default 10. */
  poolSize: defaulted(PositiveCount, () => 10),
  /** `redis-timeout-ms`: deadline of one decision. Default 50. */
  timeoutMs: defaulted(PositiveCount, () => 50),
  /** `redis-fallback`: "local" (#true), "open" (#false) or "closed". Default "local". */
  fallback: defaulted(Schema.Literal("local", "open", "closed"), () => "local" as const),
  /** `redis-failure-threshold`: consecutive failures that open the circuit. Default 3. */
  failureThreshold: defaulted(PositiveCount, () => 3),
  /** `redis-circuit-open-ms`: how long the open circuit skips Redis. Default 1000. */
  circuitOpenMs: defaulted(PositiveCount, () => 1000)
})

/** `backend`: "local" (this process) or "redis" (shared by a fleet). */
export const RateLimitBackend = Schema.Union(Schema.Struct({ type: Schema.Literal("local") }), RedisBackendConfig)

/** `type "rate-limit"` (RateLimit.ts `RateLimitConfig`): a token bucket per key. */
export const RateLimitFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("rate-limit"),
  /** `max-rps`: sustained requests per second per key. Default 100. */
  maxRps: defaulted(PositiveNumber, () => 100),
  /** `burst`: bucket capacity. Default 10. */
  burst: defaulted(PositiveCount, () => 10),
  /** `key`: "client-ip", "path", "route", "client-ip-and-path" or "header:<name>". Default "client-ip". */
  key: defaulted(RateLimitKey, () => "client-ip" as const),
  /** `on-limit`: "reject", "delay" or "log-only". Default "reject". */
  onLimit: defaulted(Schema.Literal("reject", "delay", "log-only"), () => "reject" as const),
  /** `status-code` of a rejection. Default 429. */
  statusCode: defaulted(StatusCode, () => 429),
  /** `message`: body of a rejection. Default "Too Many Requests". */
  message: defaulted(Schema.String, () => "Too Many Requests"),
  /** `max-delay-ms`: longest wait with `on-limit "delay"`. Default 5000. */
  maxDelayMs: defaulted(Count, () => 5000),
  /** `max-keys`: keys tracked at once (LRU above). Default 100000. */
  maxKeys: defaulted(PositiveCount, () => 100_000),
  /** `backend "local"|"redis"` with the `redis-*` keys. Default local. */
  backend: defaulted(RateLimitBackend, () => ({ type: "local" as const }))
})

/** `rate-limits { global { max-rps; burst; key } }`: one limit for every routed request, before the route's filters. */
export const GlobalRateLimitConfig = Schema.Struct({
  /** `max-rps`: requests per second per key. Required. */
  maxRps: PositiveNumber,
  /** `burst`: bucket capacity. Default 10. */
  burst: defaulted(PositiveCount, () => 10),
  /** `key`. Default "client-ip". */
  key: defaulted(RateLimitKey, () => "client-ip" as const)
})
export type GlobalRateLimitConfig = typeof GlobalRateLimitConfig.Type

/**
 * Top-level `rate-limits { default-rps; default-burst; key; global { ... } }` (RateLimits in
 * src/filters/Chain.ts): `default-*` limit each route that lists no rate-limit filter (a bucket per
 * route and `key`), `global` limits every routed request first. Both are this process's buckets.
 */
export const RateLimitsConfig = Schema.Struct({
  /** `default-rps`: the limit of each route without a rate-limit filter. Default: none. */
  defaultRps: Schema.optional(PositiveNumber),
  /** `default-burst`: its bucket capacity (needs `default-rps`). Default 10. */
  defaultBurst: Schema.optional(PositiveCount),
  /** `key` of the default limits. Default "client-ip". */
  key: defaulted(RateLimitKey, () => "client-ip" as const),
  /** `global { max-rps; burst; key }`. Default: none. */
  global: Schema.optional(GlobalRateLimitConfig)
}).pipe(Schema.filter((r) => r.defaultBurst === undefined || r.defaultRps !== undefined || "default-burst needs default-rps"))
export type RateLimitsConfig = typeof RateLimitsConfig.Type

/** `type "cors"` (Cors.ts `CorsConfig`). */
export const CorsFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("cors"),
  /** `allowed-origins`: exact origins, "*", or "https://*.example.com". Default "*". */
  allowedOrigins: defaulted(Schema.Array(Schema.String), () => ["*"]),
  /** `allowed-methods`. Default GET HEAD POST PUT PATCH DELETE OPTIONS. */
  allowedMethods: defaulted(Schema.Array(Schema.String), () => ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
  /** `allowed-headers`: "*" = whatever a preflight asks. Default "*". */
  allowedHeaders: defaulted(Schema.Array(Schema.String), () => ["*"]),
  /** `expose-headers`. Default none. */
  exposeHeaders: defaulted(Schema.Array(Schema.String), () => []),
  /** `allow-credentials`. Default #false. */
  allowCredentials: defaulted(Schema.Boolean, () => false),
  /** `max-age` (seconds a preflight may be cached). Default 86400. */
  maxAgeSecs: defaulted(Count, () => 86400)
})

/** `replace-full-path "/p"` or `replace-prefix-match "/p"` (PathModifier.ts). */
export const PathModifier = Schema.Union(
  Schema.TaggedStruct("ReplaceFullPath", { path: Schema.String }),
  Schema.TaggedStruct("ReplacePrefixMatch", { prefix: Schema.String })
)
export type PathModifier = typeof PathModifier.Type

/** `type "redirect"` (Redirect.ts `RedirectConfig`). */
export const RedirectFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("redirect"),
  /** `status-code`: 301, 302, 303, 307 or 308. Default 302. */
  statusCode: defaulted(Schema.Literal(301, 302, 303, 307, 308), () => 302 as const),
  /** `scheme`: "http" or "https". Default: the request's. */
  scheme: defaulted(Schema.NullOr(Schema.Literal("http", "https")), () => null),
  /** `hostname`. Default: the request's. */
  hostname: defaulted(Schema.NullOr(Schema.String), () => null),
  /** `port` (1-65535). Default: see Redirect.ts. */
  port: defaulted(Schema.NullOr(Port), () => null),
  /** `replace-full-path` / `replace-prefix-match`. Default: path unchanged. */
  path: defaulted(Schema.NullOr(PathModifier), () => null)
})

/** `type "url-rewrite"` (UrlRewrite.ts `UrlRewriteConfig`). */
export const UrlRewriteFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("url-rewrite"),
  /** `hostname`: Host sent upstream. Default: unchanged. */
  hostname: defaulted(Schema.NullOr(Schema.String), () => null),
  /** `replace-full-path` / `replace-prefix-match`. Default: unchanged. */
  path: defaulted(Schema.NullOr(PathModifier), () => null)
})

/** `type "timeout"` (Timeout.ts `TimeoutFilterConfig`): per-route overrides, in seconds. */
export const TimeoutFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("timeout"),
  /** `request-timeout-secs`: whole-request deadline. Default: the route's/listener's. */
  requestTimeoutSecs: defaulted(Schema.NullOr(PositiveNumber), () => null),
  /** `upstream-timeout-secs`: upstream response deadline. Default: the upstream's. */
  upstreamTimeoutSecs: defaulted(Schema.NullOr(PositiveNumber), () => null),
  /** `connect-timeout-secs`: upstream connect deadline. Default: the upstream's. */
  connectTimeoutSecs: defaulted(Schema.NullOr(PositiveNumber), () => null)
})

/** `type "security-headers"` (SecurityHeaders.ts `SecurityHeadersConfig`); `#null` disables a header. */
export const SecurityHeadersFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("security-headers"),
  /** `hsts` (HTTPS responses only). Default "max-age=31536000; includeSubDomains". */
  hsts: defaulted(Schema.NullOr(Schema.String), () => "max-age=31536000; includeSubDomains"),
  /** `content-type-options`: X-Content-Type-Options nosniff. Default #true. */
  contentTypeOptions: defaulted(Schema.Boolean, () => true),
  /** `frame-options`: "DENY" or "SAMEORIGIN". Default "DENY". */
  frameOptions: defaulted(Schema.NullOr(Schema.Literal("DENY", "SAMEORIGIN")), () => "DENY" as const),
  /** `referrer-policy`. Default "strict-origin-when-cross-origin". */
  referrerPolicy: defaulted(Schema.NullOr(Schema.String), () => "strict-origin-when-cross-origin"),
  /** `content-security-policy`. Default none. */
  contentSecurityPolicy: defaulted(Schema.NullOr(Schema.String), () => null),
  /** `permissions-policy`. Default none. */
  permissionsPolicy: defaulted(Schema.NullOr(Schema.String), () => null),
  /** `cross-origin-opener-policy`. Default none. */
  crossOriginOpenerPolicy: defaulted(Schema.NullOr(Schema.String), () => null),
  /** `override`: replace values the upstream set. Default #false. */
  override: defaulted(Schema.Boolean, () => false)
})

/** `type "agent"`: attaches an agent to the routes listing this filter (AgentConfig.ts `AgentFilterRef`). */
export const AgentFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("agent"),
  /** `agent "<id>"`: the agent called. Required. */
  agent: Schema.NonEmptyString,
  /** `failure-mode "open"|"closed"`: wins over the route's and the agent's. Default: not set. */
  failureMode: Schema.optional(Schema.Literal("open", "closed")),
  /** `timeout-ms`: deadline of this filter's agent calls, instead of the agent's `timeout-ms`. Default: not set. */
  timeoutMs: Schema.optional(PositiveCount),
  /**
   * `inspect-body`: `#false` sends this filter's agent no body whatever its `events`; `#true`
   * sends it the request body even when its `events` leave `request_body` out. Default: not
   * set (the agent's `events` decide).
   */
  inspectBody: Schema.optional(Schema.Boolean),
  /** `max-body-bytes`: body cap of this filter's agent calls, instead of the agent's. Default: not set. */
  maxBodyBytes: Schema.optional(Count)
})

/** Sentinel's compressed types (`CompressFilter::default`). */
export const DEFAULT_COMPRESS_TYPES: ReadonlyArray<string> = [
  "text/html", "text/css", "text/plain", "text/xml", "application/json", "application/javascript", "application/xml", "image/svg+xml"
]

/** `type "compress"` (Compress.ts `CompressConfig`): gzip/brotli/deflate of proxied responses. */
export const CompressFilterConfig = Schema.Struct({
  id,
  type: Schema.Literal("compress"),
  /** `algorithms "gzip,br"`: codings offered, in order of preference ("br" = "brotli"). Default gzip, br. */
  algorithms: defaulted(Schema.NonEmptyArray(Schema.Literal("gzip", "br", "deflate")), () => ["gzip", "br"] as const),
  /** `min-size`: a response whose Content-Length is smaller is sent as is (bytes). Default 1024. */
  minSize: defaulted(Count, () => 1024),
  /** `level` (1-9): gzip/deflate level, brotli quality. Default 6. */
  level: defaulted(Schema.Int.pipe(Schema.between(1, 9)), () => 6),
  /**
   * `content-types`: media types compressed ("text/*" a whole top-level type). Default text/html,
   * text/css, text/plain, text/xml, application/json, application/javascript, application/xml,
   * image/svg+xml.
   */
  contentTypes: defaulted(Schema.Array(Schema.String), () => DEFAULT_COMPRESS_TYPES)
})

export const FilterConfig = Schema.Union(
  HeadersFilterConfig,
  RateLimitFilterConfig,
  CorsFilterConfig,
  RedirectFilterConfig,
  UrlRewriteFilterConfig,
  TimeoutFilterConfig,
  SecurityHeadersFilterConfig,
  AgentFilterConfig,
  CompressFilterConfig
)
export type FilterConfig = typeof FilterConfig.Type
export type FilterType = FilterConfig["type"]
export const filterTypes: ReadonlyArray<FilterType> = [
  "headers", "rate-limit", "cors", "redirect", "url-rewrite", "timeout", "security-headers", "agent", "compress"
]
/** Sentinel filter types rejected with "not supported yet". */
export const filterTypesNotSupportedYet: ReadonlyArray<string> = ["log", "geo"]
