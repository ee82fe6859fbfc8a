/**
 * The "cache" phase (Phases.ts): after the filters and agents (auth and WAF decide before
 * anything is served from the cache), before the upstream. Per request: bypass, or look the
 * key up; a fresh entry is served (`Served`), a stale one within stale-while-revalidate is
 * served while one background refresh runs, one with validators is revalidated, else the
 * request goes upstream and fills the key (`Fill.ts`), holding its lock so concurrent misses
 * wait for it (up to `lock-timeout`). `Cache-Status` is added by a response stage.
 */
import * as Duration from "effect/Duration"
import type { RouteConfig, SentinelConfig } from "../config/Schema.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import { pendingStep, served, type PendingStep, type RouteExtension, type StageStep } from "../pipeline/Stage.js"
import type { ResponseCache } from "./Cache.js"
import { CacheExchange } from "./Exchange.js"
import { discardingSink, FillSink } from "./Fill.js"
import { routeFilters } from "../filters/Chain.js"
import { encodingAcceptable, type RouteCodings } from "./Variants.js"
import { bypassReason, compileRules, parseCacheControl, primaryKey, type CacheRules } from "./Rules.js"
import type { CacheEntry } from "./Store.js"

export type Verdict = "fresh" | "stale" | "revalidate" | "refetch"

const hasValidators = (e: CacheEntry): boolean => e.etag !== undefined || e.lastModified !== undefined

/**
 * How an entry may answer this request. A request without directives of its own (no
 * Cache-Control, no Pragma: nearly all) is judged from the entry's times, computed from the
 * library's lifetime when it was stored; one with directives asks the library
 * (`libraryVerdict`). Both then apply this cache's stricter rules.
 */
export const verdictOf = (x: CacheExchange, e: CacheEntry): Verdict => {
  if (x.ctx.header("authorization") !== undefined && !e.public) return "refetch"
  if (x.ctx.header("cache-control") !== undefined || x.ctx.header("pragma") !== undefined) return libraryVerdict(x, e)
  const now = x.cache.now()
  if (now < e.freshUntil) return "fresh"
  if (!e.mustRevalidate && now < e.staleUntil) return "stale"
  return hasValidators(e) ? "revalidate" : "refetch"
}

/** The library's verdict (`evaluateRequest`) on a stored entry for this request, with the rules above it. */
export const libraryVerdict = (x: CacheExchange, e: CacheEntry): Verdict => {
  if (x.ctx.header("authorization") !== undefined && !e.public) return "refetch"
  const r = e.policy.evaluateRequest(x.policyRequest(e.names))
  const stale = e.policy.stale()
  if (r.revalidation === undefined) return e.mustRevalidate && stale ? (hasValidators(e) ? "revalidate" : "refetch") : "fresh"
  if (!r.revalidation.synchronous && !e.mustRevalidate) return "stale"
  return hasValidators(e) ? "revalidate" : "refetch"
}

interface Settings {
  readonly lockTimeoutMs: number
  readonly statusHeader: boolean
  readonly name: string
}

class CacheStep {
  constructor(
    private readonly cache: ResponseCache,
    private readonly rules: CacheRules,
    private readonly settings: Settings
  ) {}

  run(ctx: RequestContext): StageStep | PendingStep {
    const x = new CacheExchange(this.cache, this.rules, ctx)
    ctx.tap = x
    const reason = bypassReason(ctx, this.rules) ?? (parseCacheControl(ctx.header("cache-control")).has("no-store") ? "no-store" : undefined)
    if (reason !== undefined) {
      x.count("bypass")
      x.status = `fwd=bypass; detail=${reason}`
      return undefined
    }
    x.primary = primaryKey(ctx, this.rules)
    return this.lookup(x, true)
  }

