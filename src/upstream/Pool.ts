/**
 * Connection pools to upstream targets: one undici `Pool` per target with
 * keep-alive, bounded connections, idle timeout and max lifetime from the
 * upstream's `connection-pool` and `timeouts` blocks.
 */
import { Duration } from "effect"
import { Pool } from "undici"
import type { TargetConfig, UpstreamConfig } from "../config/Schema.js"

export interface TargetPool {
  readonly key: string
  readonly target: TargetConfig
  readonly pool: Pool
  /** Requests currently in flight to this target (for least-connections and drain). */
  active: number
}

const formatHost = (host: string): string => (host.includes(":") && !host.startsWith("[") ? `[${host}]` : host)

export const makeTargetPool = (upstream: UpstreamConfig, target: TargetConfig): TargetPool => {
  const cp = upstream.connectionPool
  const pool = new Pool(`http://${formatHost(target.host)}:${target.port}`, {
    connections: cp.maxConnections,
    pipelining: 1,
    keepAliveTimeout: Duration.toMillis(cp.idleTimeout),
    keepAliveMaxTimeout: Duration.toMillis(cp.idleTimeout),
    connectTimeout: Duration.toMillis(upstream.timeouts.connect),
    // The proxy owns these deadlines (Forward.ts); undici's fire late.
    headersTimeout: 0,
    bodyTimeout: 0,
    clientTtl: cp.maxLifetime === undefined ? null : Duration.toMillis(cp.maxLifetime)
  })
  return { key: target.address, target, pool, active: 0 }
}

export const closeTargetPool = async (tp: TargetPool, graceMs: number): Promise<void> => {
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
