import * as Duration from "effect/Duration"
import { describe, expect, it } from "vitest"
import { formatIssue } from "../../src/config/ConfigIssue.js"
import { decodeKdl } from "../../src/config/Kdl.js"

const L = `listeners { listener "main" { address "127.0.0.1:8080"; }; }\n`
const errs = (text: string, env?: Record<string, string>) =>
  decodeKdl(text, { file: "t.kdl", ...(env ? { env } : {}) }).errors.map(formatIssue)
const ok = (text: string, env?: Record<string, string>) => {
  const r = decodeKdl(text, { file: "t.kdl", ...(env ? { env } : {}) })
  expect(r.errors.map(formatIssue)).toEqual([])
  return r.config!
}

describe("Kdl decoder: values and defaults", () => {
  it("a minimal config gets every documented default", () => {
    const c = ok(L)
    expect(c.schemaVersion).toBe("1.0")
    expect(c.system).toEqual({
      workerThreads: 1, maxConnections: 10000, gracefulShutdownTimeout: Duration.seconds(30),
      traceIdFormat: "tinyflake", autoReload: false, routeCacheSize: 1000,
      dns: { refreshMs: 30000, timeoutMs: 2000, maxStaleMs: 3600000, maxHosts: 10000 }
    })
    expect(c.listeners[0]).toEqual({
      id: "main", address: { host: "127.0.0.1", port: 8080 }, protocol: "http", maxConcurrentStreams: 100, maxEarlyResets: 100,
      requestTimeout: Duration.seconds(60), keepaliveTimeout: Duration.seconds(75), headerTimeout: Duration.seconds(10),
      bodyIdleTimeout: Duration.seconds(30), writeTimeout: Duration.seconds(30), admin: false, trustedProxies: []
    })
    expect(c.limits).toEqual({
      maxHeaderSize: 8192, maxHeaderCount: 100, maxBodySize: 10485760, requestBufferSize: 65536, responseBufferSize: 262144,
      slowReaderTimeout: Duration.seconds(10), maxUriLength: 8192,
      maxConnectionsPerClient: 100, maxTotalConnections: 10000, maxInFlightRequests: 10000,
      inFlightQueueSize: 1000, inFlightQueueTimeout: Duration.seconds(5), maxHeaderLineSize: 8192,
      underscoresInHeaders: "drop", allowTrace: false, mergeSlashes: true, normalizePath: true, escapedSlashes: "keep",
      websocketMaxFrameSize: 1048576, websocketMaxMessageSize: 16777216, websocketIdleTimeout: Duration.seconds(300),
      websocketMaxLifetime: Duration.zero, maxWebsocketTunnels: 10000, maxWebsocketTunnelsPerClient: 100
    })
    expect(c.observability.logging).toEqual({
      level: "info", format: "json", accessLog: { enabled: true, format: "json", bufferSize: 8192, flushIntervalMs: 50 },
      errorLog: { enabled: true, level: "warn", bufferSize: 8192 },
      auditLog: { enabled: true, bufferSize: 8192, logBlocked: true, logAgentDecisions: true }
    })
    expect(c.observability.metrics).toEqual({ enabled: false, address: { host: "127.0.0.1", port: 9090 }, path: "/metrics", maxSeriesPerMetric: 2000 })
    expect(c.observability.tracing).toBeUndefined()
    expect(c.filters).toEqual([])
    expect(c.agents).toEqual([])
  })

  it("upstream targets in all three spellings, timeouts and pool with -secs aliases", () => {
    const c = ok(L + `upstreams {
  upstream "api" {
    target "10.0.0.1:80" weight=3
    targets { target { address "[::1]:81"; weight 2; }; }
    address "h.example:82"
    load-balancing "p2c"
    timeouts { connect-secs 5; read 0.25; }
    connection-pool { max-idle 0; idle-timeout-secs 9; max-lifetime 600; max-pending-requests 7; pending-timeout-secs 2; max-client-share 0.25; }
  }
}`)
    const u = c.upstreams[0]
    expect(u.targets).toEqual([
      { address: "10.0.0.1:80", host: "10.0.0.1", port: 80, weight: 3 },
      { address: "[::1]:81", host: "::1", port: 81, weight: 2 },
      { address: "h.example:82", host: "h.example", port: 82, weight: 1 }
    ])
    expect(u.loadBalancing).toBe("power_of_two_choices")
    expect(u.timeouts).toEqual({ connect: Duration.seconds(5), request: Duration.seconds(60), read: Duration.millis(250), write: Duration.seconds(30) })
    expect(u.connectionPool).toEqual({
      maxConnections: 100, maxIdle: 0, idleTimeout: Duration.seconds(9), maxLifetime: Duration.seconds(600),
      maxPendingRequests: 7, pendingTimeout: Duration.seconds(2), maxClientShare: 0.25
    })
  })

  it("routes: named and integer priorities, matches in document order, header ops, timeout", () => {
    const c = ok(L + `upstreams { upstream "u" { target "h:1"; }; }
routes {
  route "a" {
    priority "critical"
    matches { host "x.example"; path-prefix "/api/"; method "get" "Post"; header "X-A"; header "X-B" "v"; query-param "q"; path-regex "^/v[0-9]+"; path "/exact"; }
    upstream "u"
    policies {
      request-headers { rename { "Old" "New"; }; set { "X-A" "1"; }; add { "X-B" "2"; }; remove "X-C" "X-D"; remove "X-E"; }
      response-headers { set { "X-F" "3"; }; }
      timeout-secs 2.5
    }
  }
  route "b" { priority -7; builtin-handler "status"; }
}`)
    const [a, b] = c.routes
    expect(a.priority).toBe(1000)
    expect(b.priority).toBe(-7)
    expect(a.matches).toEqual([
      { _tag: "Host", host: "x.example" },
      { _tag: "PathPrefix", prefix: "/api/" },
      { _tag: "Method", methods: ["GET", "POST"] },
      { _tag: "Header", name: "X-A" },
      { _tag: "Header", name: "X-B", value: "v" },
      { _tag: "QueryParam", name: "q" },
      { _tag: "PathRegex", pattern: "^/v[0-9]+" },
      { _tag: "Path", path: "/exact" }
    ])
    expect(a.policies.requestHeaders).toEqual({ rename: [["Old", "New"]], set: [["X-A", "1"]], add: [["X-B", "2"]], remove: ["X-C", "X-D", "X-E"] })
    expect(a.policies.responseHeaders).toEqual({ rename: [], set: [["X-F", "3"]], add: [], remove: [] })
    expect(a.policies.timeout).toEqual(Duration.millis(2500))
    expect(b.matches).toEqual([])
    expect(b.builtinHandler).toBe("status")
  })

  it("sizes accept -bytes aliases and unit strings", () => {
    const c = ok(L + `limits { max-header-size-bytes 16384; max-body-size "1MiB"; max-uri-length 100; }`)
    expect(c.limits.maxHeaderSize).toBe(16384)
    expect(c.limits.maxBodySize).toBe(1048576)
    expect(c.limits.maxUriLength).toBe(100)
  })

  it("slow-reader bounds: response buffer and hold timeout in limits, pool waits and client share", () => {
    const c = ok(L + `limits { response-buffer-size "64KiB"; slow-reader-timeout-secs 2.5; }`)
    expect(c.limits.responseBufferSize).toBe(65536)
    expect(c.limits.slowReaderTimeout).toEqual(Duration.millis(2500))
    expect(errs(L + `upstreams { upstream "u" { target "h:1"; connection-pool { max-client-share 0; }; }; }`)).toEqual([
      "t.kdl:2:77: `max-client-share` must be greater than 0, got 0"
    ])
    expect(errs(L + `upstreams { upstream "u" { target "h:1"; connection-pool { max-client-share 1.5; max-pending-requests -1; }; }; }`)).toEqual([
      "t.kdl:2:77: `max-client-share` must be at most 1, got 1.5",
      "t.kdl:2:103: `max-pending-requests` must not be negative, got -1"
    ])
  })

  it("KDL v1 syntax still loads, with a warning", () => {
    const r = decodeKdl(`listeners {\n  listener "main" {\n    address "127.0.0.1:1"\n  }\n}\nsystem {\n  auto-reload true\n}\n`, { file: "v1.kdl" })
    expect(r.errors).toEqual([])
    expect(r.config!.system.autoReload).toBe(true)
    expect(r.warnings.map(formatIssue)).toEqual(["v1.kdl:1:1: parsed as KDL v1; KDL v2 syntax (#true, #false, #null) is preferred"])
  })
})

