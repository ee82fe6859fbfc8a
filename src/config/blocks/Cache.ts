/**
 * `cache { ... }` at the top level (the store) and in a route (what the route caches), with
 * Sentinel's names. `backend "disk"` / `"hybrid"` and their keys are not supported yet.
 */
import type { CacheStoreConfig, RouteCacheConfig } from "../Schema.js"
import { type BlockSpec, block, compact, list, scalar } from "../KdlDecoder.js"
import { type Val, bool, bytes, nonEmpty, oneOf, positive, secs, status, str } from "../KdlValues.js"

// (not Routes.ts' `headerName`: Routes.ts imports this file)
const headerName: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(s) ? s : cx.error(at, `${what} ${JSON.stringify(s)} is not a valid header name`)
}

const method: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return /^[A-Za-z]+$/.test(s) ? s.toUpperCase() : cx.error(at, `${what} ${JSON.stringify(s)} is not an HTTP method`)
}

const extension: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  const e = s.startsWith(".") ? s.slice(1) : s
  return /^[A-Za-z0-9_-]+$/.test(e) ? e.toLowerCase() : cx.error(at, `${what} must be a file extension like "php", got ${JSON.stringify(s)}`)
}

const pathPrefix: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return s.startsWith("/") ? s : cx.error(at, `${what} must be a path starting with "/", got ${JSON.stringify(s)}`)
}

const cacheName: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return /^[A-Za-z][A-Za-z0-9._-]*$/.test(s) ? s : cx.error(at, `${what} must be a token like "sentinel" (letters, digits, ".", "_", "-"), got ${JSON.stringify(s)}`)
}

export const cacheStoreSpec: BlockSpec<CacheStoreConfig> = {
  path: "cache",
  fields: {
    enabled: scalar("enabled", bool),
    backend: scalar("backend", oneOf(["memory"] as const, { notSupported: ["disk", "hybrid"] })),
    maxSize: scalar(["max-size", "max-size-bytes"], (v, at, cx, what) => {
      const n = bytes(v, at, cx, what)
      return n === undefined ? undefined : positive(n, at, cx, what)
    }),
    lockTimeout: scalar(["lock-timeout", "lock-timeout-secs"], secs),
    statusHeader: scalar("status-header", bool),
    statusHeaderName: scalar("status-header-name", cacheName),
    adminOnly: scalar("admin-only", bool)
  }
}

export const cacheStoreField = block("cache", cacheStoreSpec, (f) => compact(f))

export const routeCacheSpec: BlockSpec<RouteCacheConfig> = {
  path: "routes.route.cache",
  fields: {
    enabled: scalar("enabled", bool),
    defaultTtl: scalar(["default-ttl-secs", "default-ttl"], secs),
    maxSizeBytes: scalar(["max-size-bytes", "max-size"], (v, at, cx, what) => {
      const n = bytes(v, at, cx, what)
      return n === undefined ? undefined : positive(n, at, cx, what)
    }),
    cachePrivate: scalar("cache-private", bool),
    staleWhileRevalidate: scalar(["stale-while-revalidate-secs", "stale-while-revalidate"], secs),
    staleIfError: scalar(["stale-if-error-secs", "stale-if-error"], secs),
    cacheableMethods: list("cacheable-methods", method),
    cacheableStatusCodes: list("cacheable-status-codes", status),
    varyHeaders: list("vary-headers", headerName),
    ignoreQueryParams: list("ignore-query-params", nonEmpty),
    excludeExtensions: list("exclude-extensions", extension),
    excludePaths: list("exclude-paths", pathPrefix)
  }
}

export const routeCacheField = block("cache", routeCacheSpec, (f) => compact(f))
