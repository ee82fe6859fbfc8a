/**
 * Typed config -> KDL text (canonical names, every field written). Decoding
 * the output gives the same config back (checked by a property test); used
 * to show the running config and to generate test documents. The blocks with
 * entities (listeners, upstreams, routes, filters, agents) are written by
 * encode/*, mirroring the decoder's blocks/*; the flat blocks are here.
 */
import { formatHostPort, type SentinelConfig } from "./Schema.js"
import { agent } from "./encode/Agents.js"
import { filter } from "./encode/Filters.js"
import { listener } from "./encode/Listeners.js"
import { route } from "./encode/Routes.js"
import { upstream } from "./encode/Upstreams.js"
import { bool, kdlString, msSecs, secs, Writer } from "./encode/Writer.js"

/** Writes a config as KDL. */
export const encodeKdl = (c: SentinelConfig): string => {
  const w = new Writer()
  w.line(`schema-version ${kdlString(c.schemaVersion)}`)
  const s = c.system
  w.block("system", () => {
    w.line(`worker-threads ${s.workerThreads}`)
    w.line(`max-connections ${s.maxConnections}`)
    w.line(`graceful-shutdown-timeout-secs ${secs(s.gracefulShutdownTimeout)}`)
    w.line(`trace-id-format ${kdlString(s.traceIdFormat)}`)
    w.line(`auto-reload ${bool(s.autoReload)}`)
    w.line(`route-cache-size ${s.routeCacheSize}`)
    if (s.pidFile !== undefined) w.line(`pid-file ${kdlString(s.pidFile)}`)
    if (s.user !== undefined) w.line(`user ${kdlString(s.user)}`)
    if (s.group !== undefined) w.line(`group ${kdlString(s.group)}`)
    if (s.workingDirectory !== undefined) w.line(`working-directory ${kdlString(s.workingDirectory)}`)
    w.block("dns", () => {
      w.line(`refresh-secs ${msSecs(s.dns.refreshMs)}`)
      w.line(`timeout-secs ${msSecs(s.dns.timeoutMs)}`)
      w.line(`max-stale-secs ${msSecs(s.dns.maxStaleMs)}`)
      w.line(`max-hosts ${s.dns.maxHosts}`)
    })
  })
  w.block("listeners", () => {
    for (const l of c.listeners) listener(w, l)
  })
  if (c.upstreams.length > 0) {
    w.block("upstreams", () => {
      for (const u of c.upstreams) upstream(w, u)
    })
  }
  if (c.routes.length > 0) {
    w.block("routes", () => {
      for (const r of c.routes) route(w, r)
    })
  }
  const l = c.limits
  w.block("limits", () => {
    w.line(`max-header-size ${l.maxHeaderSize}`)
    w.line(`max-header-count ${l.maxHeaderCount}`)
    w.line(`max-body-size ${l.maxBodySize}`)
    w.line(`request-buffer-size ${l.requestBufferSize}`)
    w.line(`response-buffer-size ${l.responseBufferSize}`)
    w.line(`slow-reader-timeout-secs ${secs(l.slowReaderTimeout)}`)
    w.line(`max-uri-length ${l.maxUriLength}`)
    w.line(`max-connections-per-client ${l.maxConnectionsPerClient}`)
    w.line(`max-total-connections ${l.maxTotalConnections}`)
    w.line(`max-in-flight-requests ${l.maxInFlightRequests}`)
    w.line(`in-flight-queue-size ${l.inFlightQueueSize}`)
    w.line(`in-flight-queue-timeout-secs ${secs(l.inFlightQueueTimeout)}`)
    w.line(`max-header-line-size ${l.maxHeaderLineSize}`)
    w.line(`underscores-in-headers ${kdlString(l.underscoresInHeaders)}`)
    w.line(`allow-trace ${bool(l.allowTrace)}`)
    w.line(`merge-slashes ${bool(l.mergeSlashes)}`)
    w.line(`normalize-path ${bool(l.normalizePath)}`)
    w.line(`escaped-slashes ${kdlString(l.escapedSlashes)}`)
    w.line(`websocket-max-frame-size ${l.websocketMaxFrameSize}`)
    w.line(`websocket-max-message-size ${l.websocketMaxMessageSize}`)
    w.line(`websocket-idle-timeout-secs ${secs(l.websocketIdleTimeout)}`)
    w.line(`websocket-max-lifetime-secs ${secs(l.websocketMaxLifetime)}`)
    w.line(`max-websocket-tunnels ${l.maxWebsocketTunnels}`)
    w.line(`max-websocket-tunnels-per-client ${l.maxWebsocketTunnelsPerClient}`)
  })
  const g = c.observability.logging
  w.block("observability", () => {
    w.block("logging", () => {
      w.line(`level ${kdlString(g.level)}`)
      w.line(`format ${kdlString(g.format)}`)
      w.block("access-log", () => {
        w.line(`enabled ${bool(g.accessLog.enabled)}`)
        if (g.accessLog.file !== undefined) w.line(`file ${kdlString(g.accessLog.file)}`)
        w.line(`format ${kdlString(g.accessLog.format)}`)
        w.line(`buffer-size ${g.accessLog.bufferSize}`)
        w.line(`flush-interval-ms ${g.accessLog.flushIntervalMs}`)
      })
      w.block("error-log", () => {
        w.line(`enabled ${bool(g.errorLog.enabled)}`)
        if (g.errorLog.file !== undefined) w.line(`file ${kdlString(g.errorLog.file)}`)
        w.line(`level ${kdlString(g.errorLog.level)}`)
        w.line(`buffer-size ${g.errorLog.bufferSize}`)
      })
      w.block("audit-log", () => {
        w.line(`enabled ${bool(g.auditLog.enabled)}`)
        if (g.auditLog.file !== undefined) w.line(`file ${kdlString(g.auditLog.file)}`)
        w.line(`buffer-size ${g.auditLog.bufferSize}`)
        w.line(`log-blocked ${bool(g.auditLog.logBlocked)}`)
        w.line(`log-agent-decisions ${bool(g.auditLog.logAgentDecisions)}`)
      })
    })
    const m = c.observability.metrics
    w.block("metrics", () => {
      w.line(`enabled ${bool(m.enabled)}`)
      w.line(`address ${kdlString(formatHostPort(m.address.host, m.address.port))}`)
      w.line(`path ${kdlString(m.path)}`)
      w.line(`max-series-per-metric ${m.maxSeriesPerMetric}`)
    })
    const t = c.observability.tracing
    if (t !== undefined) {
      w.block("tracing", () => {
        w.block(`backend "otlp"`, () => w.line(`endpoint ${kdlString(t.endpoint)}`))
        w.line(`sampling-rate ${t.samplingRate}`)
        w.line(`service-name ${kdlString(t.serviceName)}`)
        w.line(`parent-based ${bool(t.parentBased)}`)
        w.line(`max-queue-size ${t.maxQueueSize}`)
        w.line(`max-export-batch-size ${t.maxExportBatchSize}`)
        w.line(`export-timeout-secs ${msSecs(t.exportTimeoutMs)}`)
      })
    }
  })
  if (c.filters.length > 0) w.block("filters", () => c.filters.forEach((f) => filter(w, f)))
  const cs = c.cache
  w.block("cache", () => {
    w.line(`enabled ${bool(cs.enabled)}`)
    w.line(`backend ${kdlString(cs.backend)}`)
    w.line(`max-size ${cs.maxSize}`)
    w.line(`lock-timeout ${secs(cs.lockTimeout)}`)
    w.line(`status-header ${bool(cs.statusHeader)}`)
    w.line(`status-header-name ${kdlString(cs.statusHeaderName)}`)
    w.line(`admin-only ${bool(cs.adminOnly)}`)
  })
  const rl = c.rateLimits
  w.block("rate-limits", () => {
    if (rl.defaultRps !== undefined) w.line(`default-rps ${rl.defaultRps}`)
    if (rl.defaultBurst !== undefined) w.line(`default-burst ${rl.defaultBurst}`)
    w.line(`key ${kdlString(rl.key)}`)
    const g = rl.global
    if (g !== undefined) {
      w.block("global", () => {
        w.line(`max-rps ${g.maxRps}`)
        w.line(`burst ${g.burst}`)
        w.line(`key ${kdlString(g.key)}`)
      })
    }
  })
  if (c.agents.length > 0) {
    w.block("agents", () => {
      for (const a of c.agents) agent(w, a)
    })
  }
  return w.lines.join("\n") + "\n"
}
