import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { ClusterMetrics, makeMetrics } from "../../src/observability/Metrics.js"

const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../deploy/grafana/sentinel.json")

describe("deploy/grafana/sentinel.json", () => {
  it("queries only metrics that Metrics.ts defines, and has unique panel ids", async () => {
    // Invariant: renaming a metric without updating the dashboard fails here.
    const dashboard = JSON.parse(fs.readFileSync(file, "utf8"))
    const exprs: Array<string> = dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((t: any) => t.expr))
    expect(exprs.length).toBeGreaterThan(20)
    const used = new Set(exprs.flatMap((e) => e.match(/sentinel_[a-z_]+/g) ?? []))
    const defined = new Set<string>()
    for (const registry of [makeMetrics({ defaultMetrics: false }).registry, new ClusterMetrics().registry]) {
      for (const m of await registry.getMetricsAsJSON()) {
        defined.add(m.name)
        if (String(m.type) === "histogram") for (const s of ["_bucket", "_count", "_sum"]) defined.add(m.name + s)
      }
    }
    for (const name of used) expect(defined, name).toContain(name)
    for (const needed of [
      "sentinel_requests_total",
      "sentinel_request_duration_seconds_bucket",
      "sentinel_upstream_failures_total",
      "sentinel_circuit_breaker_state",
      "sentinel_agent_latency_seconds_bucket",
      "sentinel_agent_timeouts_total",
      "sentinel_rejected_requests_total",
      "sentinel_blocked_requests_total",
      "sentinel_config_reload_total",
      "sentinel_log_dropped_total",
      "sentinel_rate_limited_total",
      "sentinel_ratelimit_backend_errors_total"
    ]) {
      expect(used).toContain(needed)
    }
    const ids = dashboard.panels.map((p: any) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
  })
})