describe("Kdl decoder: every error class, with file:line:col", () => {
  it("syntax errors carry the parser's position", () => {
    expect(errs(`listeners {\n  listener "a" {\n`)).toEqual(["t.kdl:3:1: invalid KDL: the file ends inside a { } block: the `{` at 2:16 is never closed (missing `}`)"])
  })

  it("unknown nodes at every level, with a hint", () => {
    expect(errs(L + `sytem { }\nlistener "x" { }`)).toEqual([
      "t.kdl:2:1: unknown node `sytem` at the top level; did you mean `system`?",
      "t.kdl:3:1: unknown node `listener` at the top level; did you mean `listeners`?"
    ])
    expect(errs(`listeners { listener "a" {\n  adress "1.2.3.4:5"\n}; }`)).toEqual([
      "t.kdl:1:13: listener \"a\" needs an `address`",
      "t.kdl:2:3: unknown node `adress` in `listener`; did you mean `address`?"
    ])
    expect(errs(L + `upstreams { upstream "u" { target "h:1"; timeouts { conect 1; }; }; }`)).toEqual([
      "t.kdl:2:53: unknown node `conect` in `timeouts`; did you mean `connect`?"
    ])
    expect(errs(L + `routes { route "r" { builtin-handler "status"; matches { path_prefix "/"; }; }; }`)).toEqual([
      "t.kdl:2:58: unknown node `path_prefix` in `matches`; did you mean `path-prefix`?"
    ])
    expect(errs(L + `zzz 1`)).toEqual(["t.kdl:2:1: unknown node `zzz` at the top level"])
  })

  it("not-supported-yet names are rejected, never ignored", () => {
    expect(errs(L + `waf { }\nnamespace "x" { }\nupstreams { upstream "u" { target "h:1"; retry-policy { }; }; }\nroutes { route "r" { builtin-handler "status"; shadow { }; }; }\nobservability { metrics { high-cardinality #true; }; }\nagents { agent "a" { unix-socket "/s"; http "h:1"; }; }`)).toEqual([
      "t.kdl:2:1: `waf` is not supported yet",
      "t.kdl:3:1: `namespace` is not supported yet",
      "t.kdl:4:42: `retry-policy` is not supported yet",
      "t.kdl:5:48: `shadow` is not supported yet",
      "t.kdl:6:27: `high-cardinality` is not supported yet",
      "t.kdl:7:40: `http` is not supported yet"
    ])
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; protocol "h3"; }; }`)).toEqual([
      "t.kdl:1:58: `protocol` \"h3\" is not supported yet"
    ])
  })

  it("properties and argument counts", () => {
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1" "x"; }; }`)).toEqual([
      "t.kdl:1:48: `address` takes at most 1 argument, got 2"
    ])
    expect(errs(`listeners { listener "a" { address; }; }`)).toEqual(["t.kdl:1:28: `address` needs a value"])
    expect(errs(`listeners { listener "a" x=1 { address "0.0.0.0:1"; }; }`)).toEqual([
      "t.kdl:1:26: `listener` takes no properties, got `x`"
    ])
    expect(errs(L + `upstreams { upstream "u" { target "h:1" wieght=2; }; }`)).toEqual([
      "t.kdl:2:41: unknown property `wieght` on `target`; did you mean `weight`?"
    ])
    expect(errs(L + `system { worker-threads 1 { }; }`)).toEqual(["t.kdl:2:10: `worker-threads` takes no children block"])
  })

  it("wrong types, negatives, and integers beyond 2^53", () => {
    expect(errs(L + `system {\n worker-threads "2"\n auto-reload 1\n max-connections -5\n route-cache-size 9007199254740993\n graceful-shutdown-timeout-secs -1\n}`)).toEqual([
      "t.kdl:3:17: `worker-threads` must be an integer, got \"2\"",
      "t.kdl:4:14: `auto-reload` must be #true or #false, got 1",
      "t.kdl:5:18: `max-connections` must be at least 1, got -5",
      "t.kdl:6:19: `route-cache-size` is too large (integers must be below 2^53)",
      "t.kdl:7:33: `graceful-shutdown-timeout-secs` must not be negative, got -1"
    ])
    expect(errs(L + `observability { logging { level "verbose"; }; }`)).toEqual([
      "t.kdl:2:33: `level` must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", got \"verbose\""
    ])
    expect(errs(L + `upstreams { upstream "u" { target "h:1"; load-balancing "round-robbin"; }; }`)).toEqual([
      expect.stringMatching(/^t\.kdl:2:57: `load-balancing` must be one of .*, got "round-robbin"; did you mean `round_robin`\?$/)
    ])
  })

  it("bad addresses, regexes, paths and header names", () => {
    expect(errs(`listeners { listener "a" { address "localhost"; }; }`)).toEqual([
      "t.kdl:1:36: `address` must be \"host:port\" (IPv6 as \"[::1]:80\"), got \"localhost\""
    ])
    expect(errs(L + `routes { route "r" { builtin-handler "status"; matches { path-regex "(" ; path "x"; header "bad header"; }; }; }`)).toEqual([
      "t.kdl:2:69: `path-regex` is not a valid regular expression: Invalid regular expression: /(/: Unterminated group",
      "t.kdl:2:80: `path` must start with \"/\", got \"x\"",
      "t.kdl:2:92: `header` name \"bad header\" is not a valid header name"
    ])
  })

  it("duplicates: ids, single-valued keys, alias pairs, singleton blocks", () => {
    expect(errs(`listeners {\n listener "a" { address "0.0.0.0:1"; }\n listener "a" { address "0.0.0.0:2"; }\n}`)).toEqual([
      "t.kdl:3:11: duplicate listener id \"a\" (first defined at t.kdl:2:11)"
    ])
    expect(errs(L + `upstreams { upstream "u" { target "h:1"; timeouts { connect 1; connect-secs 2; }; }; }`)).toEqual([
      "t.kdl:2:64: duplicate `connect-secs` (already set as `connect` at 2:53)"
    ])
    expect(errs(L + `system { }\nsystem { }`)).toEqual(["t.kdl:3:1: duplicate `system` (already set at 2:1)"])
  })

  it("missing required values and route target rules", () => {
    expect(errs(`system { }`)).toEqual([
      "t.kdl:1:1: no listener defined: add `listeners { listener \"main\" { address \"0.0.0.0:8080\" } }`"
    ])
    expect(errs(`listeners { }`)).toEqual([
      "t.kdl:1:1: no listener defined: add `listeners { listener \"main\" { address \"0.0.0.0:8080\" } }`"
    ])
    expect(errs(L + `upstreams { upstream "u" { load-balancing "random"; }; }`)).toEqual([
      "t.kdl:2:13: upstream \"u\" needs at least one `target`"
    ])
    expect(errs(L + `upstreams { upstream "u" { target "h:1"; }; }\nroutes {\n route "none" { priority 1; }\n route "both" { upstream "u"; builtin-handler "status"; }\n}`)).toEqual([
      "t.kdl:4:2: route \"none\" needs an `upstream`, a `builtin-handler` or `static-files`",
      "t.kdl:5:2: route \"both\" has `upstream` and `builtin-handler`; use exactly one"
    ])
  })

  it("dangling references with hints", () => {
    expect(errs(`listeners { listener "a" { address "0.0.0.0:1"; default-route "helth"; }; }
upstreams { upstream "backend" { target "h:1"; }; }
routes { route "health" { builtin-handler "health"; }; route "r" { upstream "backnd"; }; }`)).toEqual([
      "t.kdl:1:63: listener \"a\" default-route references unknown route \"helth\"; did you mean `health`?",
      "t.kdl:3:77: route \"r\" references unknown upstream \"backnd\"; did you mean `backend`?"
    ])
  })

  it("schema version: newer warns, older or malformed fails", () => {
    const newer = decodeKdl(`schema-version "1.3"\n` + L, { file: "t.kdl" })
    expect(newer.errors).toEqual([])
    expect(newer.warnings.map(formatIssue)).toEqual(["t.kdl:1:16: schema version 1.3 is newer than 1.0; newer features may be rejected"])
    expect(errs(`version "0.9"\n` + L)).toEqual(["t.kdl:1:9: schema version 0.9 is older than the supported 1.0"])
    expect(errs(`schema-version "one"\n` + L)).toEqual(["t.kdl:1:16: schema version must look like \"1.0\", got \"one\""])
  })

  it("collects every error in one pass, sorted by position", () => {
    const e = errs(`listeners { listener "a" { address "x"; protocol "h3"; }; }\nlimits { max-header-count 0; foo 1; }\nwaf { }`)
    expect(e).toEqual([
      "t.kdl:1:36: `address` must be \"host:port\" (IPv6 as \"[::1]:80\"), got \"x\"",
      "t.kdl:1:50: `protocol` \"h3\" is not supported yet",
      "t.kdl:2:27: `max-header-count` must be at least 1, got 0",
      "t.kdl:2:30: unknown node `foo` in `limits`",
      "t.kdl:3:1: `waf` is not supported yet"
    ])
  })
})

describe("Kdl decoder: environment substitution", () => {
  it("replaces ${VAR} and ${VAR:-default}; $${ is literal", () => {
    const c = ok(`listeners { listener "main" { address "\${HOST:-127.0.0.1}:\${PORT}"; }; }
system { pid-file "$\${HOME}/x-\${EMPTY:-d}"; }`, { PORT: "9000", EMPTY: "" })
    expect(c.listeners[0].address).toEqual({ host: "127.0.0.1", port: 9000 })
    expect(c.system.pidFile).toBe("\${HOME}/x-d")
  })

  it("an unset variable without default is an error at the value", () => {
    expect(errs(`listeners { listener "main" { address "h:\${NOPE}"; }; }`, {})).toEqual([
      "t.kdl:1:39: environment variable NOPE is not set (use ${NOPE:-default} for a default)",
      "t.kdl:1:39: `address` must be \"host:port\" (IPv6 as \"[::1]:80\"), got \"h:\""
    ])
    expect(errs(L + `system { pid-file "\${1BAD}"; }`, {})[0]).toBe(
      "t.kdl:2:19: invalid variable reference `${1BAD}` (expected ${NAME} or ${NAME:-default})"
    )
  })
})
