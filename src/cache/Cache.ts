/**
 * The response cache of the proxy (RFC 9111, shared, in memory): one store for every route,
 * the collapsing locks, the clock, and what reloads, purges and `cache-stats` do. The request
 * path's part is `CacheStage.ts` (the "cache" phase); the rules are in `Rules.ts` and
 * `Variants.ts`, the byte-bounded store in `Store.ts`.
 */
import type CachePolicy from "http-cache-semantics"
import { lazyModule } from "../LazyModule.js"
import * as Duration from "effect/Duration"
import type { CacheStoreConfig, SentinelConfig } from "../config/Schema.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import type { ResponseSink } from "../upstream/Forward.js"
import { FillLocks } from "./Locks.js"
import { CacheStore, emptyStats, pathPattern, type RouteCacheStats } from "./Store.js"

/** What the cache reports to metrics (and how it starts a background refresh). */
export interface CacheHooks {
  /** A request's cache outcome: hit, stale, stale-if-error, miss, revalidated, bypass. */
  readonly result?: (routeId: string, result: string) => void
  readonly evicted?: (routeId: string) => void
  readonly changed?: (routeId: string, stats: RouteCacheStats) => void
  /** A route stopped caching: its series may go. */
  readonly dropped?: (routeId: string) => void
  /**
   * GET the request's resource again for the cache alone (stale-while-revalidate), with
   * `headers`, into `sink`; `done` once with whether a whole response arrived. False when it
   * cannot start (no target): then `done` is never called.
   */
  readonly refresh?: (ctx: RequestContext, headers: Array<string>, sink: ResponseSink, done: (ok: boolean) => void) => boolean
}

export interface CacheOptions {
  /** The cache's clock in epoch ms (freshness, ages, purges). Default `Date.now`; tests pass their own. */
  readonly now?: () => number
}

/** The settings of a route's cache that its entries depend on (a reload keeps the entries while they are equal). */
const routeFingerprint = (config: SentinelConfig, routeId: string): string | undefined => {
  const r = config.routes.find((x) => x.id === routeId)
  if (r?.cache === undefined || !r.cache.enabled || !config.cache.enabled) return undefined
  return JSON.stringify({ cache: r.cache, upstream: r.upstream }, (_k, v: unknown) => (Duration.isDuration(v) ? Duration.toMillis(v) : v))
}

/** http-cache-semantics loads with the first response judged for caching, not at start (bench/README.md, "Memory"). */
const cachePolicy = lazyModule<typeof CachePolicy>("http-cache-semantics")

export class ResponseCache {
  store: CacheStore
  readonly locks = new FillLocks()
  readonly now: () => number
  private policy: typeof CachePolicy | undefined
  private settings: CacheStoreConfig
  private fingerprints = new Map<string, string>()

  constructor(
    config: SentinelConfig,
    readonly hooks: CacheHooks,
    options: CacheOptions = {}
  ) {
    const now = options.now ?? Date.now
    this.now = now
    this.settings = config.cache
    this.store = this.newStore(config.cache)
    this.remember(config)
  }

  /** `http-cache-semantics`' policy on this cache's clock. */
  get Policy(): typeof CachePolicy {
    const now = this.now
    return (this.policy ??= class extends cachePolicy() {
      now(): number {
        return now()
      }
    })
  }

  private newStore(c: CacheStoreConfig): CacheStore {
    return new CacheStore(c.maxSize, this.now, { evicted: this.hooks.evicted, changed: this.hooks.changed })
  }

  private remember(config: SentinelConfig): void {
    this.fingerprints = new Map()
    for (const r of config.routes) {
      const f = routeFingerprint(config, r.id)
      if (f !== undefined) this.fingerprints.set(r.id, f)
    }
  }

  /**
   * A reload put `next` in force: routes whose cache settings (or upstream) changed, or that
   * are gone or stopped caching, lose their entries; the others keep theirs. A changed store
   * size starts an empty store.
   */
  configure(next: SentinelConfig): void {
    const before = this.fingerprints
    if (next.cache.maxSize !== this.settings.maxSize) {
      this.store.clear()
      this.store = this.newStore(next.cache)
    }
    this.settings = next.cache
    this.remember(next)
    for (const [id, f] of before) {
      if (this.fingerprints.get(id) === f) continue
      this.store.forgetRoute(id)
      this.hooks.dropped?.(id)
    }
  }

  /** `cache-purge`: every entry of `host` at `path` (all queries and variants), or whose path matches `pattern`. */
  purge(host: string, path: string, pattern: string | undefined): number {
    return this.store.purge(host, pattern === undefined ? (p) => p === path : pathPattern(pattern))
  }

  /** `cache-stats`: the store and each caching route. */
  stats(): unknown {
    const routes: Record<string, unknown> = {}
    const ids = new Set([...this.fingerprints.keys()])
    for (const id of this.store.allStats().keys()) ids.add(id)
    let bytes = 0
    let entries = 0
    for (const id of [...ids].sort()) {
      const s = this.store.allStats().get(id) ?? emptyStats()
      bytes += s.bytes
      entries += s.entries
      const lookups = s.hits + s.stale + s.misses + s.revalidated
      routes[id] = {
        entries: s.entries,
        bytes: s.bytes,
        hits: s.hits,
        stale: s.stale,
        revalidated: s.revalidated,
        misses: s.misses,
        bypass: s.bypass,
        evictions: s.evictions,
        hit_ratio: lookups === 0 ? 0 : Math.round(((s.hits + s.stale + s.revalidated) / lookups) * 10000) / 10000
      }
    }
    return {
      enabled: this.settings.enabled,
      backend: this.settings.backend,
      max_size: this.settings.maxSize,
      bytes,
      entries,
      routes
    }
  }
}
