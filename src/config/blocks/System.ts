/** `system { ... }`: process-wide settings. */
import type { DnsConfig, SystemConfig } from "../Schema.js"
import { type BlockSpec, block, bool, count, oneOf, positive, positiveMs, scalar, secs, secsMs, str } from "../KdlDecoder.js"

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
    workerThreads: scalar("worker-threads", count),
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
