/**
 * The response cache's configuration model: the top-level `cache { }` block (the store) and a
 * route's `cache { }` block (what that route caches). Sentinel's names and defaults.
 */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import { defaulted, NonNegativeDuration, PositiveCount, StatusCode } from "./SchemaPrimitives.js"

/** Top-level `cache { ... }`: one in-memory store shared by every route that caches. */
export const CacheStoreConfig = Schema.Struct({
  /** `enabled`: routes with `cache { enabled #true }` cache. #false turns every route's cache off. Default #true. */
  enabled: defaulted(Schema.Boolean, () => true),
  /** `backend`: only `"memory"` here (`"disk"` / `"hybrid"` are not supported yet). Default "memory". */
  backend: defaulted(Schema.Literal("memory"), () => "memory" as const),
  /** `max-size`: bytes of responses (bodies and heads) kept; least recently used ones go first. Default 100 MiB. */
  maxSize: defaulted(PositiveCount, () => 104_857_600),
  /**
   * `lock-timeout` (seconds): how long concurrent misses for one key wait for the one request
   * that fills it before going upstream themselves. 0 = no collapsing. Default 10s.
   */
  lockTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(10)),
  /** `status-header`: add `Cache-Status` (RFC 9211) to responses of caching routes. Default #false. */
  statusHeader: defaulted(Schema.Boolean, () => false),
  /** `status-header-name`: the cache's name in `Cache-Status` (`sentinel; hit`). Default "sentinel". */
  statusHeaderName: defaulted(Schema.String.pipe(Schema.pattern(/^[A-Za-z][A-Za-z0-9._-]*$/)), () => "sentinel"),
  /**
   * `admin-only`: `builtin-handler "cache-purge"` and `"cache-stats"` answer only on listeners
   * with `admin #true` (404 elsewhere). #false serves them on every listener the route matches.
   * Default #true.
   */
  adminOnly: defaulted(Schema.Boolean, () => true)
})
export type CacheStoreConfig = typeof CacheStoreConfig.Type

/** Route `cache { ... }` (a child of the route). */
export const RouteCacheConfig = Schema.Struct({
  /** `enabled`. Default #false. */
  enabled: defaulted(Schema.Boolean, () => false),
  /** `default-ttl-secs`: freshness of a response that carries none (no max-age, s-maxage or Expires); 0 = such responses are not stored. Default 3600. */
  defaultTtl: defaulted(NonNegativeDuration, () => Duration.seconds(3600)),
  /** `max-size-bytes`: larger responses are never stored (a fill that grows past it is dropped). Default 10 MiB. */
  maxSizeBytes: defaulted(PositiveCount, () => 10 * 1024 * 1024),
  /** `cache-private`: store responses marked `Cache-Control: private` too (`no-store` is always honoured). Default #false. */
  cachePrivate: defaulted(Schema.Boolean, () => false),
  /** `stale-while-revalidate-secs`: when the response names none, how long a stale entry is served while one background refresh runs. Default 60. */
  staleWhileRevalidate: defaulted(NonNegativeDuration, () => Duration.seconds(60)),
  /** `stale-if-error-secs`: when the response names none, how long a stale entry is served when the upstream fails. Default 300. */
  staleIfError: defaulted(NonNegativeDuration, () => Duration.seconds(300)),
  /** `cacheable-methods`: methods looked up and stored (HEAD is answered from a cached GET). Default "GET" "HEAD". */
  cacheableMethods: defaulted(Schema.Array(Schema.NonEmptyString), () => ["GET", "HEAD"]),
  /** `cacheable-status-codes`. Default 200 203 204 206 300 301 308 404 410 (206 is never stored: ranges bypass). */
  cacheableStatusCodes: defaulted(Schema.Array(StatusCode), () => [200, 203, 204, 206, 300, 301, 308, 404, 410]),
  /** `vary-headers`: request headers whose values are part of the key, besides the response's own `Vary`. Default none. */
  varyHeaders: defaulted(Schema.Array(Schema.NonEmptyString), () => []),
  /** `ignore-query-params`: query parameters left out of the key (`utm_source`). Default none. */
  ignoreQueryParams: defaulted(Schema.Array(Schema.String), () => []),
  /** `exclude-extensions`: paths ending in `.<ext>` bypass the cache. Default none. */
  excludeExtensions: defaulted(Schema.Array(Schema.NonEmptyString), () => []),
  /** `exclude-paths`: path prefixes that bypass the cache. Default none. */
  excludePaths: defaulted(Schema.Array(Schema.NonEmptyString), () => [])
})
export type RouteCacheConfig = typeof RouteCacheConfig.Type
