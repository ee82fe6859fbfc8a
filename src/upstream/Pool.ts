/**
 * Connection pools to upstream targets: one undici `Pool` per target with
 * keep-alive, bounded connections, bounded idle connections (`max-idle`, see
 * `idleTrimmer`), idle timeout and max lifetime from the
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
import * as Duration from "effect/Duration"
import type * as Undici from "undici"
import type { buildConnector, Dispatcher } from "undici"
import type { TargetConfig, UpstreamConfig } from "../config/Schema.js"
import type { DnsCache } from "./Dns.js"
import { PoolGate } from "./PoolGate.js"
import { Client, Pool } from "./Undici.js"

export interface TargetPool {
  readonly key: string
  readonly target: TargetConfig
  readonly pool: Pool
  /** Admission to the pool's connections: bounded wait, per-client share (PoolGate.ts). */
  readonly gate: PoolGate
  /** Runtimes using this pool (a reload may hand it over); it closes when the last lets go. */
  refs: number
  /** Stops the `max-idle` trimming (when the pool closes). */
  readonly stopIdleTrim?: () => void
}

/**
 * How long a connection beyond `max-idle` may stay idle before it is closed. Closing it the
 * moment it goes idle (nginx `keepalive`, Go's MaxIdleConnsPerHost) makes a proxy running at
 * a concurrency above `max-idle` close and reopen connections between back-to-back requests;
 * a short grace keeps the ones in steady use and still bounds what idles.
 */
export const IDLE_TRIM_GRACE_MS = 1000

interface TrackedClient {
  readonly client: Client
  /** The client's socket while connected (undici does not expose it: our connector records it). */
  socket: net.Socket | undefined
  /** When the client last finished a request (set only while more than `max-idle` are connected). */
  idleSince: number
}

/**
 * `max-idle` for an undici `Pool`, which has no such option: every `Client` (one connection
 * each) is made by this `factory`, with a connector that records its socket. While more
 * connections are open than `maxIdle`, a client finishing a request schedules a trim
 * (at most one timer per pool); the trim keeps the first `maxIdle` idle clients in the pool's
 * order (the ones undici reuses first) and closes the socket of every other one idle for at
 * least `graceMs`. Closing the socket, not the client, leaves the client in the pool: it
 * reconnects when undici hands it a request again. Per request this costs one comparison
 * while at most `maxIdle` connections are open.
 */
export const idleTrimmer = (maxIdle: number, graceMs: number = IDLE_TRIM_GRACE_MS) => {
  const clients = new Set<TrackedClient>()
  let connected = 0
  let timer: NodeJS.Timeout | undefined
  let stopped = false

  const schedule = (ms: number) => {
    if (timer !== undefined || stopped) return
    timer = setTimeout(trim, Math.max(1, Math.ceil(ms)))
    timer.unref()
  }

  const trim = () => {
    timer = undefined
    if (stopped) return
    const now = performance.now()
    let idle = 0
    let wait = Infinity
    for (const c of clients) {
      if (c.client.destroyed || c.client.closed) {
        clients.delete(c)
        continue
      }
      if (c.socket === undefined) continue
      const st = c.client.stats
      if (!st.connected || st.running > 0 || st.pending > 0) continue
      if (++idle <= maxIdle) continue
      const age = now - c.idleSince
      if (age >= graceMs) {
        const socket = c.socket
        c.socket = undefined
        // undici sees an idle socket close and reconnects on the client's next request
        socket.destroy()
      } else {
        wait = Math.min(wait, graceMs - age)
      }
    }
    if (wait !== Infinity) schedule(wait)
  }

  const factory = (origin: URL, opts: object): Dispatcher => {
    const options = opts as Undici.Client.Options & { connect: buildConnector.connector }
    const connect = options.connect
    const tracked: TrackedClient = { client: undefined as unknown as Client, socket: undefined, idleSince: 0 }
    const client = new Client(origin, {
      ...options,
      connect: (o, callback) =>
        connect(o, (...args) => {
          if (args[0] === null) tracked.socket = args[1]
          callback(...args)
        })
    })
    ;(tracked as { client: Client }).client = client
    clients.add(tracked)
    client.on("connect", () => {
      connected++
    })
    client.on("disconnect", () => {
      connected--
      tracked.socket = undefined
    })
    // the pool drops a client whose connect failed (without closing it): so do we
    client.on("connectionError", () => {
      clients.delete(tracked)
    })
    // a request finished on this client (undici emits "drain" when a busy client frees up)
    client.on("drain", () => {
      if (connected <= maxIdle) return
      tracked.idleSince = performance.now()
      schedule(graceMs)
    })
    return client
  }

  return {
    factory,
    /** Connections open now, as counted from the clients' connect/disconnect events. */
    connected: () => connected,
    stop: () => {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    }
  }
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
  // with max-idle >= max-connections there is nothing to bound: undici's own factory, no cost
  const trimmer = cp.maxIdle < cp.maxConnections ? idleTrimmer(cp.maxIdle) : undefined
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
    ...(trimmer !== undefined ? { factory: trimmer.factory } : {}),
    ...(h2 ? { allowH2: true, maxConcurrentStreams: upstream.httpVersion.maxH2Streams, ...(pingMs > 0 ? { pingInterval: pingMs } : {}) } : {}),
    connect: {
      ...tlsOptions,
      ...(hostName && dns !== undefined ? { lookup: cachedLookup(dns) } : {})
    }
  } as Undici.Pool.Options)
  const gate = new PoolGate(gateConfigFor(upstream))
  return trimmer === undefined
    ? { key: target.address, target, pool, gate, refs: 1 }
    : { key: target.address, target, pool, gate, refs: 1, stopIdleTrim: trimmer.stop }
}

/** `connection-pool { ... }` -> the gate's bounds: exchanges at once are connections x streams. */
export const gateConfigFor = (upstream: UpstreamConfig) => {
  const cp = upstream.connectionPool
  const streams = upstream.tls !== undefined && upstream.httpVersion.maxVersion === 2 ? upstream.httpVersion.maxH2Streams : 1
  const capacity = cp.maxConnections * streams
  return {
    capacity,
    maxPending: cp.maxPendingRequests,
    pendingTimeoutMs: Duration.toMillis(cp.pendingTimeout),
    perClient: cp.maxClientShare >= 1 ? capacity : Math.max(1, Math.floor(cp.maxConnections * cp.maxClientShare)) * streams
  }
}

/** Connections open in the pool now (for `sentinel_connection_pool_size`). */
export const poolConnections = (tp: TargetPool): number => tp.pool.stats.connected

/** Lets go of `tp`; the last holder closes it (gracefully for `graceMs`, then forcibly). */
export const closeTargetPool = async (tp: TargetPool, graceMs: number): Promise<void> => {
  if (--tp.refs > 0) return
  tp.stopIdleTrim?.()
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
