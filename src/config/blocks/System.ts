/** `system { ... }`: process-wide settings. */
import type { DnsConfig, SystemConfig } from "../Schema.js"
import { type BlockSpec, type Val, block, bool, count, oneOf, positive, positiveMs, scalar, secs, secsMs, str } from "../KdlDecoder.js"

/**
 * `worker-threads` above this many per core is refused: processes beyond that only add memory
 * and context switches, and a typo (100000) would fork until the machine falls over.
 */
export const maxWorkersPerCore = 4

const workerThreads: Val<number> = (v, at, cx, what) => {
  const n = count(v, at, cx, what)
  if (n === undefined) return undefined
  const cap = maxWorkersPerCore * cx.sink.cores
  if (n <= cap) return n
  return cx.error(at, `${what} must be at most ${cap} (${maxWorkersPerCore} per core, ${cx.sink.cores} ${cx.sink.cores === 1 ? "core" : "cores"} here; 0 means one per core), got ${n}`)
}

export const dnsSpec: BlockSpec<DnsConfig> = {
  path: "system.dns",
  fields: {
    refreshMs: scalar(["refresh-secs", "refresh"], positiveMs(1000)),
    timeoutMs: scalar(["timeout-secs", "timeout"], positiveMs(1000)),
    maxStaleMs: scalar(["max-stale-secs", "max-stale"], secsMs),
    maxHosts: scalar("max-hosts", positive)
  }
}

export const systemSpec: BlockSpec<SystemConfig> = {
  path: "system",
  fields: {
    workerThreads: scalar("worker-threads", workerThreads),
    maxConnections: scalar("max-connections", positive),
    gracefulShutdownTimeout: scalar(["graceful-shutdown-timeout-secs", "graceful-shutdown-timeout"], secs),
    traceIdFormat: scalar("trace-id-format", oneOf(["tinyflake", "uuid"] as const)),
    autoReload: scalar("auto-reload", bool),
    routeCacheSize: scalar("route-cache-size", count),
    pidFile: scalar("pid-file", str),
    dns: block("dns", dnsSpec)
  }
}

export const systemField = block("system", systemSpec)
