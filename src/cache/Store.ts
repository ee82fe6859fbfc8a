/**
 * The in-memory store: a byte-bounded LRU (`lru-cache`, sized by each entry's head and body)
 * of response variants, an index from a resource's primary key to its variants and the names
 * that select them, per-route statistics, and purges (by path or pattern, per host).
 */
import type CachePolicy from "http-cache-semantics"
import { LRUCache } from "lru-cache"

export interface CacheEntry {
  /** `primary + "\0" + variant`. */
  readonly key: string
  readonly primary: string
  readonly routeId: string
  readonly host: string
  readonly path: string
  readonly status: number
  /** The response head as stored (hop-by-hop fields removed, no `Age`), flat `[name, value, ...]`. */
  readonly head: ReadonlyArray<string>
  readonly body: Buffer
  readonly size: number
  /** The library's view of the exchange (judged headers: route defaults added), for requests with their own directives. */
  readonly policy: CachePolicy
  /** Its validators, if any. */
  readonly etag: string | undefined
  readonly lastModified: string | undefined
  /** Its `Content-Encoding` (undefined: identity), checked against each request's `Accept-Encoding`. */
  readonly contentEncoding: string | undefined
  /** When (cache clock, ms) the entry was stored (or refreshed), and its `Age` then (s). */
  readonly storedAt: number
  readonly ageAtStore: number
  /** Fresh before this; servable stale (stale-while-revalidate) before `staleUntil`, on error before `errorUntil`. */
  readonly freshUntil: number
  readonly staleUntil: number
  readonly errorUntil: number
  readonly public: boolean
  /** `must-revalidate` / `proxy-revalidate`: never served stale. */
  readonly mustRevalidate: boolean
  /** The variant's selecting names (route `vary-headers` and the response's `Vary`). */
  readonly names: ReadonlyArray<string>
}

export interface RouteCacheStats {
  hits: number
  misses: number
  stale: number
  bypass: number
  revalidated: number
  evictions: number
  bytes: number
  entries: number
}

export interface StoreHooks {
  /** An entry left the store because the byte bound needed its room. */
  readonly evicted?: (routeId: string) => void
  /** Bytes or entries of a route changed. */
  readonly changed?: (routeId: string, stats: RouteCacheStats) => void
}

interface Resource {
  names: ReadonlyArray<string>
  readonly keys: Set<string>
}

/** A purge remembered for a while: fills that started before it are not stored (their content may be the purged one). */
interface PurgeMark {
  readonly host: string
  readonly matches: (path: string) => boolean
  readonly at: number
}

const PURGE_MEMORY_MS = 60_000

/** `*` matches any run of characters (also `/`), `?` one; everything else literally. */
export const pathPattern = (pattern: string): ((path: string) => boolean) => {
  const re = new RegExp("^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$")
  return (p) => re.test(p)
}

export const emptyStats = (): RouteCacheStats => ({ hits: 0, misses: 0, stale: 0, bypass: 0, revalidated: 0, evictions: 0, bytes: 0, entries: 0 })

export class CacheStore {
  private readonly lru: LRUCache<string, CacheEntry>
  private readonly resources = new Map<string, Resource>()
  private readonly stats = new Map<string, RouteCacheStats>()
  private purges: Array<PurgeMark> = []

  constructor(
    readonly maxSize: number,
    private readonly now: () => number,
    private readonly hooks: StoreHooks = {}
  ) {
    this.lru = new LRUCache<string, CacheEntry>({
      maxSize,
      maxEntrySize: maxSize,
      sizeCalculation: (e) => Math.max(1, e.size),
      dispose: (e, key, reason) => this.gone(e, key, reason)
    })
  }

  private gone(e: CacheEntry, key: string, reason: LRUCache.DisposeReason): void {
    const r = this.resources.get(e.primary)
    if (r !== undefined && reason !== "set") {
      r.keys.delete(key)
      if (r.keys.size === 0) this.resources.delete(e.primary)
    }
    const s = this.routeStats(e.routeId)
    s.bytes -= e.size
    s.entries--
    if (reason === "evict") {
      s.evictions++
      this.hooks.evicted?.(e.routeId)
    }
    this.hooks.changed?.(e.routeId, s)
  }

  routeStats(routeId: string): RouteCacheStats {
    let s = this.stats.get(routeId)
    if (s === undefined) {
      s = emptyStats()
      this.stats.set(routeId, s)
    }
    return s
  }

  /** Every route's statistics (routes that cached or were asked for). */
  allStats(): ReadonlyMap<string, RouteCacheStats> {
    return this.stats
  }

  /** The selecting names known for a resource (undefined: nothing stored for it). */
  namesOf(primary: string): ReadonlyArray<string> | undefined {
    return this.resources.get(primary)?.names
  }

  /** The variant stored under `key` (marks it recently used). */
  get(key: string): CacheEntry | undefined {
    return this.lru.get(key)
  }

  /** Whether a purge since `since` covers this resource (a fill started before it is dropped). */
  purgedSince(since: number, host: string, path: string): boolean {
    const now = this.now()
    if (this.purges.length > 0 && this.purges[0].at < now - PURGE_MEMORY_MS) this.purges = this.purges.filter((p) => p.at >= now - PURGE_MEMORY_MS)
    return this.purges.some((p) => p.at >= since && p.host === host && p.matches(path))
  }

  /**
   * Stores a variant. When the resource's selecting names changed (a new `Vary`), its other
   * variants go: they were selected by other fields. False when it is larger than the store.
   */
  set(e: CacheEntry): boolean {
    if (e.size > this.maxSize) return false
    const r = this.resources.get(e.primary)
    if (r !== undefined && r.names.join(",") !== e.names.join(",")) {
      for (const k of [...r.keys]) if (k !== e.key) this.lru.delete(k)
      r.names = e.names
    }
    const s = this.routeStats(e.routeId)
    s.bytes += e.size
    s.entries++
    this.lru.set(e.key, e)
    if (!this.lru.has(e.key)) {
      s.bytes -= e.size
      s.entries--
      return false
    }
    const res = this.resources.get(e.primary) ?? { names: e.names, keys: new Set<string>() }
    res.keys.add(e.key)
    this.resources.set(e.primary, res)
    this.hooks.changed?.(e.routeId, s)
    return true
  }

  delete(key: string): void {
    this.lru.delete(key)
  }

  /** Removes every variant of every resource of `host` whose path matches; returns how many. */
  purge(host: string, matches: (path: string) => boolean): number {
    this.purges.push({ host, matches, at: this.now() })
    let n = 0
    for (const [key, e] of this.lru.entries()) {
      if (e.host === host && matches(e.path)) {
        this.lru.delete(key)
        n++
      }
    }
    return n
  }

  /** Drops a route's entries (its cache settings changed, or it is gone). */
  dropRoute(routeId: string): void {
    for (const [key, e] of this.lru.entries()) if (e.routeId === routeId) this.lru.delete(key)
  }

  /** Forgets a route's statistics too (the route is gone). */
  forgetRoute(routeId: string): void {
    this.dropRoute(routeId)
    this.stats.delete(routeId)
  }

  get size(): number {
    return this.lru.calculatedSize
  }

  clear(): void {
    this.lru.clear()
  }
}
