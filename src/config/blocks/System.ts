/** `system { ... }`: process-wide settings. */
import type { SystemConfig } from "../Schema.js"
import { type BlockSpec, block, bool, count, oneOf, positive, scalar, secs, str } from "../KdlDecoder.js"

export const systemSpec: BlockSpec<SystemConfig> = {
  path: "system",
  fields: {
    workerThreads: scalar("worker-threads", count),
    maxConnections: scalar("max-connections", positive),
    gracefulShutdownTimeout: scalar(["graceful-shutdown-timeout-secs", "graceful-shutdown-timeout"], secs),
    traceIdFormat: scalar("trace-id-format", oneOf(["tinyflake", "uuid"] as const)),
    autoReload: scalar("auto-reload", bool),
    routeCacheSize: scalar("route-cache-size", count),
    pidFile: scalar("pid-file", str)
  }
}

export const systemField = block("system", systemSpec)
