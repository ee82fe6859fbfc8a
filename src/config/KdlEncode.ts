/**
 * Typed config -> KDL text (canonical names, every field written). Decoding
 * the output gives the same config back (checked by a property test); used
 * to show the running config and to generate test documents.
 */
import * as Duration from "effect/Duration"
import {
  type CircuitBreakerConfig, type FilterConfig, formatHostPort, type HeaderOps, type HashKey, type ListenerTlsConfig, type PathModifier,
  type RouteMatch, type SentinelConfig
} from "./Schema.js"

/** A KDL v2 quoted string. */
export const kdlString = (s: string): string => {
  let out = "\""
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (ch === "\"") out += "\\\""
    else if (ch === "\\") out += "\\\\"
    else if (ch === "\n") out += "\\n"
    else if (ch === "\t") out += "\\t"
    else if (ch === "\r") out += "\\r"
    // control, direction-override and other characters KDL v2 forbids literally
    else if (c < 0x20 || c === 0x7f || (c >= 0x200e && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
      (c >= 0x2066 && c <= 0x2069) || c === 0xfeff || c === 0x2028 || c === 0x2029 || c === 0x85) {
      out += `\\u{${c.toString(16)}}`
    } else out += ch
  }
  return out + "\""
}

const secs = (d: Duration.Duration): string => String(Duration.toMillis(d) / 1000)
const bool = (b: boolean): string => (b ? "#true" : "#false")
/** Milliseconds written as (decimal) seconds. */
const msSecs = (ms: number): string => String(ms / 1000)
const nullableStr = (s: string | null): string => (s === null ? "#null" : kdlString(s))

const hashKey = (k: HashKey): string =>
  kdlString(k.source === "header" || k.source === "cookie" ? `${k.source}:${k.name}` : k.source)

/** A JSON value as the body of a `config { ... }` node (the decoder's mapping, reversed). */
const jsonNode = (w: Writer, name: string, v: unknown): void => {
  const n = kdlString(name)
  const prim = (x: unknown): string =>
    x === null ? "#null" : typeof x === "string" ? kdlString(x) : typeof x === "boolean" ? bool(x) : String(x)
  if (Array.isArray(v)) w.line(`${n} ${v.map(prim).join(" ")}`)
  else if (v !== null && typeof v === "object") w.block(n, () => Object.entries(v).forEach(([k, x]) => jsonNode(w, k, x)))
  else w.line(`${n} ${prim(v)}`)
}

const circuitBreaker = (w: Writer, c: CircuitBreakerConfig): void =>
  w.block("circuit-breaker", () => {
    w.line(`failure-threshold ${c.failureThreshold}`)
    w.line(`success-threshold ${c.successThreshold}`)
    w.line(`timeout-seconds ${msSecs(c.openTimeoutMs)}`)
    w.line(`half-open-max-requests ${c.halfOpenMaxRequests}`)
    if (c.probeTimeoutMs !== undefined) w.line(`probe-timeout-secs ${msSecs(c.probeTimeoutMs)}`)
  })

const pathModifier = (w: Writer, p: PathModifier | null): void => {
  if (p?._tag === "ReplaceFullPath") w.line(`replace-full-path ${kdlString(p.path)}`)
  if (p?._tag === "ReplacePrefixMatch") w.line(`replace-prefix-match ${kdlString(p.prefix)}`)
}

const strings = (xs: ReadonlyArray<string>): string => xs.map(kdlString).join(" ")

