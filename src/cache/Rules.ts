/**
 * The cache's own rules around the RFC 9111 library (`http-cache-semantics`), pure functions:
 * the key (the host and the scheme in it, `ignore-query-params` removed), which requests
 * bypass the cache, the response headers the library judges (route defaults added), and the
 * verdicts where this cache is stricter than the library: a request with `Authorization` and a
 * response with `Set-Cookie` are stored only when the response says `public`.
 */
import * as Duration from "effect/Duration"
import type { RouteCacheConfig } from "../config/Schema.js"
import type { RouteCodings } from "./Variants.js"

/** A route's `cache { }` compiled for the request path. */
export interface CacheRules {
  readonly routeId: string
  readonly methods: ReadonlySet<string>
  readonly statuses: ReadonlySet<number>
  /** Lower-case names of `vary-headers`. */
  readonly varyHeaders: ReadonlyArray<string>
  readonly ignoredParams: ReadonlySet<string>
  readonly extensions: ReadonlySet<string>
  readonly excludePaths: ReadonlyArray<string>
  readonly defaultTtlSecs: number
  readonly staleWhileRevalidateSecs: number
  readonly staleIfErrorSecs: number
  readonly maxSizeBytes: number
  readonly cachePrivate: boolean
  /** The route's `compress` filter's codings: `Accept-Encoding` selects variants by the one it negotiates (Variants.ts). */
  readonly codings: RouteCodings
}

export const compileRules = (routeId: string, c: RouteCacheConfig, codings?: RouteCodings): CacheRules => ({
  routeId,
  methods: new Set(c.cacheableMethods.map((m) => m.toUpperCase())),
  statuses: new Set(c.cacheableStatusCodes),
  varyHeaders: [...new Set(c.varyHeaders.map((h) => h.toLowerCase()))].sort(),
  ignoredParams: new Set(c.ignoreQueryParams),
  extensions: new Set(c.excludeExtensions.map((e) => e.toLowerCase())),
  excludePaths: c.excludePaths,
  defaultTtlSecs: Math.floor(Duration.toMillis(c.defaultTtl) / 1000),
  staleWhileRevalidateSecs: Math.floor(Duration.toMillis(c.staleWhileRevalidate) / 1000),
  staleIfErrorSecs: Math.floor(Duration.toMillis(c.staleIfError) / 1000),
  maxSizeBytes: c.maxSizeBytes,
  cachePrivate: c.cachePrivate,
  codings
})

/** What the rules read of a request. */
export interface KeyedRequest {
  readonly method: string
  readonly scheme: string
  readonly host: string
  readonly path: string
  readonly query: string
  readonly header: (lowerName: string) => string | undefined
}

const decodeName = (s: string): string => {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "))
  } catch {
    return s
  }
}

/** The query without the ignored parameters (order kept: `?a=1&b=2` and `?b=2&a=1` are two resources). */
export const keyQuery = (query: string, ignored: ReadonlySet<string>): string => {
  if (query === "" || ignored.size === 0) return query
  const kept: Array<string> = []
  for (const part of query.split("&")) {
    if (part === "") continue
    const eq = part.indexOf("=")
    if (!ignored.has(decodeName(eq === -1 ? part : part.slice(0, eq)))) kept.push(part)
  }
  return kept.join("&")
}

/** The effective request URI as the key's resource part: scheme, host, path, kept query. */
export const resourceOf = (r: KeyedRequest, rules: CacheRules): string => {
  const q = keyQuery(r.query, rules.ignoredParams)
  return `${r.scheme}://${r.host}${r.path}${q === "" ? "" : "?" + q}`
}

/**
 * The primary key: the route, the method class (HEAD is answered from GET), the resource.
 * Variants under it are told apart by `Variants.variantKey`.
 */
export const primaryKey = (r: KeyedRequest, rules: CacheRules): string =>
  `${rules.routeId}\n${r.method === "HEAD" ? "GET" : r.method} ${resourceOf(r, rules)}`

/** Why a request does not use the cache at all (`Cache-Status: fwd=bypass; detail=...`), or undefined. */
export const bypassReason = (r: KeyedRequest, rules: CacheRules): string | undefined => {
  if (!rules.methods.has(r.method)) return "method"
  if (r.header("upgrade") !== undefined) return "upgrade"
  if (r.header("range") !== undefined) return "range"
  for (const p of rules.excludePaths) {
    if (r.path === p || (r.path.startsWith(p) && (p.endsWith("/") || r.path.charCodeAt(p.length) === 47))) return "excluded-path"
  }
  if (rules.extensions.size > 0) {
    const slash = r.path.lastIndexOf("/")
    const dot = r.path.lastIndexOf(".")
    if (dot > slash && rules.extensions.has(r.path.slice(dot + 1).toLowerCase())) return "excluded-extension"
  }
  return undefined
}

