/**
 * Typed model of `filters { filter "<id>" { type "<t>"; ... } }`: one variant
 * per filter type, each with exactly the fields of the filter module's own
 * config interface (src/filters/*.ts) plus `id` and `type`, so a decoded
 * filter is passed to its module as is.
 */
import { Schema } from "effect"
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
  maxKeys: defaulted(PositiveCount, () => 100_000)
})

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

export const FilterConfig = Schema.Union(
  HeadersFilterConfig,
  RateLimitFilterConfig,
  CorsFilterConfig,
  RedirectFilterConfig,
  UrlRewriteFilterConfig,
  TimeoutFilterConfig,
  SecurityHeadersFilterConfig,
  AgentFilterConfig
)
export type FilterConfig = typeof FilterConfig.Type
export type FilterType = FilterConfig["type"]
export const filterTypes: ReadonlyArray<FilterType> = [
  "headers", "rate-limit", "cors", "redirect", "url-rewrite", "timeout", "security-headers", "agent"
]
/** Sentinel filter types rejected with "not supported yet". */
export const filterTypesNotSupportedYet: ReadonlyArray<string> = ["compress", "log", "geo"]