const filter = (w: Writer, f: FilterConfig): void =>
  w.block(`filter ${kdlString(f.id)}`, () => {
    w.line(`type ${kdlString(f.type)}`)
    switch (f.type) {
      case "headers":
        w.line(`phase ${kdlString(f.phase)}`)
        for (const [key, ps] of [["rename", f.rename], ["set", f.set], ["add", f.add]] as const) {
          if (ps.length > 0) w.block(key, () => ps.forEach(([a, b]) => w.line(`${kdlString(a)} ${kdlString(b)}`)))
        }
        if (f.remove.length > 0) w.line(`remove ${strings(f.remove)}`)
        break
      case "rate-limit":
        w.line(`max-rps ${f.maxRps}`)
        w.line(`burst ${f.burst}`)
        w.line(`key ${kdlString(f.key)}`)
        w.line(`on-limit ${kdlString(f.onLimit)}`)
        w.line(`status-code ${f.statusCode}`)
        w.line(`message ${kdlString(f.message)}`)
        w.line(`max-delay-ms ${f.maxDelayMs}`)
        w.line(`max-keys ${f.maxKeys}`)
        w.line(`backend ${kdlString(f.backend.type)}`)
        if (f.backend.type === "redis") {
          const b = f.backend
          w.line(`redis-url ${kdlString(b.url)}`)
          w.line(`redis-prefix ${kdlString(b.prefix)}`)
          w.line(`redis-pool-size ${b.poolSize}`)
          w.line(`redis-timeout-ms ${b.timeoutMs}`)
          w.line(`redis-fallback ${kdlString(b.fallback)}`)
          w.line(`redis-failure-threshold ${b.failureThreshold}`)
          w.line(`redis-circuit-open-ms ${b.circuitOpenMs}`)
        }
        break
      case "cors":
        if (f.allowedOrigins.length > 0) w.line(`allowed-origins ${strings(f.allowedOrigins)}`)
        if (f.allowedMethods.length > 0) w.line(`allowed-methods ${strings(f.allowedMethods)}`)
        if (f.allowedHeaders.length > 0) w.line(`allowed-headers ${strings(f.allowedHeaders)}`)
        if (f.exposeHeaders.length > 0) w.line(`expose-headers ${strings(f.exposeHeaders)}`)
        w.line(`allow-credentials ${bool(f.allowCredentials)}`)
        w.line(`max-age ${f.maxAgeSecs}`)
        break
      case "redirect":
        w.line(`status-code ${f.statusCode}`)
        if (f.scheme !== null) w.line(`scheme ${kdlString(f.scheme)}`)
        if (f.hostname !== null) w.line(`hostname ${kdlString(f.hostname)}`)
        if (f.port !== null) w.line(`port ${f.port}`)
        pathModifier(w, f.path)
        break
      case "url-rewrite":
        if (f.hostname !== null) w.line(`hostname ${kdlString(f.hostname)}`)
        pathModifier(w, f.path)
        break
      case "timeout":
        if (f.requestTimeoutSecs !== null) w.line(`request-timeout-secs ${f.requestTimeoutSecs}`)
        if (f.upstreamTimeoutSecs !== null) w.line(`upstream-timeout-secs ${f.upstreamTimeoutSecs}`)
        if (f.connectTimeoutSecs !== null) w.line(`connect-timeout-secs ${f.connectTimeoutSecs}`)
        break
      case "security-headers":
        w.line(`hsts ${nullableStr(f.hsts)}`)
        w.line(`content-type-options ${bool(f.contentTypeOptions)}`)
        w.line(`frame-options ${nullableStr(f.frameOptions)}`)
        w.line(`referrer-policy ${nullableStr(f.referrerPolicy)}`)
        w.line(`content-security-policy ${nullableStr(f.contentSecurityPolicy)}`)
        w.line(`permissions-policy ${nullableStr(f.permissionsPolicy)}`)
        w.line(`cross-origin-opener-policy ${nullableStr(f.crossOriginOpenerPolicy)}`)
        w.line(`override ${bool(f.override)}`)
        break
      case "agent":
        w.line(`agent ${kdlString(f.agent)}`)
        if (f.failureMode !== undefined) w.line(`failure-mode ${kdlString(f.failureMode)}`)
        if (f.timeoutMs !== undefined) w.line(`timeout-ms ${f.timeoutMs}`)
        if (f.inspectBody !== undefined) w.line(`inspect-body ${bool(f.inspectBody)}`)
        if (f.maxBodyBytes !== undefined) w.line(`max-body-bytes ${f.maxBodyBytes}`)
        break
    }
  })

