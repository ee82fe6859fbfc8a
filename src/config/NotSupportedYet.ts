/**
 * Sentinel configuration names that exist but are not implemented here yet.
 *
 * They are rejected with "`<name>` is not supported yet" rather than being
 * silently ignored (Sentinel's most-reported problem). Keys are the dotted
 * KDL path of the enclosing block ("" = top level). To implement a block:
 * add its field to the block's spec (src/config/blocks/*) and delete its name
 * here — a test fails if a name is both known and listed.
 */
export const notSupportedYet: Readonly<Record<string, ReadonlyArray<string>>> = {
  "": ["waf", "namespace"],
  cache: ["eviction-limit", "disk-path", "disk-shards", "disk-max-size"],
  "listeners.listener": ["namespace"],
  "listeners.listener.tls": ["acme"],
  "listeners.listener.tls.sni": ["acme"],
  "upstreams.upstream": ["retry-policy"],
  "upstreams.upstream.health-check.type": ["service", "endpoint", "expected-models", "readiness"],
  "routes.route": [
    "api-schema", "inference", "shadow", "fallback", "waf-enabled", "agents", "agent", "rate-limit"
  ],
  "routes.route.policies": ["rate-limit", "cache"],
  "filters.filter": [
    "database-path",
    // rate-limit `backend "memcached"` and its settings (Redis is the shared backend here)
    "memcached-url", "memcached-prefix", "memcached-pool-size", "memcached-timeout-ms", "memcached-fallback", "memcached-fallback-local",
    "memcached-ttl", "memcached-ttl-secs"
  ],
  "agents.agent": ["http"],
  "observability": [],
  "observability.metrics": ["high-cardinality"],
  "observability.logging": ["file"],
  "observability.logging.audit-log": ["log-waf-events"]
}

/** Listener protocols Sentinel has that this build does not serve yet. */
export const protocolsNotSupportedYet: ReadonlyArray<string> = ["h3"]

/** Builtin handlers Sentinel has that this build does not serve yet. */
export const builtinHandlersNotSupportedYet: ReadonlyArray<string> = []
