/**
 * `sentinel lint -c FILE`: best-practice warnings about a configuration that
 * is valid but probably not what a production operator wants. Pure: the
 * command prints the warnings and always exits 0 (unless the file does not
 * parse at all, which `sentinel test` reports).
 */
import * as os from "node:os"
import * as Duration from "effect/Duration"
import { suitesWithoutForwardSecrecy } from "./TlsNames.js"
import { escapeText } from "./ConfigIssue.js"
import type { SentinelConfig } from "./Schema.js"

export interface LintWarning {
  /** Stable rule name, e.g. `orphan-upstream` (for grepping and for documentation). */
  readonly rule: string
  /** What the warning is about, e.g. `upstream "api"`. */
  readonly subject: string
  readonly message: string
}

export const formatLint = (w: LintWarning): string => escapeText(`warning[${w.rule}]: ${w.subject}: ${w.message}`)

const isWildcard = (host: string): boolean => host === "0.0.0.0" || host === "::" || host === "[::]"

/** Every best-practice warning for `config`, in a stable order. */
export const lintConfig = (config: SentinelConfig, cores: number = os.availableParallelism()): Array<LintWarning> => {
  const out: Array<LintWarning> = []
  const warn = (rule: string, subject: string, message: string) => out.push({ rule, subject, message })

  // References nobody uses: usually a route that was renamed or removed.
  const usedUpstreams = new Set(config.routes.flatMap((r) => (r.upstream !== undefined ? [r.upstream] : [])))
  for (const u of config.upstreams) {
    if (!usedUpstreams.has(u.id)) warn("orphan-upstream", `upstream "${u.id}"`, "no route uses it")
  }
  const usedFilters = new Set(config.routes.flatMap((r) => r.filters))
  for (const f of config.filters) {
    if (!usedFilters.has(f.id)) warn("unused-filter", `filter "${f.id}"`, "no route uses it")
  }
  const usedAgents = new Set(config.filters.flatMap((f) => (f.type === "agent" ? [f.agent] : [])))
  for (const a of config.agents) {
    if (!usedAgents.has(a.id)) warn("unused-agent", `agent "${a.id}"`, "no filter uses it")
  }

  // WebSocket inspection with nobody to inspect: the tunnel relays unexamined.
  const agentsById = new Map(config.agents.map((a) => [a.id, a]))
  const filtersById = new Map(config.filters.map((f) => [f.id, f]))
  for (const r of config.routes) {
    if (!r.websocketInspection) continue
    const inspecting = r.filters.some((id) => {
      const f = filtersById.get(id)
      return f !== undefined && f.type === "agent" && agentsById.get(f.agent)?.events.includes("websocket_frame") === true
    })
    if (!inspecting) {
      warn("websocket-inspection-without-agent", `route "${r.id}"`,
        "websocket-inspection #true but none of its agent filters has an agent with `events \"websocket_frame\"`: frames are relayed uninspected (and extensions pass)")
    }
  }

  // Routes that can never match: same priority and the same conditions as an earlier one.
  const seen = new Map<string, string>()
  for (const r of config.routes) {
    const key = JSON.stringify([r.priority, r.matches])
    const first = seen.get(key)
    if (first !== undefined) {
      warn("shadowed-route", `route "${r.id}"`, `same priority and matches as route "${first}"; it is never chosen`)
    } else seen.set(key, r.id)
  }

  // Upstreams: failure detection and transport security.
  for (const u of config.upstreams) {
    if (u.targets.length > 1 && u.healthCheck === undefined) {
      warn(
        "no-health-check",
        `upstream "${u.id}"`,
        `${u.targets.length} targets and no active health-check: a dead target is only noticed by failing requests`
      )
    }
    if (u.tls?.insecureSkipVerify === true) {
      warn("insecure-skip-verify", `upstream "${u.id}"`, "tls insecure-skip-verify disables certificate verification")
    }
    if (u.tls === undefined && u.targets.some((t) => t.port === 443)) {
      warn("plaintext-to-443", `upstream "${u.id}"`, "a target on port 443 without a tls block is spoken to in plaintext")
    }
    if (Duration.greaterThan(u.timeouts.request, Duration.minutes(5))) {
      warn("long-upstream-timeout", `upstream "${u.id}"`, `request timeout ${Duration.format(u.timeouts.request)} holds connections a long time`)
    }
  }

  // Agents: a security agent that fails open lets traffic through when it is down.
  for (const a of config.agents) {
    if (a.failureMode === "open" && (a.type === "waf" || a.type === "auth")) {
      warn("security-agent-fails-open", `agent "${a.id}"`, `type "${a.type}" with failure-mode "open": requests pass unchecked when the agent fails`)
    }
  }

  // Cache: routes that would never cache, or cache handlers no listener answers.
  if (!config.cache.enabled) {
    for (const r of config.routes) {
      if (r.cache?.enabled === true) warn("cache-disabled", `route "${r.id}"`, "cache { enabled #true } while the top-level cache is off (cache { enabled #false }): nothing is cached")
    }
  }
  if (config.cache.adminOnly && !config.listeners.some((l) => l.admin)) {
    for (const r of config.routes) {
      if (r.builtinHandler === "cache-purge" || r.builtinHandler === "cache-stats") {
        warn("cache-handler-unreachable", `route "${r.id}"`, `builtin-handler "${r.builtinHandler}" answers only on admin #true listeners and there is none (or set cache { admin-only #false })`)
      }
    }
  }

  // Listeners and process.
  for (const l of config.listeners) {
    if (l.admin && isWildcard(l.address.host)) {
      warn("public-admin-listener", `listener "${l.id}"`, "admin #true on a wildcard address exposes the admin builtins to every network")
    }
    const t = l.tls
    if (t === undefined) continue
    if (t.minVersion === "1.0" || t.minVersion === "1.1") {
      warn("weak-tls-version", `listener "${l.id}" tls`, `min-version "${t.minVersion}" accepts TLS ${t.minVersion}, deprecated since 2021 (RFC 8996): use "1.2"`)
    }
    const weak = suitesWithoutForwardSecrecy(t.cipherSuites)
    if (weak.length > 0) {
      warn(
        "no-forward-secrecy",
        `listener "${l.id}" tls`,
        `cipher-suite ${weak.map((w) => `"${w}"`).join(", ")} ${weak.length === 1 ? "has" : "have"} no forward secrecy (RSA key exchange): prefer ECDHE suites`
      )
    }
    if (t.caFile !== undefined && !t.clientAuth) {
      warn("unused-ca-file", `listener "${l.id}" tls`, "ca-file without client-auth #true: client certificates are not requested")
    }
  }
  const m = config.observability.metrics
  if (!m.enabled) {
    warn("metrics-disabled", "observability.metrics", "no metrics listener: enable it to watch the proxy (enabled #true)")
  } else if (isWildcard(m.address.host)) {
    warn("public-metrics", "observability.metrics", `metrics served on ${m.address.host}: restrict it to a private address`)
  }
  if (!config.observability.logging.accessLog.enabled) {
    warn("access-log-disabled", "observability.logging.access-log", "no access log: requests leave no trace")
  }
  if (!config.observability.logging.auditLog.enabled && (config.agents.length > 0 || config.filters.some((f) => f.type === "rate-limit"))) {
    warn("audit-log-disabled", "observability.logging.audit-log", "security decisions are made but not audited")
  }
  if (Duration.toMillis(config.system.gracefulShutdownTimeout) === 0) {
    warn("no-graceful-shutdown", "system", "graceful-shutdown-timeout-secs 0 cuts in-flight requests on every stop")
  }
  if (config.system.workerThreads > cores) {
    warn("too-many-workers", "system", `worker-threads ${config.system.workerThreads} is more than the ${cores} cores here`)
  }
  return out
}