class Writer {
  readonly lines: Array<string> = []
  private depth = 0
  line(text: string): void {
    this.lines.push("    ".repeat(this.depth) + text)
  }
  block(head: string, body: () => void): void {
    this.line(`${head} {`)
    this.depth++
    body()
    this.depth--
    this.line("}")
  }
}

const headerOps = (w: Writer, name: string, ops: HeaderOps): void =>
  w.block(name, () => {
    for (const [key, pairs] of [["rename", ops.rename], ["set", ops.set], ["add", ops.add]] as const) {
      if (pairs.length > 0) w.block(key, () => pairs.forEach(([a, b]) => w.line(`${kdlString(a)} ${kdlString(b)}`)))
    }
    if (ops.remove.length > 0) w.line(`remove ${ops.remove.map(kdlString).join(" ")}`)
  })

const match = (m: RouteMatch): string => {
  switch (m._tag) {
    case "Path":
      return `path ${kdlString(m.path)}`
    case "PathPrefix":
      return `path-prefix ${kdlString(m.prefix)}`
    case "PathRegex":
      return `path-regex ${kdlString(m.pattern)}`
    case "Host":
      return `host ${kdlString(m.host)}`
    case "Header":
      return `header ${kdlString(m.name)}${m.value === undefined ? "" : ` ${kdlString(m.value)}`}`
    case "Method":
      return `method ${m.methods.map(kdlString).join(" ")}`
    case "QueryParam":
      return `query-param ${kdlString(m.name)}${m.value === undefined ? "" : ` ${kdlString(m.value)}`}`
  }
}

