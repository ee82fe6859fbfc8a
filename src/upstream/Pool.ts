/**
 * Connection pools to upstream targets: one undici `Pool` per target with
 * keep-alive, bounded connections, idle timeout and max lifetime from the
 * upstream's `connection-pool` and `timeouts` blocks, TLS from its `tls`
 * block, HTTP/2 when `http-version { max-version 2 }` and TLS are set.
 *
 * Host-name targets never resolve on the request path: the socket's `lookup`
 * reads the shared `DnsCache` (kept fresh by its own fiber). On a cache miss
 * it waits for the cache's single-flight refresh (asynchronous, bounded by the
 * DNS timeout) instead of calling the system resolver per connection.
 */
import { readFileSync } from "node:fs"
import * as net from "node:net"
import { Duration } from "effect"
import { Pool } from "undici"
import type { TargetConfig, UpstreamConfig } from "../config/Schema.js"
import type { DnsCache } from "./Dns.js"

export interface TargetPool {
  readonly key: string
  readonly target: TargetConfig
  readonly pool: Pool
  /** Runtimes using this pool (a reload may hand it over); it closes when the last lets go. */
  refs: number
}

const formatHost = (host: string): string => (host.includes(":") && !host.startsWith("[") ? `[${host}]` : host)

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | ReadonlyArray<{ address: string; family: number }>,
  family?: number
) => void

const notFound = (host: string, why: string | undefined): NodeJS.ErrnoException =>
  Object.assign(new Error(`DNS lookup of ${host} failed${why ? `: ${why}` : ""}`), { code: "ENOTFOUND", hostname: host })

/**
 * A `net.connect` `lookup` that answers from `cache`. Node calls it with `all: true` when
 * happy-eyeballs (`autoSelectFamily`) is on, so both callback shapes are served.
 */
export const cachedLookup =
  (cache: DnsCache) =>
  (hostname: string, options: { all?: boolean } | number | undefined, callback: LookupCallback): void => {
    const answer = (addresses: ReadonlyArray<string> | undefined): void => {
      const address = addresses === undefined || addresses.length === 0 ? undefined : cache.next(hostname) ?? addresses[0]
      if (address === undefined) return callback(notFound(hostname, cache.lastError(hostname)), "")
      const family = net.isIP(address) === 6 ? 6 : 4
      if (typeof options === "object" && options?.all) {
        // the chosen address first, the others as happy-eyeballs fall-backs
        const rest = (addresses ?? []).filter((a) => a !== address)
        return callback(null, [address, ...rest].map((a) => ({ address: a, family: net.isIP(a) === 6 ? 6 : 4 })))
      }
      callback(null, address, family)
    }
    const cached = cache.addresses(hostname)
    if (cached !== undefined) return answer(cached)
    // first use of the name (or stale past max-stale): wait for the single-flight refresh
    void cache.refresh(hostname).then(() => answer(cache.addresses(hostname)))
  }

/** TLS connect options of an upstream's `tls` block (files read once, at build time). */
export const tlsConnectOptions = (upstream: UpstreamConfig): Record<string, unknown> => {
  const tls = upstream.tls
  if (tls === undefined) return {}
  return {
    ...(tls.sni !== undefined ? { servername: tls.sni } : {}),
    ...(tls.caCert !== undefined ? { ca: readFileSync(tls.caCert) } : {}),
    ...(tls.clientCert !== undefined ? { cert: readFileSync(tls.clientCert) } : {}),
    ...(tls.clientKey !== undefined ? { key: readFileSync(tls.clientKey) } : {}),
    rejectUnauthorized: !tls.insecureSkipVerify
  }
}

export const makeTargetPool = (
  upstream: UpstreamConfig,
  target: TargetConfig,
  dns?: DnsCache,
  tlsOptions: Record<string, unknown> = tlsConnectOptions(upstream)
): TargetPool => {
  const cp = upstream.connectionPool
  const https = upstream.tls !== undefined
  // HTTP/2 is negotiated by ALPN, so only over TLS (Sentinel does the same).
  const h2 = https && upstream.httpVersion.maxVersion === 2
  const hostName = net.isIP(target.host.replace(/^\[|\]$/g, "")) === 0
  const pingMs = Duration.toMillis(upstream.httpVersion.h2PingInterval)
  const pool = new Pool(`${https ? "https" : "http"}://${formatHost(target.host)}:${target.port}`, {
    connections: cp.maxConnections,
    pipelining: 1,
    keepAliveTimeout: Duration.toMillis(cp.idleTimeout),
    keepAliveMaxTimeout: Duration.toMillis(cp.idleTimeout),
    connectTimeout: Duration.toMillis(upstream.timeouts.connect),
    // The proxy owns these deadlines (Forward.ts); undici's fire late.
    headersTimeout: 0,
    bodyTimeout: 0,
    clientTtl: cp.maxLifetime === undefined ? null : Duration.toMillis(cp.maxLifetime),
    ...(h2 ? { allowH2: true, maxConcurrentStreams: upstream.httpVersion.maxH2Streams, ...(pingMs > 0 ? { pingInterval: pingMs } : {}) } : {}),
    connect: {
      ...tlsOptions,
      ...(hostName && dns !== undefined ? { lookup: cachedLookup(dns) } : {})
    }
  } as Pool.Options)
  return { key: target.address, target, pool, refs: 1 }
}

/** Connections open in the pool now (for `sentinel_connection_pool_size`). */
export const poolConnections = (tp: TargetPool): number => tp.pool.stats.connected

/** Lets go of `tp`; the last holder closes it (gracefully for `graceMs`, then forcibly). */
export const closeTargetPool = async (tp: TargetPool, graceMs: number): Promise<void> => {
  if (--tp.refs > 0) return
  const closing = tp.pool.close()
  if (graceMs <= 0) {
    await tp.pool.destroy().catch(() => {})
    return
  }
  let timer: NodeJS.Timeout | undefined
  const forced = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      void tp.pool.destroy().catch(() => {}).then(() => resolve())
    }, graceMs)
  })
  await Promise.race([closing.catch(() => {}), forced])
  clearTimeout(timer)
}
