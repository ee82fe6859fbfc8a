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
  "": ["filters", "agents", "waf", "namespace", "rate-limits", "cache"],
  "system": ["daemon", "user", "group", "working-directory"],
  "listeners.listener": ["tls", "namespace", "max-concurrent-streams"],
  "upstreams.upstream": ["health-check", "circuit-breaker", "tls", "http-version", "retry-policy"],
  "routes.route": [
    "static-files", "api-schema", "inference", "filters", "cache", "shadow", "fallback", "retry-policy",
    "circuit-breaker", "waf-enabled", "websocket", "websocket-inspection", "service-type", "agents", "agent",
    "rate-limit"
  ],
  "routes.route.policies": ["failure-mode", "rate-limit", "max-body-size", "buffer-requests", "buffer-responses", "cache"],
  "observability": ["metrics", "tracing"],
  "observability.logging": ["error-log", "audit-log", "file"]
}

/** Listener protocols Sentinel has that this build does not serve yet. */
export const protocolsNotSupportedYet: ReadonlyArray<string> = ["https", "h2", "h3"]

/** Builtin handlers Sentinel has that this build does not serve yet. */
export const builtinHandlersNotSupportedYet: ReadonlyArray<string> = ["cache-purge", "cache-stats"]
