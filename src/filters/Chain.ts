/**
 * The `RouteExtension` for a route's `filters "a" "b" …` list: each filter of the `filters { }`
 * block becomes request and/or response stages, in the route's order (Sentinel applies them in
 * that order; a filter that answers stops the rest).
 *
 *   headers           request: edits the upstream request headers; response: the client's
 *   security-headers  response: the preset (upstream values win unless `override`)
 *   rate-limit        request: token bucket per key; 429 + Retry-After + X-RateLimit-*
 *   cors              request: answers preflights, adds CORS headers to the response
 *   redirect          request: answers with a redirect
 *   url-rewrite       request: Host / path sent upstream (routing has already happened)
 *   timeout           no stage: per-route deadlines, read once when the plan is compiled
 *   compress          response: the body re-encoded for the client (gzip, brotli; Compress.ts);
 *                     one per route, the last listed wins
 *   agent             not compiled here (see `agents` below)
 *
 * Hot path: every stage is a plain synchronous function (DESIGN.md §2); only a rate limit in
 * `on-limit "delay"` mode returns an Effect, and only for the request it actually delays; a
 * `backend "redis"` rate limit is a `PendingStep` (callbacks, no fiber) waiting for Redis's
 * answer (RedisRateLimit.ts), its delay included.
 *
 * The top-level `rate-limits` block adds its stages first: `global` (one bucket table for every
 * routed request) then, on routes that list no rate-limit filter, the `default-rps` limit (a
 * bucket per route and key). Both answer like a rate-limit filter (429, `Retry-After`,
 * `X-RateLimit-*`); their decisions carry the filter ids "rate-limits.global" and
 * "rate-limits.default".
 *
 * State: one limiter per rate-limit filter (shared by every route listing it), kept across
 * requests and across reloads while the filter's definition is unchanged. Filters removed by a
 * reload are forgotten (the map holds only filters of the latest configuration); Redis
 * connections are shared by the filters naming the same Redis and closed when none does any
 * more, or by `close()`.
 *
 * Agents: filters of `type "agent"` belong to the agents extension, which calls every agent of
 * a route in one stage. Pass that extension as `agents`: its request stages are put where the
 * route's first agent filter stands, so `filters "rl" "waf" "hdr"` runs rate-limit, then the
 * agents, then headers. Without it, agent filters are skipped here (and `agentPosition` tells
 * another extension where they stand).
 */
import * as Effect from "effect/Effect"
import type { FilterConfig, RouteConfig, SentinelConfig } from "../config/Schema.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import { errorBody } from "../pipeline/ErrorResponse.js"
import {
  type Answer, pendingStep, type RequestStage, type ResponseEncoding, type ResponseStage, type RouteContribution, type RouteExtension,
  type StageStep
} from "../pipeline/Stage.js"
import { parseAuthority } from "../http/Authority.js"
import { compileCors } from "./Cors.js"
import type { Continue, FilterOutcome, Respond } from "./FilterOutcome.js"
import { makeHeadersFilter } from "./Headers.js"
import {
  defaultRateLimitConfig, makeOutcomeOf, makeRateLimiter, rateLimitKeyOf, type RateLimitConfig, type RateLimiter, type RedisBackendConfig,
  TokenBuckets
} from "./RateLimit.js"
import { makeRedisRateLimiter, type RedisBackendHooks, type RedisRateLimiter, RedisStores, type RedisStoreOptions } from "./RedisRateLimit.js"
import { requireEncoderSupport } from "./BodyEncoder.js"
import { compressResponse } from "./Compress.js"
import { redirect } from "./Redirect.js"
import { applySecurityHeaders } from "./SecurityHeaders.js"
import { urlRewrite } from "./UrlRewrite.js"

/** A decision that rejected or altered a request, for metrics and logs. */
export interface FilterDecision {
  readonly filterId: string
  readonly type: FilterConfig["type"]
  /** `rate-limited`, `cors-preflight`, `redirect`, `rate-limit-delayed`, … */
  readonly reason: string
  /** Status answered, or 0 when the request continued (altered, delayed, logged only). */
  readonly status: number
}

