/**
 * The audit log: one JSON line per security decision (DESIGN.md §1: every
 * security decision is logged). Lines go through the bounded, non-blocking
 * writer of `Logs.ts`; lines the sink cannot take are dropped and counted in
 * `sentinel_log_dropped_total{log="audit"}`, never queued without bound.
 *
 * Agent outcomes (`AgentAuditEntry`) are written when they are not a plain
 * allow: blocks, redirects, challenges, fail-closed answers (when
 * `log-blocked` or `log-agent-decisions`) and fail-open passes (when
 * `log-agent-decisions`). The line is `formatAudit`'s record plus the agent
 * fields (agent, filter_id, phase, result, action, reason_codes, duration_ms).
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Scope from "effect/Scope"
import type { AuditLogConfig } from "../config/Schema.js"
import { type AuditEntry, formatAudit } from "./AuditFormat.js"
import { makeLogSlot, type LogDestination, type LogSwap } from "./LogSlot.js"
import type { LogOpenFailed } from "./LogWriter.js"
import type { Metrics } from "./Metrics.js"

/**
 * One agent outcome as the audit log records it (the agents' `AgentAuditEntry` is one): what
 * the audit line needs, declared here so that the log depends on no stage's internals.
 */
export interface AgentAuditEntry {
  readonly traceId: string
  readonly routeId: string | undefined
  readonly agent: string
  readonly filterId: string | undefined
  /** `request_headers`, `request_body`, ... */
  readonly phase: string
  /** `allow`, `block`, `timeout`, ... */
  readonly result: string
  /** What the proxy did with it: `continue`, `respond`, `fail-open`, `fail-closed`, `ignored`. */
  readonly action: string
  readonly status: number | undefined
  readonly ruleIds: ReadonlyArray<string>
  readonly tags: ReadonlyArray<string>
  readonly reasonCodes: ReadonlyArray<string>
  readonly confidence: number | undefined
  readonly reason: string | undefined
  readonly durationMs: number
  readonly clientIp?: string | undefined
  readonly method?: string | undefined
  readonly path?: string | undefined
}

export interface AuditLog {
  /** Writes the entry if the config asks for it. Never throws, never blocks. */
  readonly agent: (entry: AgentAuditEntry) => void
  /**
   * A refusal decided by the proxy itself (a WebSocket handshake on a route without
   * `websocket`, a tunnel closed for breaking the protocol): written when `log-blocked`.
   */
  readonly proxy: (entry: AuditEntry) => void
  /** An operator's action (a cache purge): always written while the audit log is enabled. */
  readonly operator: (entry: AuditEntry) => void
  /** Resolves once every line written so far reached the sink (tests, shutdown). */
  readonly flush: () => Promise<void>
  readonly reopen: () => Promise<void>
  /** Opens what `next` needs; fails, changing nothing, when its file cannot be opened. */
  readonly prepare: (next: AuditLogConfig) => Either.Either<LogSwap, LogOpenFailed>
  /** Flushes and closes (the scope does it). */
  readonly close: () => Promise<void>
}

/** The JSON line of one agent outcome. */
export const formatAgentAudit = (e: AgentAuditEntry, now = Date.now()): string => {
  const base = formatAudit({
    timestamp: now,
    trace_id: e.traceId,
    event_type: "agent_decision",
    source: `agent:${e.agent}`,
    decision: e.action === "respond" ? e.result : e.action,
    status: e.status,
    rule_ids: e.ruleIds,
    tags: e.tags,
    reason: e.reason,
    client_ip: e.clientIp ?? "",
    route_id: e.routeId,
    method: e.method,
    path: e.path
  })
  const extra = JSON.stringify({
    agent: e.agent,
    filter_id: e.filterId ?? null,
    phase: e.phase,
    result: e.result,
    action: e.action,
    reason_codes: e.reasonCodes,
    confidence: e.confidence ?? null,
    duration_ms: Math.round(e.durationMs * 1000) / 1000
  })
  // both are JSON objects: splice the agent fields into the shared record
  return `${base.slice(0, -1)},${extra.slice(1)}`
}

/** Whether an agent outcome belongs in the audit log under `config`. */
export const auditsAgentEntry = (config: AuditLogConfig, e: AgentAuditEntry): boolean => {
  switch (e.action) {
    case "respond":
    case "fail-closed":
      return config.logBlocked || config.logAgentDecisions
    case "fail-open":
      return config.logAgentDecisions
    default:
      return false
  }
}

const destination = (config: AuditLogConfig): LogDestination | undefined =>
  config.enabled ? { file: config.file, bufferSize: config.bufferSize } : undefined

/** The audit log; a reload applies `audit-log {}` through `prepare` (see `LogSlot`). */
export const makeAuditLog = (config: AuditLogConfig, metrics: Metrics): Effect.Effect<AuditLog, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync((): AuditLog => {
      const slot = makeLogSlot({ name: "audit", onDrop: (n) => metrics.logDropped.add(n, "audit") }, destination(config))
      let current = config
      return {
        // Stable function (agent managers keep it): reads the writer and settings in force.
        agent: (e) => {
          const writer = slot.current
          if (writer !== undefined && auditsAgentEntry(current, e)) writer.write(formatAgentAudit(e))
        },
        proxy: (e) => {
          const writer = slot.current
          if (writer !== undefined && current.logBlocked) writer.write(formatAudit(e))
        },
        operator: (e) => {
          slot.current?.write(formatAudit(e))
        },
        flush: async () => {
          await Promise.all([slot.current?.flush(), slot.retired()])
        },
        reopen: async () => slot.current?.reopen(),
        prepare: (next) =>
          Either.map(slot.prepare(destination(next)), (swap) => ({
            commit: () => {
              swap.commit()
              current = next
            },
            abort: swap.abort
          })),
        close: slot.close
      }
    }),
    (log) => Effect.promise(() => log.close())
  )
