/**
 * Typed config -> KDL text (canonical names, every field written). Decoding
 * the output gives the same config back (checked by a property test); used
 * to show the running config and to generate test documents.
 */
import { Duration } from "effect"
import { formatHostPort, type HeaderOps, type RouteMatch, type SentinelConfig } from "./Schema.js"

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
  })
  w.block("listeners", () => {
    for (const l of c.listeners) {
      w.block(`listener ${kdlString(l.id)}`, () => {
        w.line(`address ${kdlString(formatHostPort(l.address.host, l.address.port))}`)
        w.line(`protocol ${kdlString(l.protocol)}`)
        w.line(`request-timeout-secs ${secs(l.requestTimeout)}`)
        w.line(`keepalive-timeout-secs ${secs(l.keepaliveTimeout)}`)
        if (l.keepaliveMaxRequests !== undefined) w.line(`keepalive-max-requests ${l.keepaliveMaxRequests}`)
        if (l.defaultRoute !== undefined) w.line(`default-route ${kdlString(l.defaultRoute)}`)
      })
    }
  })
  if (c.upstreams.length > 0) {
    w.block("upstreams", () => {
      for (const u of c.upstreams) {
        w.block(`upstream ${kdlString(u.id)}`, () => {
          for (const t of u.targets) w.line(`target ${kdlString(t.address)} weight=${t.weight}`)
          w.line(`load-balancing ${kdlString(u.loadBalancing)}`)
          w.block("timeouts", () => {
            for (const k of ["connect", "request", "read", "write"] as const) w.line(`${k} ${secs(u.timeouts[k])}`)
          })
          const p = u.connectionPool
          w.block("connection-pool", () => {
            w.line(`max-connections ${p.maxConnections}`)
            w.line(`max-idle ${p.maxIdle}`)
            w.line(`idle-timeout ${secs(p.idleTimeout)}`)
            if (p.maxLifetime !== undefined) w.line(`max-lifetime ${secs(p.maxLifetime)}`)
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
          w.block("policies", () => {
            headerOps(w, "request-headers", r.policies.requestHeaders)
            headerOps(w, "response-headers", r.policies.responseHeaders)
            if (r.policies.timeout !== undefined) w.line(`timeout-secs ${secs(r.policies.timeout)}`)
          })
        })
      }
    })
  }
  const l = c.limits
  w.block("limits", () => {
    w.line(`max-header-size ${l.maxHeaderSize}`)
    w.line(`max-header-count ${l.maxHeaderCount}`)
    w.line(`max-body-size ${l.maxBodySize}`)
    w.line(`max-uri-length ${l.maxUriLength}`)
    w.line(`max-connections-per-client ${l.maxConnectionsPerClient}`)
    w.line(`max-total-connections ${l.maxTotalConnections}`)
    w.line(`max-in-flight-requests ${l.maxInFlightRequests}`)
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
      })
    })
  })
  return w.lines.join("\n") + "\n"
}