export interface FilterChainOptions {
  /**
   * The agents' extension (`type "agent"` filters). Its request stages run at the position of
   * the route's first agent filter; its other contributions pass through unchanged.
   */
  readonly agents?: RouteExtension
  /** Called for every decision that answers, delays or only logs (metrics, audit). */
  readonly onDecision?: (ctx: RequestContext, decision: FilterDecision) => void
  /** Clock of the rate limiters, ms (tests). Default `performance.now`. */
  readonly now?: () => number
  /** Where `backend "redis"` limits report failures, circuit changes and log lines (metrics, error log). */
  readonly redis?: RedisBackendHooks
  /** Extra ioredis options (tests). */
  readonly redisClientOptions?: RedisStoreOptions["clientOptions"]
  /** Where the `compress` filters' decisions go (metrics). */
  readonly compression?: CompressionHooks
}

/** The `compress` filters' decisions, per route. */
export interface CompressionHooks {
  /** A response was sent as it came, and why (`CompressSkip`). */
  readonly skipped: (route: string, reason: string) => void
  /** A response was encoded with `coding`: called when it is over, with the bytes in and out. */
  readonly compressed: (route: string, coding: string, bytesIn: number, bytesOut: number, complete: boolean) => void
}

/** The route's filters resolved to their definitions, in the route's order (unknown ids skipped). */
export const routeFilters = (route: RouteConfig, config: SentinelConfig): Array<FilterConfig> => {
  const byId = new Map((config.filters ?? []).map((f) => [f.id, f]))
  const out: Array<FilterConfig> = []
  for (const id of route.filters ?? []) {
    const f = byId.get(id)
    if (f !== undefined) out.push(f)
  }
  return out
}

/** Index in `routeFilters(route, config)` of the first `type "agent"` filter, -1 when none. */
export const agentPosition = (route: RouteConfig, config: SentinelConfig): number =>
  routeFilters(route, config).findIndex((f) => f.type === "agent")

/** The prefix a `replace-prefix-match` replaces: the route's first `path-prefix`, else "/". */
const matchedPrefixOf = (route: RouteConfig): string => {
  for (const m of route.matches) if (m._tag === "PathPrefix") return m.prefix
  return "/"
}

/** A filter's `Respond` as a pipeline `Answer` (the pipeline sets Content-Type/-Length itself). */
export const answerOf = (r: Respond): Answer => {
  const headers: Array<string> = []
  let contentType: string | undefined
  for (let i = 0; i + 1 < r.headers.length; i += 2) {
    const lower = r.headers[i].toLowerCase()
    if (lower === "content-type") contentType = r.headers[i + 1]
    else if (lower !== "content-length") headers.push(r.headers[i], r.headers[i + 1])
  }
  return {
    status: r.status,
    headers,
    body: r.body,
    contentType: contentType ?? "text/plain; charset=utf-8",
    reason: r.reason
  }
}

const addResponseHeaders = (ctx: RequestContext, headers: ReadonlyArray<string>): void => {
  if (headers.length === 0) return
  if (ctx.responseHeaders === undefined) ctx.responseHeaders = headers.slice()
  else for (let i = 0; i < headers.length; i++) ctx.responseHeaders.push(headers[i])
}

const setHost = (flat: Array<string>, host: string): void => {
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i].length === 4 && flat[i].toLowerCase() === "host") {
      flat[i + 1] = host
      return
    }
  }
  flat.unshift("host", host)
}

const sleep = (ms: number): Effect.Effect<StageStep> =>
  Effect.async<StageStep>((resume) => {
    const t = setTimeout(() => resume(Effect.succeed(undefined)), ms)
    return Effect.sync(() => clearTimeout(t))
  })

type Notify = (ctx: RequestContext, decision: FilterDecision) => void

