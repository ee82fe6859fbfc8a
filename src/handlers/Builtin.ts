/**
 * Builtin handlers (`builtin-handler "<name>"` on a route): answers the proxy
 * makes itself, without an upstream.
 */
import type { BuiltinHandler } from "../config/Schema.js"

export interface BuiltinAnswer {
  readonly status: number
  readonly contentType: string
  readonly body: string
}

/** What builtin handlers may read of the running proxy. */
export interface BuiltinView {
  readonly version: string
  readonly startedAt: number
  readonly routes: ReadonlyArray<{ readonly id: string; readonly priority: number; readonly kind: string }>
  readonly upstreams: ReadonlyArray<{
    readonly id: string
    readonly algorithm?: string
    readonly targets: ReadonlyArray<{
      readonly address: string
      readonly weight: number
      /** Requests in flight to the target. */
      readonly active: number
      /** Healthy by active checks and not passively ejected. */
      readonly healthy: boolean
      /** Not disabled by the operator. */
      readonly enabled?: boolean
      /** Would get traffic now: enabled, healthy and its circuit admits. */
      readonly eligible?: boolean
      /** Circuit breaker state: "closed" | "open" | "half-open". */
      readonly circuit?: string
      readonly consecutive_failures?: number
      /** Passive window: outcomes seen, failures among them, ejected now. */
      readonly passive?: { readonly outcomes: number; readonly failures: number; readonly ejected: boolean }
      readonly ewma_latency_ms?: number
      /** Open pool connections. */
      readonly connections?: number
    }>
  }>
  readonly metrics?: () => Promise<{ readonly contentType: string; readonly body: string }>
  readonly config?: () => unknown
  /** `cache-purge` / `cache-stats` (src/cache/Builtins.ts), given the request. */
  readonly cache?: (name: "cache-purge" | "cache-stats", request: BuiltinRequest) => BuiltinAnswer
}

/** What a builtin that acts on the request reads of it (the cache's purge). */
export interface BuiltinRequest {
  readonly method: string
  readonly host: string
  readonly path: string
  readonly header: (lowerName: string) => string | undefined
  readonly traceId: string
  readonly clientIp: string
  readonly routeId: string
  /** The request came on a listener with `admin #true`. */
  readonly admin: boolean
}

const json = (status: number, value: unknown): BuiltinAnswer => ({
  status,
  contentType: "application/json",
  body: JSON.stringify(value) + "\n"
})

export const runBuiltin = async (name: BuiltinHandler, view: BuiltinView, traceId: string, request?: BuiltinRequest): Promise<BuiltinAnswer> => {
  switch (name) {
    case "health":
      return json(200, { status: "healthy" })
    case "status":
      return json(200, {
        status: "running",
        version: view.version,
        uptime_secs: Math.floor((Date.now() - view.startedAt) / 1000),
        routes: view.routes,
        upstreams: view.upstreams.map((u) => ({ id: u.id, targets: u.targets.length }))
      })
    case "upstreams":
      return json(200, { upstreams: view.upstreams })
    case "not-found":
      return json(404, { error: "404 Not Found", trace_id: traceId })
    case "metrics": {
      if (view.metrics === undefined) return json(404, { error: "metrics are not enabled", trace_id: traceId })
      const m = await view.metrics()
      return { status: 200, contentType: m.contentType, body: m.body }
    }
    case "config":
      // the running configuration: admin listeners only (404 elsewhere, as if there were no such route)
      if (view.config === undefined || request?.admin !== true) return json(404, { error: "404 Not Found", trace_id: traceId })
      return json(200, view.config())
    case "cache-purge":
    case "cache-stats":
      if (view.cache === undefined || request === undefined) return json(404, { error: "the cache is not available", trace_id: traceId })
      return view.cache(name, request)
  }
}
