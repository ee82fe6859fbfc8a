/** Typed model of `routes { route "id" { ... } }`: matches, handler, policies, static files, WebSocket, cache. */
import * as Schema from "effect/Schema"
import { FailureMode } from "./AgentSchema.js"
import { RouteCacheConfig } from "./CacheSchema.js"
import { Count, defaulted, defaultedStruct, NonNegativeDuration, SafeInt } from "./SchemaPrimitives.js"
import { CircuitBreakerConfig, RetryPolicyConfig } from "./UpstreamSchema.js"

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
   * Default #false (only bodies up to `limits { request-buffer-size }`).
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