/** Applies a request-phase outcome: `undefined` to continue, an Answer, or the ms to wait first (delay). */
const applyOutcomeStep = (ctx: RequestContext, f: { readonly id: string; readonly type: FilterConfig["type"] }, outcome: FilterOutcome, notify: Notify): StageStep | number => {
  if (outcome._tag === "Respond") {
    notify(ctx, { filterId: f.id, type: f.type, reason: outcome.reason, status: outcome.status })
    return answerOf(outcome)
  }
  const c: Continue = outcome
  if (c.responseHeaders !== undefined) addResponseHeaders(ctx, c.responseHeaders)
  if (c.rewrite !== undefined) {
    if (c.rewrite.path !== undefined) ctx.upstreamPath = ctx.query === "" ? c.rewrite.path : `${c.rewrite.path}?${ctx.query}`
    if (c.rewrite.host !== undefined) setHost(ctx.upstreamHeaders, c.rewrite.host)
  }
  if (c.note !== undefined) {
    ctx.error ??= c.note
    notify(ctx, { filterId: f.id, type: f.type, reason: c.note, status: 0 })
  }
  if (c.delayMs !== undefined && c.delayMs > 0) return c.delayMs
  return undefined
}

/** Applies a request-phase outcome: `undefined` to continue, an Answer, or (delay) an Effect. */
const applyOutcome = (
  ctx: RequestContext,
  f: { readonly id: string; readonly type: FilterConfig["type"] },
  outcome: FilterOutcome,
  notify: Notify
): StageStep | Effect.Effect<StageStep> => {
  const step = applyOutcomeStep(ctx, f, outcome, notify)
  return typeof step === "number" ? sleep(step) : step
}

/** Reason of a `redis-fallback "closed"` refusal (access log `error`, metrics, audit). */
export const RATE_LIMIT_BACKEND_UNAVAILABLE = "rate-limit-backend-unavailable"

/** A Redis-backed limit as a stage: a wait on callbacks for Redis's answer (or the fallback's), then its delay if any. */
const redisStage = (f: { readonly id: string; readonly type: "rate-limit" }, limiter: RedisRateLimiter, notify: Notify): RequestStage => {
  const retryAfter = String(Math.max(1, Math.ceil(limiter.config.backend.circuitOpenMs / 1000)))
  return (ctx) =>
    pendingStep((done) => {
      let live = true
      let timer: ReturnType<typeof setTimeout> | undefined
      limiter.decide(ctx, (outcome) => {
        if (!live) return
        if (outcome === "unavailable") {
          notify(ctx, { filterId: f.id, type: f.type, reason: RATE_LIMIT_BACKEND_UNAVAILABLE, status: 503 })
          done({
            status: 503,
            headers: ["Retry-After", retryAfter],
            body: errorBody(503, RATE_LIMIT_BACKEND_UNAVAILABLE, ctx.traceId),
            contentType: "application/json",
            reason: RATE_LIMIT_BACKEND_UNAVAILABLE
          })
          return
        }
        const step = applyOutcomeStep(ctx, f, outcome, notify)
        if (typeof step === "number") timer = setTimeout(() => done(undefined), step)
        else done(step)
      })
      return () => {
        live = false
        if (timer !== undefined) clearTimeout(timer)
      }
    })
}

interface Compiled {
  readonly request?: RequestStage
  readonly response?: ResponseStage
  readonly encoding?: ResponseEncoding
}

export interface FilterChain extends RouteExtension {
  /** The limiter of a local rate-limit filter (tests, admin views). */
  readonly limiter: (filterId: string) => RateLimiter | undefined
  /** The limiter of a `backend "redis"` rate-limit filter (tests, admin views). */
  readonly redisLimiter: (filterId: string) => RedisRateLimiter | undefined
  /** Closes the Redis connections (the proxy's scope, after the listeners drained). */
  readonly close: () => void
}

type AnyLimiter =
  | { readonly kind: "local"; readonly limiter: RateLimiter }
  | { readonly kind: "redis"; readonly limiter: RedisRateLimiter }

/** A `rate-limits` limit as a filter config: reject with 429, Sentinel's defaults. */
const topLevelLimit = (maxRps: number, burst: number, key: RateLimitConfig["key"]): RateLimitConfig => ({
  ...defaultRateLimitConfig, maxRps, burst, key
})

