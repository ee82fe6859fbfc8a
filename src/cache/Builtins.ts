/**
 * `builtin-handler "cache-purge"` and `"cache-stats"`. Purge: `PURGE` (or `DELETE`) of a path
 * removes every stored variant of it for the request's host (all query strings); with an
 * `X-Purge-Pattern: /images/*` header, every path of the host matching the pattern. Stats: the
 * store and each caching route (entries, bytes, hits, misses, evictions, hit ratio). Both answer
 * only on listeners with `admin #true` unless `cache { admin-only #false }`; every purge is
 * audited.
 */
import type { BuiltinAnswer, BuiltinRequest } from "../handlers/Builtin.js"
import type { AuditEntry } from "../observability/AuditFormat.js"
import type { ResponseCache } from "./Cache.js"

const json = (status: number, value: unknown): BuiltinAnswer => ({ status, contentType: "application/json", body: JSON.stringify(value) + "\n" })

export const cacheBuiltin = (
  cache: ResponseCache,
  adminOnly: () => boolean,
  audit: (entry: AuditEntry) => void,
  name: "cache-purge" | "cache-stats",
  r: BuiltinRequest
): BuiltinAnswer => {
  if (adminOnly() && !r.admin) return json(404, { error: "404 Not Found", trace_id: r.traceId })
  if (name === "cache-stats") return json(200, cache.stats())
  if (r.method !== "PURGE" && r.method !== "DELETE") return json(405, { error: "use PURGE (or DELETE) of the path to purge", trace_id: r.traceId })
  const pattern = r.header("x-purge-pattern")
  if (pattern !== undefined && !pattern.startsWith("/")) return json(400, { error: "X-Purge-Pattern must be a path pattern starting with \"/\"", trace_id: r.traceId })
  const purged = cache.purge(r.host, r.path, pattern)
  audit({
    timestamp: Date.now(),
    trace_id: r.traceId,
    event_type: "cache_purge",
    source: `route:${r.routeId}`,
    decision: "purge",
    status: 200,
    reason: `${purged} entries of ${r.host}${pattern ?? r.path}`,
    client_ip: r.clientIp,
    route_id: r.routeId,
    method: r.method,
    path: pattern ?? r.path
  })
  return json(200, { purged, host: r.host, ...(pattern !== undefined ? { pattern } : { path: r.path }) })
}