const listenerTls = (w: Writer, t: ListenerTlsConfig): void =>
  w.block("tls", () => {
    w.line(`cert-file ${kdlString(t.certFile)}`)
    w.line(`key-file ${kdlString(t.keyFile)}`)
    if (t.caFile !== undefined) w.line(`ca-file ${kdlString(t.caFile)}`)
    w.line(`client-auth ${bool(t.clientAuth)}`)
    w.line(`min-version ${kdlString(t.minVersion)}`)
    w.line(`max-version ${kdlString(t.maxVersion)}`)
    for (const c of t.cipherSuites) w.line(`cipher-suite ${kdlString(c)}`)
    w.line(`session-resumption ${bool(t.sessionResumption)}`)
    w.line(`ocsp-stapling ${bool(t.ocspStapling)}`)
    for (const s of t.sni) {
      w.block("sni", () => {
        if (s.hostnames.length > 0) w.line(`${s.priority ? "priority-hostnames" : "hostnames"} ${strings(s.hostnames)}`)
        w.line(`cert-file ${kdlString(s.certFile)}`)
        w.line(`key-file ${kdlString(s.keyFile)}`)
      })
    }
  })

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
    for (const l of c.listeners) {
      w.block(`listener ${kdlString(l.id)}`, () => {
        w.line(`address ${kdlString(formatHostPort(l.address.host, l.address.port))}`)
        w.line(`protocol ${kdlString(l.protocol)}`)
        w.line(`max-concurrent-streams ${l.maxConcurrentStreams}`)
        w.line(`max-early-resets ${l.maxEarlyResets}`)
        if (l.tls !== undefined) listenerTls(w, l.tls)
        w.line(`request-timeout-secs ${secs(l.requestTimeout)}`)
        w.line(`header-timeout-secs ${secs(l.headerTimeout)}`)
        w.line(`body-idle-timeout-secs ${secs(l.bodyIdleTimeout)}`)
        w.line(`write-timeout-secs ${secs(l.writeTimeout)}`)
        w.line(`keepalive-timeout-secs ${secs(l.keepaliveTimeout)}`)
        if (l.keepaliveMaxRequests !== undefined) w.line(`keepalive-max-requests ${l.keepaliveMaxRequests}`)
        if (l.defaultRoute !== undefined) w.line(`default-route ${kdlString(l.defaultRoute)}`)
        w.line(`admin ${bool(l.admin)}`)
        if (l.trustedProxies.length > 0) w.line(`trusted-proxies ${strings(l.trustedProxies)}`)
      })
    }
  })
  if (c.upstreams.length > 0) {
    w.block("upstreams", () => {
      for (const u of c.upstreams) {
        w.block(`upstream ${kdlString(u.id)}`, () => {
          for (const t of u.targets) w.line(`target ${kdlString(t.address)} weight=${t.weight}`)
          const lb = `load-balancing ${kdlString(u.loadBalancing)}`
          if (u.loadBalancing === "consistent_hash") {
            w.block(lb, () => {
              w.line(`hash-key ${hashKey(u.hashKey)}`)
              w.line(`virtual-nodes ${u.virtualNodes}`)
            })
          } else if (u.loadBalancing === "maglev") {
            w.block(lb, () => {
              w.line(`hash-key ${hashKey(u.hashKey)}`)
              w.line(`table-size ${u.maglevTableSize}`)
            })
          } else if (u.loadBalancing === "sticky") {
            const st = u.sticky
            w.block(lb, () => {
              w.line(`cookie-name ${kdlString(st.cookieName)}`)
              w.line(`cookie-ttl ${st.cookieTtlSecs}`)
              w.line(`cookie-path ${kdlString(st.cookiePath)}`)
              w.line(`cookie-secure ${bool(st.cookieSecure)}`)
              w.line(`cookie-same-site ${kdlString(st.cookieSameSite)}`)
              w.line(`fallback ${kdlString(st.fallback)}`)
            })
          } else w.line(lb)
          w.block("timeouts", () => {
            for (const k of ["connect", "request", "read", "write"] as const) w.line(`${k} ${secs(u.timeouts[k])}`)
          })
          const p = u.connectionPool
          w.block("connection-pool", () => {
            w.line(`max-connections ${p.maxConnections}`)
            w.line(`max-idle ${p.maxIdle}`)
            w.line(`idle-timeout ${secs(p.idleTimeout)}`)
            if (p.maxLifetime !== undefined) w.line(`max-lifetime ${secs(p.maxLifetime)}`)
            w.line(`max-pending-requests ${p.maxPendingRequests}`)
            w.line(`pending-timeout ${secs(p.pendingTimeout)}`)
            w.line(`max-client-share ${p.maxClientShare}`)
          })
          const h = u.healthCheck
          if (h !== undefined) {
            w.block("health-check", () => {
              const t = h.type
              if (t.kind === "tcp") w.line(`type "tcp"`)
              else {
                w.block(`type "http"`, () => {
                  w.line(`path ${kdlString(t.path)}`)
                  w.line(`expected-status ${t.expectedStatus.join(" ")}`)
                  if (t.host !== undefined) w.line(`host ${kdlString(t.host)}`)
                })
              }
              w.line(`interval-secs ${msSecs(h.intervalMs)}`)
              w.line(`timeout-secs ${msSecs(h.timeoutMs)}`)
              w.line(`healthy-threshold ${h.healthyThreshold}`)
              w.line(`unhealthy-threshold ${h.unhealthyThreshold}`)
            })
          }
          const ph = u.passiveHealth
          w.block("passive-health", () => {
            w.line(`window-size ${ph.windowSize}`)
            w.line(`failure-ratio ${ph.failureRatio}`)
            w.line(`min-requests ${ph.minRequests}`)
            w.line(`cooldown-secs ${msSecs(ph.cooldownMs)}`)
          })
          circuitBreaker(w, u.circuitBreaker)
          w.block("retry-budget", () => {
            w.line(`ratio ${u.retryBudget.ratio}`)
            w.line(`min-per-second ${u.retryBudget.minPerSecond}`)
            w.line(`max-balance ${u.retryBudget.maxBalance}`)
          })
          const tls = u.tls
          if (tls !== undefined) {
            w.block("tls", () => {
              if (tls.sni !== undefined) w.line(`sni ${kdlString(tls.sni)}`)
              if (tls.caCert !== undefined) w.line(`ca-cert ${kdlString(tls.caCert)}`)
              if (tls.clientCert !== undefined) w.line(`client-cert ${kdlString(tls.clientCert)}`)
              if (tls.clientKey !== undefined) w.line(`client-key ${kdlString(tls.clientKey)}`)
              w.line(`insecure-skip-verify ${bool(tls.insecureSkipVerify)}`)
            })
          }
          const hv = u.httpVersion
          w.block("http-version", () => {
            w.line(`min-version ${hv.minVersion}`)
            w.line(`max-version ${hv.maxVersion}`)
            w.line(`h2-ping-interval ${secs(hv.h2PingInterval)}`)
            w.line(`max-h2-streams ${hv.maxH2Streams}`)
          })
        })
      }
    })
  }
  if (c.routes.length > 0) {
    w.block("routes", () => {
      for (const r of c.routes) {
        w.block(`route ${kdlString(r.id)}`, () => {
          w.line(`priority ${r.priority}`)
          if (r.matches.length > 0) w.block("matches", () => r.matches.forEach((m) => w.line(match(m))))
          if (r.upstream !== undefined) w.line(`upstream ${kdlString(r.upstream)}`)
          if (r.builtinHandler !== undefined) w.line(`builtin-handler ${kdlString(r.builtinHandler)}`)
          const sf = r.staticFiles
          if (sf !== undefined) {
            w.block("static-files", () => {
              w.line(`root ${kdlString(sf.root)}`)
              w.line(`index ${kdlString(sf.index)}`)
              w.line(`directory-listing ${bool(sf.directoryListing)}`)
              w.line(`cache-control ${kdlString(sf.cacheControl)}`)
              w.line(`compress ${bool(sf.compress)}`)
              w.line(`compress-min-size ${sf.compressMinSize}`)
              if (sf.fallback !== null) w.line(`fallback ${kdlString(sf.fallback)}`)
              w.line(`allow-dotfiles ${bool(sf.allowDotfiles)}`)
            })
          }
          if (r.filters.length > 0) w.line(`filters ${strings(r.filters)}`)
          const rp = r.retryPolicy
          if (rp !== undefined) {
            w.block("retry-policy", () => {
              w.line(`max-attempts ${rp.maxAttempts}`)
              if (rp.retryableStatusCodes.length > 0) w.line(`retryable-status-codes ${rp.retryableStatusCodes.join(" ")}`)
              w.line(`backoff ${rp.backoffMs}`)
              w.line(`max-backoff ${rp.maxBackoffMs}`)
              if (rp.perAttemptTimeoutMs !== undefined) w.line(`per-attempt-timeout ${rp.perAttemptTimeoutMs}`)
              w.line(`retry-non-idempotent ${bool(rp.retryNonIdempotent)}`)
            })
          }
          w.block("policies", () => {
            headerOps(w, "request-headers", r.policies.requestHeaders)
            headerOps(w, "response-headers", r.policies.responseHeaders)
            if (r.policies.timeout !== undefined) w.line(`timeout-secs ${secs(r.policies.timeout)}`)
            if (r.policies.failureMode !== undefined) w.line(`failure-mode ${kdlString(r.policies.failureMode)}`)
            if (r.policies.maxBodySize !== undefined) w.line(`max-body-size ${r.policies.maxBodySize}`)
            w.line(`buffer-requests ${bool(r.policies.bufferRequests)}`)
            w.line(`buffer-responses ${bool(r.policies.bufferResponses)}`)
          })
          if (r.circuitBreaker !== undefined) circuitBreaker(w, r.circuitBreaker)
          if (r.websocket) w.line("websocket #true")
          if (r.websocketInspection) w.line("websocket-inspection #true")
          const rc = r.cache
          if (rc !== undefined) {
            w.block("cache", () => {
              w.line(`enabled ${bool(rc.enabled)}`)
              w.line(`default-ttl-secs ${secs(rc.defaultTtl)}`)
              w.line(`max-size-bytes ${rc.maxSizeBytes}`)
              w.line(`cache-private ${bool(rc.cachePrivate)}`)
              w.line(`stale-while-revalidate-secs ${secs(rc.staleWhileRevalidate)}`)
              w.line(`stale-if-error-secs ${secs(rc.staleIfError)}`)
              w.line(`cacheable-methods ${strings(rc.cacheableMethods)}`)
              w.line(`cacheable-status-codes ${rc.cacheableStatusCodes.join(" ")}`)
              if (rc.varyHeaders.length > 0) w.line(`vary-headers ${strings(rc.varyHeaders)}`)
              if (rc.ignoreQueryParams.length > 0) w.line(`ignore-query-params ${strings(rc.ignoreQueryParams)}`)
              if (rc.excludeExtensions.length > 0) w.line(`exclude-extensions ${strings(rc.excludeExtensions)}`)
              if (rc.excludePaths.length > 0) w.line(`exclude-paths ${strings(rc.excludePaths)}`)
            })
          }
        })
      }
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
      for (const a of c.agents) {
        w.block(`agent ${kdlString(a.id)}${a.type === undefined ? "" : ` type=${kdlString(a.type)}`}`, () => {
          if (a.socketPath !== undefined) w.line(`unix-socket ${kdlString(a.socketPath)}`)
          const g = a.grpc
          if (g !== undefined) {
            if (g.tls === undefined) w.line(`grpc ${kdlString(g.address)}`)
            else {
              const tls = g.tls
              w.block(`grpc address=${kdlString(g.address)}`, () => {
                w.line("tls")
                if (tls.insecure) w.line("tls-insecure")
                if (tls.caCert !== undefined) w.line(`ca-cert ${kdlString(tls.caCert)}`)
                if (tls.clientCert !== undefined) w.line(`client-cert ${kdlString(tls.clientCert)}`)
                if (tls.clientKey !== undefined) w.line(`client-key ${kdlString(tls.clientKey)}`)
              })
            }
          }
          w.line(`events ${strings(a.events)}`)
          w.line(`timeout-ms ${a.timeoutMs}`)
          w.line(`failure-mode ${kdlString(a.failureMode)}`)
          w.line(`max-concurrent-calls ${a.maxConcurrentCalls}`)
          w.line(`max-queued-calls ${a.maxQueuedCalls}`)
          circuitBreaker(w, a.circuitBreaker)
          w.line(`max-request-body-bytes ${a.maxRequestBodyBytes}`)
          w.line(`max-response-body-bytes ${a.maxResponseBodyBytes}`)
          w.line(`request-body-mode ${kdlString(a.requestBodyMode)}`)
          w.line(`response-body-mode ${kdlString(a.responseBodyMode)}`)
          w.line(`chunk-timeout-ms ${a.chunkTimeoutMs}`)
          w.line(`pool-size ${a.poolSize}`)
          const cfg = a.config
          if (cfg !== null && typeof cfg === "object" && !Array.isArray(cfg)) {
            w.block("config", () => Object.entries(cfg).forEach(([k, v]) => jsonNode(w, k, v)))
          }
          w.line(`connect-timeout-ms ${a.connectTimeoutMs}`)
          w.line(`ping-interval-ms ${a.pingIntervalMs}`)
          w.line(`reconnect-base-ms ${a.reconnectBaseMs}`)
          w.line(`reconnect-max-ms ${a.reconnectMaxMs}`)
        })
      }
    })
  }
  return w.lines.join("\n") + "\n"
}
