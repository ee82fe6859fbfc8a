/** `system { ... }`: process-wide settings. */
import type { DnsConfig, SystemConfig } from "../Schema.js"
import { type BlockSpec, block, scalar } from "../KdlDecoder.js"
import { type Val, bool, count, nonEmpty, oneOf, positive, positiveMs, secs, secsMs, str } from "../KdlValues.js"

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

/** A user or group: a name (letters, digits, `_`, `-`, `.`, a trailing `$` as on Samba) or a numeric id. */
const account = (kind: "user" | "group"): Val<string> => (v, at, cx, what) => {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 2 ** 32) return String(v)
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  return /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}\$?$/.test(s) ? s : cx.error(at, `${what} must be a ${kind} name or a numeric id, got ${JSON.stringify(s)}`)
}

/**
 * `daemon`: Sentinel forks into the background with `daemon #true`. Here the process stays in
 * the foreground (`#false`, the default, is accepted); a service manager runs it in the background.
 */
const daemon: Val<false> = (v, at, cx, what) => {
  const b = bool(v, at, cx, what)
  if (b !== true) return b as false | undefined
  return cx.error(at, `${what} #true is not supported: Sentinel for Node.js stays in the foreground; run it under systemd (Type=simple), a container or another supervisor, and remove \`daemon\` or write \`daemon #false\``)
}

export const systemSpec: BlockSpec<SystemConfig & { readonly daemon: false }> = {
  path: "system",
  fields: {
    // Sentinel's examples also write `workers` (its parser reads only `worker-threads` and drops it)
    workerThreads: scalar(["worker-threads", "workers"], workerThreads),
    maxConnections: scalar("max-connections", positive),
    gracefulShutdownTimeout: scalar(["graceful-shutdown-timeout-secs", "graceful-shutdown-timeout"], secs),
    traceIdFormat: scalar("trace-id-format", oneOf(["tinyflake", "uuid"] as const)),
    autoReload: scalar("auto-reload", bool),
    routeCacheSize: scalar("route-cache-size", count),
    pidFile: scalar("pid-file", str),
    user: scalar("user", account("user")),
    group: scalar("group", account("group")),
    workingDirectory: scalar("working-directory", nonEmpty),
    daemon: scalar("daemon", daemon),
    dns: block("dns", dnsSpec)
  }
}

export const systemField = block("system", systemSpec, ({ daemon: _foreground, ...f }) => f)