  private lookup(x: CacheExchange, mayWait: boolean): StageStep | PendingStep {
    const key = x.variantOf()
    const found = this.cache.store.get(key)
    // never an encoding this client does not accept (Variants.encodingAcceptable): such a variant is a miss
    const e = found !== undefined && encodingAcceptable(found.contentEncoding, x.ctx.header("accept-encoding")) ? found : undefined
    if (e !== undefined) {
      const v = verdictOf(x, e)
      if (v === "fresh") {
        x.count("hit")
        x.status = `hit; ttl=${x.ttlOf(e)}${x.collapsed ? "; collapsed" : ""}`
        return this.serve(x, e)
      }
      if (v === "stale") {
        x.count("stale")
        x.status = `hit; ttl=${x.ttlOf(e)}; detail=stale-while-revalidate`
        this.refresh(x.ctx, e, key)
        return this.serve(x, e)
      }
      x.stale = e
      x.revalidating = v === "revalidate"
    }
    // HEAD is answered from a stored GET; its own answer (no body) fills nothing
    if (x.ctx.method === "HEAD") {
      x.count("miss")
      x.status = "fwd=miss"
      return undefined
    }
    if (this.settings.lockTimeoutMs > 0 && mayWait && !this.cache.locks.acquire(key)) {
      return pendingStep((done) =>
        this.cache.locks.wait(key, this.settings.lockTimeoutMs, (outcome) => {
          x.collapsed = true
          // filled: look again (a hit, unless the stored variant is another); else go upstream without waiting again
          if (outcome === "filled") return done(this.lookup(x, false) as StageStep)
          this.goUpstream(x, undefined)
          done(undefined)
        })
      )
    }
    this.goUpstream(x, this.settings.lockTimeoutMs > 0 && mayWait ? key : undefined)
    return undefined
  }

  private goUpstream(x: CacheExchange, lockKey: string | undefined): void {
    x.filling = true
    x.lockKey = lockKey
    if (x.revalidating && x.stale !== undefined) {
      x.ctx.upstreamHeaders = x.conditionalHeaders(x.ctx.upstreamHeaders, x.stale)
      x.status = "fwd=stale"
    } else x.status = x.stale !== undefined ? "fwd=stale" : "fwd=miss"
    // a revalidation is counted by its answer (revalidated on a 304, miss otherwise)
    if (!x.revalidating && x.result === undefined) x.count("miss")
  }

  private serve(x: CacheExchange, e: CacheEntry): StageStep {
    return served((sink) => {
      if (x.writeEntry(sink, e)) sink.end()
    })
  }

  /** stale-while-revalidate: one background revalidation per key (the key's lock), never for the client. */
  private refresh(ctx: RequestContext, e: CacheEntry, key: string): void {
    const start = this.cache.hooks.refresh
    if (start === undefined || !this.cache.locks.acquire(key)) return
    const bg = new CacheExchange(this.cache, this.rules, ctx)
    bg.background = true
    bg.primary = e.primary
    bg.filling = true
    bg.lockKey = key
    bg.stale = e
    bg.revalidating = hasValidators(e)
    const headers = bg.revalidating ? bg.conditionalHeaders(ctx.upstreamHeaders, e) : [...ctx.upstreamHeaders]
    const started = start(ctx, headers, new FillSink(bg, discardingSink), () => bg.release(false))
    if (!started) bg.release(false)
  }
}

/** `Cache-Status: <name>; <params>` on every response of a caching route (when `status-header`). */
const statusStage = (name: string) => (ctx: RequestContext, _status: number, headers: Array<string>) => {
  const x = ctx.tap
  if (x instanceof CacheExchange && x.status !== "") headers.push("cache-status", `${name}; ${x.status}`)
}

/** The lock a request still holds when it ends (a fill cut short, a client gone) is released unfilled. */
const releaseStage = (ctx: RequestContext) => {
  const x = ctx.tap
  if (!(x instanceof CacheExchange)) return
  if (x.result === undefined) x.count("miss")
  x.release(false)
}

/** The codings of the route's `compress` filter (the last one listed is the one that applies), if it has one. */
const compressCodings = (route: RouteConfig, config: SentinelConfig): RouteCodings => {
  let codings: RouteCodings
  for (const f of routeFilters(route, config)) if (f.type === "compress") codings = f.algorithms
  return codings
}

/** The cache phase's built-in extension: routes with `cache { enabled #true }` (and a top-level `cache` enabled). */
export const cacheExtension = (cache: ResponseCache): RouteExtension => ({
  name: "cache",
  compile: (route: RouteConfig, config: SentinelConfig) => {
    if (!config.cache.enabled || route.cache === undefined || !route.cache.enabled || route.upstream === undefined) return undefined
    const settings: Settings = {
      lockTimeoutMs: Duration.toMillis(config.cache.lockTimeout),
      statusHeader: config.cache.statusHeader,
      name: config.cache.statusHeaderName
    }
    const step = new CacheStep(cache, compileRules(route.id, route.cache, compressCodings(route, config)), settings)
    return {
      request: [(ctx) => step.run(ctx)],
      complete: [releaseStage],
      ...(settings.statusHeader ? { response: [statusStage(settings.name)] } : {})
    }
  }
})
