/** The audit log's JSON line: one security decision per line. */

/** One security decision (audit log). Every block/alteration is one entry. */
export interface AuditEntry {
  /** Epoch milliseconds of the decision. */
  readonly timestamp: number
  readonly trace_id: string
  /** "request_blocked" | "agent_decision" | "rate_limited" | "waf_event" | ... */
  readonly event_type: string
  /** Who decided: `agent:<id>`, `filter:<id>`, `limit:<name>`. */
  readonly source: string
  /** "allow" | "block" | "redirect" | "challenge" | "modify" | ... */
  readonly decision: string
  /** Status sent to the client, when the decision produced a response. */
  readonly status?: number | undefined
  readonly rule_ids?: ReadonlyArray<string> | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly reason?: string | undefined
  readonly client_ip: string
  readonly route_id?: string | undefined
  readonly method?: string | undefined
  readonly path?: string | undefined
}

export const formatAudit = (e: AuditEntry): string =>
  JSON.stringify({
    timestamp: new Date(e.timestamp).toISOString(),
    trace_id: e.trace_id,
    event_type: e.event_type,
    source: e.source,
    decision: e.decision,
    status: e.status ?? null,
    rule_ids: e.rule_ids ?? [],
    tags: e.tags ?? [],
    reason: e.reason ?? null,
    client_ip: e.client_ip,
    route_id: e.route_id ?? null,
    method: e.method ?? null,
    path: e.path ?? null
  })
