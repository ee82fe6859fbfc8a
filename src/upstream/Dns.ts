/**
 * DNS for host-name targets: resolved off the request path, cached, re-resolved on a
 * schedule. The request path only reads the cache (`addresses`, `next`: synchronous).
 *
 * Sentinel resolves with a blocking `to_socket_addrs()` on every peer selection; here a
 * lookup never runs per request. A failed or slow re-resolution keeps the last good
 * addresses (up to `maxStaleMs`), so a DNS outage does not take healthy upstreams down.
 * Lookups run one at a time per host (single flight): `dns.lookup` uses libuv's small
 * thread pool, and a hung resolver must not pile up calls that starve fs/crypto.
 */
import { promises as dnsPromises } from "node:dns"
import * as net from "node:net"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"

export interface ResolvedAddress {
  readonly address: string
  readonly family: number
}

/** Injected in tests; default `dns.promises.lookup(host, { all: true, verbatim: true })`. */
export type LookupFn = (host: string) => Promise<ReadonlyArray<ResolvedAddress>>

export const systemLookup: LookupFn = (host) => dnsPromises.lookup(host, { all: true, verbatim: true })

/** Not in Sentinel's KDL (it has no DNS settings); defaults documented here. */
export interface DnsConfig {
  /** Re-resolve every host this often (ms), ±10 % jitter; default 30000. */
  readonly refreshMs: number
  /** Deadline of one lookup (ms); a slower answer is ignored; default 2000. */
  readonly timeoutMs: number
  /** How long last good addresses are served while lookups keep failing (ms); default 3600000. */
  readonly maxStaleMs: number
  /** Most host names cached (bounds the map); default 10000. */
  readonly maxHosts: number
}

export const defaultDnsConfig: DnsConfig = {
  refreshMs: 30_000,
  timeoutMs: 2_000,
  maxStaleMs: 3_600_000,
  maxHosts: 10_000
}

interface Entry {
  addresses: ReadonlyArray<string>
  /** When the addresses were last resolved successfully (undefined = never). */
  resolvedAt: number | undefined
  lastError: string | undefined
  inFlight: Promise<void> | undefined
  rr: number
}

export class DnsCache {
  readonly config: DnsConfig
  private readonly entries = new Map<string, Entry>()

  constructor(
    config: Partial<DnsConfig> = {},
    private readonly lookup: LookupFn = systemLookup,
    private readonly now: () => number = () => Date.now()
  ) {
    this.config = { ...defaultDnsConfig, ...config }
  }

  /**
   * Cached addresses of `host` (an IP literal is its own address), or undefined when never
   * resolved or stale past `maxStaleMs`. Never waits; an unknown host starts a background
   * lookup.
   */
  addresses(host: string): ReadonlyArray<string> | undefined {
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
    if (net.isIP(bare) !== 0) return [bare]
    const e = this.entries.get(host)
    if (e === undefined) {
      void this.refresh(host)
      return undefined
    }
    if (e.resolvedAt === undefined || this.now() - e.resolvedAt > this.config.maxStaleMs) return undefined
    return e.addresses
  }

  /** One address of `host`, rotating through the cached set. */
  next(host: string): string | undefined {
    const list = this.addresses(host)
    if (list === undefined || list.length === 0) return undefined
    const e = this.entries.get(host)
    if (e === undefined) return list[0]
    e.rr = (e.rr + 1) % list.length
    return list[e.rr]
  }

  /** The last lookup error for `host`, if the last lookup failed. */
  lastError(host: string): string | undefined {
    return this.entries.get(host)?.lastError
  }

  /** Hosts cached. */
  get hosts(): ReadonlyArray<string> {
    return [...this.entries.keys()]
  }

  /** Resolves `host` now (single flight); never rejects. Keeps the old addresses on failure. */
  refresh(host: string): Promise<void> {
    const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
    if (net.isIP(bare) !== 0) return Promise.resolve()
    let e = this.entries.get(host)
    if (e === undefined) {
      if (this.entries.size >= this.config.maxHosts) return Promise.resolve()
      e = { addresses: [], resolvedAt: undefined, lastError: undefined, inFlight: undefined, rr: 0 }
      this.entries.set(host, e)
    }
    if (e.inFlight !== undefined) return e.inFlight
    const entry = e
    const run = async () => {
      let timer: NodeJS.Timeout | undefined
      try {
        const result = await Promise.race([
          this.lookup(host),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`lookup timed out after ${this.config.timeoutMs} ms`)), this.config.timeoutMs)
          })
        ])
        const addresses = [...new Set(result.map((r) => r.address))]
        if (addresses.length === 0) throw new Error("no addresses")
        entry.addresses = addresses
        entry.resolvedAt = this.now()
        entry.lastError = undefined
      } catch (err) {
        entry.lastError = (err as NodeJS.ErrnoException)?.code ?? String((err as Error)?.message ?? err)
      } finally {
        if (timer !== undefined) clearTimeout(timer)
        entry.inFlight = undefined
      }
    }
    entry.inFlight = run()
    return entry.inFlight
  }
}

/**
 * Builds a cache for `hosts`, resolves them once (each bounded by `timeoutMs`) before
 * returning, and keeps them fresh from a fiber in the current scope (every `refreshMs`
 * ±10 %, four lookups at most at once). Closing the scope stops the refresher.
 */
export const makeDnsCache = (
  hosts: ReadonlyArray<string>,
  config: Partial<DnsConfig> = {},
  lookup: LookupFn = systemLookup,
  now?: () => number
): Effect.Effect<DnsCache, never, Scope.Scope> =>
  Effect.gen(function* () {
    const cache = new DnsCache(config, lookup, now)
    const all = Effect.suspend(() =>
      Effect.forEach(new Set([...hosts, ...cache.hosts]), (h) => Effect.promise(() => cache.refresh(h)), {
        concurrency: 4,
        discard: true
      })
    )
    yield* all
    const every = Duration.millis(Math.max(1, cache.config.refreshMs))
    // the first round just ran: start the loop one interval later
    yield* all.pipe(
      Effect.repeat(Schedule.spaced(every).pipe(Schedule.jitteredWith({ min: 0.9, max: 1.1 }))),
      Effect.delay(every),
      Effect.forkScoped
    )
    return cache
  })