export const makeFilterChain = (options: FilterChainOptions = {}): FilterChain => {
  const notify: Notify = options.onDecision ?? (() => undefined)
  const limiters = new Map<string, { readonly key: string; readonly limiter: AnyLimiter }>()
  const stores = new RedisStores({ hooks: options.redis, clientOptions: options.redisClientOptions, now: options.now })
  let lastConfig: SentinelConfig | undefined

  const release = (l: AnyLimiter) => {
    if (l.kind === "redis") stores.release(l.limiter.store)
  }

  const limiterFor = (f: Extract<FilterConfig, { type: "rate-limit" }>): AnyLimiter => {
    const key = JSON.stringify(f)
    const cached = limiters.get(f.id)
    if (cached !== undefined && cached.key === key) return cached.limiter
    const backend = f.backend
    const limiter: AnyLimiter = backend.type === "redis"
      ? { kind: "redis", limiter: makeRedisRateLimiter(f.id, f as RateLimitConfig & { backend: RedisBackendConfig }, stores.acquire(backend), options.now) }
      : { kind: "local", limiter: makeRateLimiter(f, options.now) }
    if (cached !== undefined) release(cached.limiter)
    limiters.set(f.id, { key, limiter })
    return limiter
  }

  // `rate-limits`: the global limit and the routes' default limit, kept while their settings are unchanged
  let globalLimit: { readonly key: string; readonly stage: RequestStage } | undefined
  let defaultLimit: { readonly key: string; readonly stage: RequestStage } | undefined
  const globalStage = (config: SentinelConfig): RequestStage | undefined => {
    const g = config.rateLimits.global
    if (g === undefined) return (globalLimit = undefined)
    const key = JSON.stringify(g)
    if (globalLimit?.key === key) return globalLimit.stage
    const limiter = makeRateLimiter(topLevelLimit(g.maxRps, g.burst, g.key), options.now)
    const id = { id: "rate-limits.global", type: "rate-limit" as const }
    const stage: RequestStage = (ctx) => applyOutcome(ctx, id, limiter.check(ctx), notify)
    globalLimit = { key, stage }
    return stage
  }
  const defaultStage = (config: SentinelConfig): RequestStage | undefined => {
    const r = config.rateLimits
    if (r.defaultRps === undefined) return (defaultLimit = undefined)
    const key = JSON.stringify([r.defaultRps, r.defaultBurst, r.key])
    if (defaultLimit?.key === key) return defaultLimit.stage
    const c = topLevelLimit(r.defaultRps, r.defaultBurst ?? defaultRateLimitConfig.burst, r.key)
    const buckets = new TokenBuckets(c.maxRps, c.burst, c.maxKeys, options.now)
    const outcomeOf = makeOutcomeOf(c)
    const id = { id: "rate-limits.default", type: "rate-limit" as const }
    // a bucket per route and key
    const stage: RequestStage = (ctx) => applyOutcome(ctx, id, outcomeOf(buckets.take(`${ctx.routeId}\u0000${rateLimitKeyOf(c.key, ctx)}`)), notify)
    defaultLimit = { key, stage }
    return stage
  }

  const forgetRemoved = (config: SentinelConfig) => {
    if (config === lastConfig) return
    lastConfig = config
    const ids = new Set((config.filters ?? []).map((f) => f.id))
    for (const [id, entry] of limiters) {
      if (ids.has(id)) continue
      limiters.delete(id)
      release(entry.limiter)
    }
  }

  const compileOne = (f: FilterConfig, route: RouteConfig): Compiled | undefined => {
    switch (f.type) {
      case "headers": {
        const h = makeHeadersFilter(f)
        const request: RequestStage | undefined =
          f.phase === "response" ? undefined : (ctx) => {
            h.onRequest(ctx.upstreamHeaders)
            return undefined
          }
        const response: ResponseStage | undefined = f.phase === "request" ? undefined : (_ctx, _status, headers) => h.onResponse(headers)
        return { request, response }
      }
      case "security-headers":
        return { response: (ctx, _status, headers) => applySecurityHeaders(f, headers, ctx.scheme) }
      case "rate-limit": {
        const l = limiterFor(f)
        if (l.kind === "redis") return { request: redisStage(f, l.limiter, notify) }
        const limiter = l.limiter
        return { request: (ctx) => applyOutcome(ctx, f, limiter.check(ctx), notify) }
      }
      case "cors": {
        const cors = compileCors(f)
        return { request: (ctx) => applyOutcome(ctx, f, cors.check(ctx), notify) }
      }
      case "redirect": {
        const prefix = matchedPrefixOf(route)
        return {
          request: (ctx) => {
            const host = ctx.header("host")
            const port = host === undefined ? null : parseAuthority(host)?.port ?? null
            return applyOutcome(ctx, f, redirect(f, ctx, port, prefix), notify)
          }
        }
      }
      case "url-rewrite": {
        const prefix = matchedPrefixOf(route)
        return { request: (ctx) => applyOutcome(ctx, f, urlRewrite(f, ctx, prefix), notify) }
      }
      case "compress": {
        requireEncoderSupport()
        const hooks = options.compression
        const end = (ctx: RequestContext, bytesIn: number, bytesOut: number, complete: boolean, coding: string) =>
          hooks?.compressed(ctx.routeId, coding, bytesIn, bytesOut, complete)
        return {
          encoding: {
            start: (ctx, status, headers) => {
              const d = compressResponse(f, ctx.method, ctx.header("accept-encoding"), status, headers)
              if (d._tag === "Skip") {
                hooks?.skipped(ctx.routeId, d.reason)
                return undefined
              }
              const coding = d.coding
              return { coding, encoder: d.encoder, end: (c, i, o, complete) => end(c, i, o, complete, coding) }
            }
          }
        }
      }
      case "timeout":
      case "agent":
        return undefined
    }
  }

  const compile = (route: RouteConfig, config: SentinelConfig): RouteContribution | undefined => {
    forgetRemoved(config)
    const filters = routeFilters(route, config)
    const agents = options.agents?.compile(route, config)
    const global = globalStage(config)
    const byDefault = filters.some((f) => f.type === "rate-limit") ? undefined : defaultStage(config)
    if (filters.length === 0 && agents === undefined && global === undefined && byDefault === undefined) return undefined
    const request: Array<RequestStage> = []
    if (global !== undefined) request.push(global)
    if (byDefault !== undefined) request.push(byDefault)
    const response: Array<ResponseStage> = []
    let encoding: ResponseEncoding | undefined
    let agentsPlaced = false
    const placeAgents = () => {
      if (agentsPlaced || agents === undefined) return
      agentsPlaced = true
      if (agents.request) request.push(...agents.request)
      if (agents.response) response.push(...agents.response)
    }
    for (const f of filters) {
      if (f.type === "agent") {
        placeAgents()
        continue
      }
      const c = compileOne(f, route)
      if (c?.request) request.push(c.request)
      if (c?.response) response.push(c.response)
      if (c?.encoding) encoding = c.encoding
    }
    placeAgents()
    const out: { -readonly [K in keyof RouteContribution]: RouteContribution[K] } = { ...agents }
    if (request.length > 0) out.request = request
    if (response.length > 0) out.response = response
    if (encoding !== undefined) out.encoding = encoding
    // A later timeout filter's values replace earlier ones (and the route's/upstream's).
    for (const f of filters) {
      if (f.type !== "timeout") continue
      if (f.requestTimeoutSecs !== null) out.timeoutMs = Math.round(f.requestTimeoutSecs * 1000)
      if (f.upstreamTimeoutSecs !== null) out.upstreamTimeoutMs = Math.round(f.upstreamTimeoutSecs * 1000)
      if (f.connectTimeoutSecs !== null) out.connectTimeoutMs = Math.round(f.connectTimeoutSecs * 1000)
    }
    return out
  }

  return {
    name: "filters",
    compile,
    limiter: (id) => {
      const l = limiters.get(id)?.limiter
      return l?.kind === "local" ? l.limiter : undefined
    },
    redisLimiter: (id) => {
      const l = limiters.get(id)?.limiter
      return l?.kind === "redis" ? l.limiter : undefined
    },
    close: () => {
      limiters.clear()
      stores.closeAll()
    }
  }
}
