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
 *   agent             not compiled here (see `agents` below)
 *
 * Hot path: every stage is a plain synchronous function (DESIGN.md §2); only a rate limit in
 * `on-limit "delay"` mode returns an Effect, and only for the request it actually delays.
 *
 * State: one limiter per rate-limit filter (shared by every route listing it), kept across
 * requests and across reloads while the filter's definition is unchanged. Filters removed by a
 * reload are forgotten (the map holds only filters of the latest configuration).
 *
 * Agents: filters of `type "agent"` belong to the agents extension, which calls every agent of
 * a route in one stage. Pass that extension as `agents`: its request stages are put where the
 * route's first agent filter stands, so `filters "rl" "waf" "hdr"` runs rate-limit, then the
 * agents, then headers. Without it, agent filters are skipped here (and `agentPosition` tells
 * another extension where they stand).
 */
import { Effect } from "effect"
import type { FilterConfig, RouteConfig, SentinelConfig } from "../config/Schema.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import type { Answer, RequestStage, ResponseStage, RouteContribution, RouteExtension, StageStep } from "../pipeline/Stage.js"
import { parseAuthority } from "../http/Authority.js"
import { compileCors } from "./Cors.js"
import type { Continue, FilterOutcome, Respond } from "./FilterOutcome.js"
import { makeHeadersFilter } from "./Headers.js"
import { makeRateLimiter, type RateLimiter } from "./RateLimit.js"
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

/** Applies a request-phase outcome: `undefined` to continue, an Answer, or (delay) an Effect. */
const applyOutcome = (
  ctx: RequestContext,
  f: FilterConfig,
  outcome: FilterOutcome,
  notify: Notify
): StageStep | Effect.Effect<StageStep> => {
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
  if (c.delayMs !== undefined && c.delayMs > 0) return sleep(c.delayMs)
  return undefined
}

interface Compiled {
  readonly request?: RequestStage
  readonly response?: ResponseStage
}

export interface FilterChain extends RouteExtension {
  /** The limiter of a rate-limit filter (tests, admin views). */
  readonly limiter: (filterId: string) => RateLimiter | undefined
}

export const makeFilterChain = (options: FilterChainOptions = {}): FilterChain => {
  const notify: Notify = options.onDecision ?? (() => undefined)
  const limiters = new Map<string, { readonly key: string; readonly limiter: RateLimiter }>()
  let lastConfig: SentinelConfig | undefined

  const limiterFor = (f: Extract<FilterConfig, { type: "rate-limit" }>): RateLimiter => {
    const key = JSON.stringify(f)
    const cached = limiters.get(f.id)
    if (cached !== undefined && cached.key === key) return cached.limiter
    const limiter = makeRateLimiter(f, options.now)
    limiters.set(f.id, { key, limiter })
    return limiter
  }

  const forgetRemoved = (config: SentinelConfig) => {
    if (config === lastConfig) return
    lastConfig = config
    const ids = new Set((config.filters ?? []).map((f) => f.id))
    for (const id of limiters.keys()) if (!ids.has(id)) limiters.delete(id)
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
        const limiter = limiterFor(f)
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
      case "timeout":
      case "agent":
        return undefined
    }
  }

  const compile = (route: RouteConfig, config: SentinelConfig): RouteContribution | undefined => {
    forgetRemoved(config)
    const filters = routeFilters(route, config)
    const agents = options.agents?.compile(route, config)
    if (filters.length === 0 && agents === undefined) return undefined
    const request: Array<RequestStage> = []
    const response: Array<ResponseStage> = []
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
    }
    placeAgents()
    const out: { -readonly [K in keyof RouteContribution]: RouteContribution[K] } = { ...agents }
    if (request.length > 0) out.request = request
    if (response.length > 0) out.response = response
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
    limiter: (id) => limiters.get(id)?.limiter
  }
}