/** Cache-Control directives as a map (lower-case names; `true` for bare ones). */
export const parseCacheControl = (v: string | undefined): Map<string, string | true> => {
  const out = new Map<string, string | true>()
  if (v === undefined) return out
  for (const part of v.split(",")) {
    const p = part.trim()
    if (p === "") continue
    const eq = p.indexOf("=")
    if (eq === -1) out.set(p.toLowerCase(), true)
    else out.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1"))
  }
  return out
}

const formatCacheControl = (cc: Map<string, string | true>): string =>
  [...cc].map(([k, v]) => (v === true ? k : `${k}=${v}`)).join(", ")

/** The response as the library judges it, and whether serving it stale is forbidden. */
export interface Judged {
  readonly headers: Record<string, string>
  /** `must-revalidate` / `proxy-revalidate` / `no-cache`: never served stale (not even on error, nor to `max-stale`). */
  readonly mustRevalidate: boolean
  /** Seconds of `stale-if-error` allowed past freshness (0 = none). */
  readonly staleIfErrorSecs: number
}

/**
 * The response headers the library judges freshness from (what is served keeps the origin's):
 * - `cache-private`: `private` is dropped (so a shared cache may store it; `no-store` stays);
 * - no explicit freshness (max-age, s-maxage, Expires): `max-age=default-ttl-secs` (0: none,
 *   and no heuristic freshness from Last-Modified either);
 * - the route's stale windows when the response names none;
 * - `must-revalidate` and `proxy-revalidate` (the same for a shared cache, RFC 9111 §5.2.2.8)
 *   are taken out and kept as `mustRevalidate`, with the stale windows removed: the library
 *   refuses every reuse of a `must-revalidate` response, even a fresh one, and treats
 *   `proxy-revalidate` as already stale; this cache serves such a response while it is fresh
 *   and revalidates it after, never serving it stale.
 */
export const judge = (rules: CacheRules, headers: Record<string, string>): Judged => {
  const cc = parseCacheControl(headers["cache-control"])
  if (rules.cachePrivate) cc.delete("private")
  const explicit = cc.has("max-age") || cc.has("s-maxage") || headers["expires"] !== undefined
  if (!explicit && rules.defaultTtlSecs > 0) cc.set("max-age", String(rules.defaultTtlSecs))
  // no-cache: stale from the start and never served without revalidation (the library would
  // serve it to a request with max-stale)
  const mustRevalidate = cc.has("must-revalidate") || cc.has("proxy-revalidate") || cc.has("no-cache")
  if (mustRevalidate) {
    cc.delete("must-revalidate")
    cc.delete("proxy-revalidate")
    cc.delete("stale-while-revalidate")
    cc.delete("stale-if-error")
  } else {
    if (!cc.has("stale-while-revalidate") && rules.staleWhileRevalidateSecs > 0) cc.set("stale-while-revalidate", String(rules.staleWhileRevalidateSecs))
    if (!cc.has("stale-if-error") && rules.staleIfErrorSecs > 0) cc.set("stale-if-error", String(rules.staleIfErrorSecs))
  }
  const out = { ...headers }
  if (cc.size > 0) out["cache-control"] = formatCacheControl(cc)
  else delete out["cache-control"]
  const sie = Number(cc.get("stale-if-error"))
  return { headers: out, mustRevalidate, staleIfErrorSecs: Number.isFinite(sie) && sie > 0 ? sie : 0 }
}

/** Whether a response is explicitly public (`Cache-Control: public`). */
export const isPublic = (headers: Record<string, string>): boolean => parseCacheControl(headers["cache-control"]).has("public")

/**
 * This cache's own refusals before the library's verdict: the status is not one the route
 * caches (206 never: ranges bypass), a `Set-Cookie` response or a request with
 * `Authorization` without an explicit `public`, or no freshness at all (no explicit lifetime
 * and `default-ttl-secs 0`) and nothing to revalidate with.
 */
export const refusal = (
  rules: CacheRules,
  status: number,
  requestHasAuthorization: boolean,
  headers: Record<string, string>
): string | undefined => {
  if (!rules.statuses.has(status) || status === 206) return "status"
  const pub = isPublic(headers)
  if (headers["set-cookie"] !== undefined && !pub) return "set-cookie"
  if (requestHasAuthorization && !pub) return "authorization"
  const cc = parseCacheControl(headers["cache-control"])
  if (cc.has("no-store")) return "no-store"
  if (cc.has("private") && !rules.cachePrivate) return "private"
  const explicit = cc.has("max-age") || cc.has("s-maxage") || headers["expires"] !== undefined
  if (!explicit && rules.defaultTtlSecs === 0 && headers["etag"] === undefined && headers["last-modified"] === undefined) return "no-freshness"
  return undefined
}
