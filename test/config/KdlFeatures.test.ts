/**
 * Decoding of the feature blocks (upstream resilience, routes' filters /
 * retry-policy / static-files, filters, agents, limits, listeners,
 * observability): values, defaults, and every error class with file:line:col.
 */
import * as Duration from "effect/Duration"
import { describe, expect, it } from "vitest"
import { formatIssue } from "../../src/config/ConfigIssue.js"
import { decodeKdl } from "../../src/config/Kdl.js"

const L = `listeners { listener "main" { address "127.0.0.1:8080"; }; }\n`
const errs = (text: string) => decodeKdl(text, { file: "t.kdl" }).errors.map(formatIssue)
const ok = (text: string) => {
  const r = decodeKdl(text, { file: "t.kdl" })
  expect(r.errors.map(formatIssue)).toEqual([])
  return r.config!
}
const U = (body: string) => L + `upstreams { upstream "u" { target "h:1"; ${body} }; }`
const R = (body: string) => L + `routes { route "r" { ${body} }; }`

describe("upstream resilience blocks", () => {
  it("health-check, passive-health, circuit-breaker, retry-budget decode into the modules' units", () => {
    const u = ok(U(`health-check { type "http" { path "/hz"; expected-status "200" 204; host "x"; }; interval-secs 2.5; timeout-secs "500ms"; healthy-threshold 1; }
      passive-health { failure-ratio 0.25; cooldown-secs 3; }
      circuit-breaker { failure-threshold 3; timeout-secs 0.5; }
      retry-budget { ratio 0.5; }`)).upstreams[0]
    expect(u.healthCheck).toEqual({
      type: { kind: "http", path: "/hz", expectedStatus: [200, 204], host: "x" },
      intervalMs: 2500, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 3
    })
    expect(u.passiveHealth).toEqual({ windowSize: 100, failureRatio: 0.25, minRequests: 10, cooldownMs: 3000 })
    expect(u.circuitBreaker).toEqual({ failureThreshold: 3, successThreshold: 2, openTimeoutMs: 500, halfOpenMaxRequests: 1 })
    expect(u.retryBudget).toEqual({ ratio: 0.5, minPerSecond: 10, maxBalance: 100 })
    expect(ok(U(`health-check { interval-secs 1; }`)).upstreams[0].healthCheck?.type).toEqual({ kind: "tcp" })
    expect(ok(U("")).upstreams[0].healthCheck).toBeUndefined()
  })

  it("load-balancing options per algorithm", () => {
    const [a, b, c] = ok(L + `upstreams {
  upstream "a" { target "h:1"; load-balancing "consistent_hash" { hash-key "cookie:sid"; virtual-nodes 40; }; }
  upstream "b" { target "h:1"; load-balancing "maglev" { hash-key "path"; table-size 251; }; }
  upstream "c" { target "h:1"; load-balancing "sticky" { cookie-name "S"; cookie-ttl "30m"; cookie-same-site "strict"; fallback "p2c"; }; }
}`).upstreams
    expect([a.loadBalancing, a.hashKey, a.virtualNodes]).toEqual(["consistent_hash", { source: "cookie", name: "sid" }, 40])
    expect([b.loadBalancing, b.hashKey, b.maglevTableSize]).toEqual(["maglev", { source: "path" }, 251])
    expect(c.sticky).toEqual({
      cookieName: "S", cookieTtlSecs: 1800, cookiePath: "/", cookieSecure: true, cookieSameSite: "strict", fallback: "power_of_two_choices"
    })
  })

  it("tls and http-version (model only)", () => {
    const u = ok(U(`tls { sni "a.example"; client-cert "/c"; client-key "/k"; }\nhttp-version { max-version 2; h2-ping-interval 10; }`)).upstreams[0]
    expect(u.tls).toEqual({ sni: "a.example", clientCert: "/c", clientKey: "/k", insecureSkipVerify: false })
    expect(u.httpVersion).toEqual({ minVersion: 1, maxVersion: 2, h2PingInterval: Duration.seconds(10), maxH2Streams: 100 })
  })

  it("errors: options that do not apply, bad keys, unsupported algorithms and check types, inconsistent pairs", () => {
    expect(errs(U(`load-balancing "round_robin" { hash-key "path"; };`))).toEqual([
      "t.kdl:2:73: `hash-key` does not apply to load-balancing \"round_robin\" (it takes no options)"
    ])
    expect(errs(U(`load-balancing "maglev" { virtual-nodes 3; };`))).toEqual([
      "t.kdl:2:68: `virtual-nodes` does not apply to load-balancing \"maglev\"; it takes `hash-key`, `table-size`"
    ])
    expect(errs(U(`load-balancing "sticky" { fallback "sticky"; cookie-name "a b"; hash-key "header:"; };`))).toEqual([
      "t.kdl:2:77: `fallback` cannot be \"sticky\"",
      "t.kdl:2:99: `cookie-name` \"a b\" is not a valid cookie name",
      "t.kdl:2:115: `hash-key` must be \"client-ip\", \"path\", \"header:<name>\" or \"cookie:<name>\", got \"header:\""
    ])
    expect(errs(U(`load-balancing "adaptive";`))).toEqual(["t.kdl:2:57: `load-balancing` \"adaptive\" is not supported yet"])
    expect(errs(U(`health-check { type "grpc"; interval-secs 0; expected-status 200; };`))).toEqual([
      "t.kdl:2:62: health-check `type` \"grpc\" is not supported yet",
      "t.kdl:2:84: `interval-secs` must be greater than 0",
      "t.kdl:2:87: unknown node `expected-status` in `health-check`; it belongs in `type { expected-status ... }` inside this `health-check`"
    ])
    expect(errs(U(`health-check { type "http" { path "x"; expected-status 99; }; };`))).toEqual([
      "t.kdl:2:76: `path` must start with \"/\" and contain no spaces or control characters, got \"x\"",
      "t.kdl:2:97: `expected-status` must be at least 100, got 99"
    ])
    expect(errs(U(`health-check { type "tcp" { }; };`))).toEqual(["t.kdl:2:57: `type \"tcp\"` takes no { ... } block"])
    expect(errs(U(`circuit-breaker { failure-threshold 0; timeout "1s"; };`))).toEqual([
      "t.kdl:2:78: `failure-threshold` must be at least 1, got 0",
      "t.kdl:2:81: unknown node `timeout` in `circuit-breaker`; did you mean `timeout-seconds`?"
    ])
    expect(errs(U(`passive-health { failure-ratio 1.5; }; retry-budget { ratio -1; };`))).toEqual([
      "t.kdl:2:73: `failure-ratio` must be at most 1, got 1.5",
      "t.kdl:2:102: `ratio` must be at least 0, got -1"
    ])
    expect(errs(U(`tls { client-cert "/c"; }; http-version { min-version 2; max-version 1; }; `))).toEqual([
      "t.kdl:2:42: `client-cert` and `client-key` go together: set both or neither",
      "t.kdl:2:69: `min-version` 2 is above `max-version` 1"
    ])
    expect(errs(L + `system { dns { refresh-secs "soon"; }; }`)).toEqual([
      "t.kdl:2:29: `refresh-secs` must be a number or a duration like \"500ms\", \"30s\", \"5m\", \"1h\", got \"soon\""
    ])
  })
})

describe("routes: filters, retry-policy, static-files, failure-mode, admin-only config", () => {
  it("decodes, with filter references in order", () => {
    const r = ok(L + `filters { filter "a" { type "cors"; }; filter "b" { type "timeout"; request-timeout-secs 1; }; }
routes { route "r" {
  static-files { root "/srv"; fallback "/index.html"; compress-min-size "2KiB"; }
  filters "b" "a"
  retry-policy { max-attempts 2; retryable-status-codes 503; backoff "50ms"; max-backoff 1000; per-attempt-timeout "2s"; }
  policies { failure-mode "fail-open"; }
}; }`).routes[0]
    expect(r.filters).toEqual(["b", "a"])
    expect(r.staticFiles).toEqual({
      root: "/srv", index: "index.html", directoryListing: false, cacheControl: "public, max-age=3600", compress: true,
      compressMinSize: 2048, fallback: "/index.html", allowDotfiles: false
    })
    expect(r.retryPolicy).toEqual({
      maxAttempts: 2, retryableStatusCodes: [503], backoffMs: 50, maxBackoffMs: 1000, perAttemptTimeoutMs: 2000, retryNonIdempotent: false
    })
    expect(r.policies.failureMode).toBe("open")
  })

  it("errors: dangling filter with hint, duplicate filter, target rules, retry bounds, static-files root", () => {
    expect(errs(L + `filters { filter "cors" { type "cors"; }; }\nroutes { route "r" { builtin-handler "status"; filters "crs"; }; }`)).toEqual([
      "t.kdl:3:56: route \"r\" references unknown filter \"crs\"; did you mean `cors`?"
    ])
    expect(errs(L + `filters { filter "a" { type "cors"; }; }\nroutes { route "r" { builtin-handler "status"; filters "a"; filters "a"; }; }`)).toEqual([
      "t.kdl:3:10: route \"r\" lists filter \"a\" twice"
    ])
    expect(errs(R(`upstream "u"; static-files { root "/x"; };`))).toEqual([
      "t.kdl:2:10: route \"r\" has `upstream` and `static-files`; use exactly one",
      "t.kdl:2:31: route \"r\" references unknown upstream \"u\""
    ])
    expect(errs(R(`static-files { index "a/b"; };`))).toEqual([
      "t.kdl:2:22: `static-files` needs a `root` directory",
      "t.kdl:2:43: `index` must be a file name, got \"a/b\""
    ])
    expect(errs(R(`builtin-handler "status"; retry-policy { max-attempts 11; retryable-status-codes 600; };`))).toEqual([
      "t.kdl:2:76: `max-attempts` must be at most 10, got 11",
      "t.kdl:2:103: `retryable-status-codes` must be at most 599, got 600"
    ])
    expect(errs(R(`builtin-handler "status"; retry-policy { backoff 500; max-backoff 100; };`))).toEqual([
      "t.kdl:2:48: `max-backoff` (100 ms) must not be less than `backoff` (500 ms)"
    ])
    expect(errs(R(`builtin-handler "status"; policies { failure-mode "half"; };`))).toEqual([
      "t.kdl:2:72: `failure-mode` must be one of \"open\", \"closed\", got \"half\""
    ])
  })

  it("builtin-handler \"config\" needs an admin listener", () => {
    expect(errs(R(`builtin-handler "config";`))).toEqual([
      "t.kdl:2:38: builtin-handler \"config\" is served only on admin listeners; add `admin #true` to a listener (bound to a private address)"
    ])
    const c = ok(`listeners { listener "a" { address "127.0.0.1:1"; admin #true; }; }\nroutes { route "r" { builtin-handler "config"; }; }`)
    expect(c.listeners[0].admin).toBe(true)
  })
})

describe("filters", () => {
  it("every type decodes to its module's shape, defaults filled", () => {
    const f = ok(L + `agents { agent "w" { unix-socket "/w.sock"; }; }
filters {
  filter "h" { type "headers"; phase "response"; set { "X-A" "1"; }; remove "Server"; }
  filter "rl" { type "rate-limit"; max-rps 0.5; key "header:X-Key"; on-limit "delay"; }
  filter "c" { type "cors"; allowed-methods "get"; max-age 60; }
  filter "rd" { type "redirect"; status-code 308; scheme "https"; replace-prefix-match "/new/"; }
  filter "uw" { type "url-rewrite"; hostname "in"; replace-full-path "/p"; }
  filter "t" { type "timeout"; connect-timeout-secs 0.5; }
  filter "s" { type "security-headers"; hsts #null; frame-options "SAMEORIGIN"; }
  filter "a" { type "agent"; agent "w"; failure-mode "closed"; }
}`).filters
    const byId = Object.fromEntries(f.map((x) => [x.id, x]))
    expect(byId.h).toEqual({ id: "h", type: "headers", phase: "response", rename: [], set: [["X-A", "1"]], add: [], remove: ["Server"] })
    expect(byId.rl).toMatchObject({ maxRps: 0.5, key: "header:X-Key", onLimit: "delay", burst: 10, statusCode: 429 })
    expect(byId.c).toMatchObject({ allowedMethods: ["GET"], maxAgeSecs: 60, allowedOrigins: ["*"] })
    expect(byId.rd).toEqual({ id: "rd", type: "redirect", statusCode: 308, scheme: "https", hostname: null, port: null, path: { _tag: "ReplacePrefixMatch", prefix: "/new/" } })
    expect(byId.uw).toEqual({ id: "uw", type: "url-rewrite", hostname: "in", path: { _tag: "ReplaceFullPath", path: "/p" } })
    expect(byId.t).toEqual({ id: "t", type: "timeout", requestTimeoutSecs: null, upstreamTimeoutSecs: null, connectTimeoutSecs: 0.5 })
    expect(byId.s).toMatchObject({ hsts: null, frameOptions: "SAMEORIGIN", contentTypeOptions: true })
    expect(byId.a).toEqual({ id: "a", type: "agent", agent: "w", failureMode: "closed" })
  })

  it("errors: missing or unsupported type, keys of another type, module validation, dangling agent", () => {
    const F = (body: string) => L + `filters { filter "f" { ${body} }; }`
    expect(errs(F(`phase "request";`))).toEqual(["t.kdl:2:11: filter \"f\" needs a `type` (\"headers\", \"rate-limit\", \"cors\", \"redirect\", \"url-rewrite\", \"timeout\", \"security-headers\", \"agent\", \"compress\")"])
    expect(errs(F(`type "geo";`))).toEqual(["t.kdl:2:29: `type` \"geo\" is not supported yet"])
    expect(errs(F(`type "headers"; max-rps 5;`))).toEqual([
      "t.kdl:2:40: `max-rps` does not apply to a filter of type \"headers\"; it takes `phase`, `rename`, `set`, `add`, `remove`"
    ])
    expect(errs(F(`type "agent"; agent "w"; phase "request";`))).toEqual([
      "t.kdl:2:49: `phase` is not supported on an agent filter: the agent's `events` decide which phases it sees",
      "t.kdl:2:44: filter \"f\" references unknown agent \"w\""
    ].sort())
    expect(errs(F(`type "headers"; set { "Content-Length" "1"; };`))).toEqual([
      "t.kdl:2:11: filter \"f\": set/add: header Content-Length cannot be written by a filter"
    ])
    expect(errs(F(`type "redirect"; status-code 200; hostname "a b";`))).toEqual([
      "t.kdl:2:11: filter \"f\": redirect `status-code` must be 301, 302, 303, 307 or 308, got 200"
    ])
    expect(errs(F(`type "url-rewrite"; replace-full-path "/a"; replace-prefix-match "/b";`))).toEqual([
      "t.kdl:2:11: filter \"f\" has both `replace-full-path` and `replace-prefix-match`; use one"
    ])
    expect(errs(F(`type "rate-limit"; key "ip"; max-rps 0;`))).toEqual([
      "t.kdl:2:47: `key` must be \"client-ip\", \"path\", \"route\", \"client-ip-and-path\" or \"header:<name>\", got \"ip\"",
      "t.kdl:2:61: `max-rps` must be greater than 0, got 0"
    ])
    expect(errs(F(`type "agent";`))).toEqual(["t.kdl:2:11: filter \"f\" of type \"agent\" needs an `agent \"<id>\"`"])
  })
})

describe("agents", () => {
  it("decodes with defaults, hyphen events, type label and config as JSON", () => {
    const a = ok(L + `agents { agent "waf" type="waf" {
  unix-socket path="/run/waf.sock"
  events "request-headers" "log"
  timeout-ms "250ms"
  failure-mode "fail_closed"
  max-request-body-bytes "64KiB"
  circuit-breaker { timeout-seconds 5; }
  config { level 2; paths "/a" "/b"; nested { on #true; off #null; }; limits x=1 y="z"; __proto__ 1; }
}; }`).agents[0]
    expect(a).toMatchObject({
      id: "waf", type: "waf", socketPath: "/run/waf.sock", events: ["request_headers", "request_complete"], timeoutMs: 250,
      failureMode: "closed", maxRequestBodyBytes: 65536, maxResponseBodyBytes: 1048576, poolSize: 4,
      circuitBreaker: { failureThreshold: 5, successThreshold: 2, openTimeoutMs: 5000, halfOpenMaxRequests: 1 }
    })
    expect(JSON.stringify(a.config)).toBe(`{"level":2,"paths":["/a","/b"],"nested":{"on":true,"off":null},"limits":{"x":1,"y":"z"},"__proto__":1}`)
    expect(Object.getPrototypeOf(a.config)).toBe(Object.prototype)
  })

  it("errors: missing socket, bad events, bad config shapes, duplicate ids, bad type label", () => {
    const A = (body: string, props = "") => L + `agents { agent "a"${props} { ${body} }; }`
    expect(errs(A(`events "request_headers";`))).toEqual(["t.kdl:2:10: agent \"a\" needs a transport: `unix-socket \"/path/to/agent.sock\"` or `grpc \"http://host:port\"`"])
    expect(errs(A(`unix-socket "/s"; events "body";`))).toEqual([
      "t.kdl:2:47: `events` \"body\" is not an agent event; use request_headers, request_body, response_headers, response_body, request_complete (log), websocket_frame or guardrail"
    ])
    expect(errs(A(`unix-socket "/${"x".repeat(120)}";`))).toEqual(["t.kdl:2:34: `unix-socket` is too long for a Unix socket (at most 103 bytes)"])
    expect(errs(A(`unix-socket "/s"; config { a 1; a 2; b; c 1 { }; };`))).toEqual([
      "t.kdl:2:54: duplicate key `a` in agent `config`",
      "t.kdl:2:59: `b` needs a value (or a { ... } block)",
      "t.kdl:2:62: `c` has both values and a { ... } block; use one"
    ])
    expect(errs(A(`unix-socket "/s";`, ` type="w a f"`))).toEqual([
      "t.kdl:2:20: agent `type` must be a short label (letters, digits, \"-\", \"_\", \".\"), got \"w a f\""
    ])
    expect(errs(L + `agents { agent "a" { unix-socket "/s"; }; }\nagents { agent "a" { unix-socket "/t"; }; }`)).toEqual([
      "t.kdl:3:16: duplicate agent id \"a\" (first defined at t.kdl:2:16)"
    ])
    expect(errs(A(`unix-socket "/s"; reconnect-base-ms 500; reconnect-max-ms 100;`))).toEqual([
      "t.kdl:2:10: agent \"a\": `reconnect-max-ms` (100) must not be less than `reconnect-base-ms` (500)"
    ])
  })

  it("grpc: the short form, address= with TLS children, the block form; exactly one transport", () => {
    const G = (body: string) => ok(L + `agents { agent "a" { ${body} }; }`).agents[0]
    expect(G(`grpc "http://127.0.0.1:50051";`)).toMatchObject({ grpc: { address: "http://127.0.0.1:50051" } })
    expect(G(`grpc "http://127.0.0.1:50051";`).socketPath).toBeUndefined()
    expect(G(`grpc "http://127.0.0.1:50051";`).grpc!.tls).toBeUndefined()
    expect(G(`grpc { address "http://[::1]:50051"; };`).grpc).toEqual({ address: "http://[::1]:50051" })
    expect(G(`grpc address="https://waf.internal:443" { ca-cert "/ca.pem"; client-cert "/c.crt"; client-key "/c.key"; };`).grpc).toEqual({
      address: "https://waf.internal:443",
      tls: { insecure: false, caCert: "/ca.pem", clientCert: "/c.crt", clientKey: "/c.key" }
    })
    expect(G(`grpc "http://10.0.0.5:50051" { tls; };`).grpc).toEqual({ address: "http://10.0.0.5:50051", tls: { insecure: false } })
    expect(G(`grpc "https://h:1" { tls-insecure; };`).grpc).toEqual({ address: "https://h:1", tls: { insecure: true } })
    // https:// alone means TLS with the system roots, nothing to record
    expect(G(`grpc "https://h:1";`).grpc).toEqual({ address: "https://h:1" })
  })

  it("grpc errors: bad addresses, half an mTLS pair, two transports, what gRPC cannot carry", () => {
    const A = (body: string) => L + `agents { agent "a" { ${body} }; }`
    expect(errs(A(`grpc "127.0.0.1:50051";`))).toEqual([expect.stringMatching(/`grpc` address must (be a URL|start with http)/)])
    expect(errs(A(`grpc "http://h";`))).toEqual([expect.stringContaining("must name a host and a port")])
    expect(errs(A(`grpc "http://h:1/path";`))).toEqual([expect.stringContaining("must name a host and a port")])
    expect(errs(A(`grpc;`))).toEqual([expect.stringContaining("`grpc` needs an address")])
    expect(errs(A(`grpc "http://h:1" address="http://h:2";`))).toEqual([expect.stringContaining("has its address more than once")])
    expect(errs(A(`grpc "https://h:1" { client-cert "/c"; };`))).toEqual([expect.stringContaining("`client-cert` and `client-key` go together")])
    expect(errs(A(`grpc "https://h:1" { tls #false; };`))).toEqual([expect.stringContaining("`tls #false` contradicts")])
    expect(errs(A(`grpc "http://h:1" { bogus 1; };`))).toEqual([expect.stringContaining("unknown node `bogus`")])
    expect(errs(A(`unix-socket "/s"; grpc "http://h:1";`))).toEqual([expect.stringContaining("has both `unix-socket` and `grpc`")])
    expect(errs(A(`grpc "http://h:1"; events "request_headers" "websocket_frame";`))).toEqual([
      expect.stringContaining("a gRPC agent cannot receive `websocket_frame` events")
    ])
    expect(errs(A(`grpc "http://h:1"; events "guardrail";`))).toEqual([expect.stringContaining("cannot receive `guardrail` events")])
    expect(errs(A(`grpc "http://h:1"; max-request-body-bytes "20MiB";`))).toEqual([
      expect.stringContaining("`max-request-body-bytes` 20971520 is more than a gRPC agent can be sent in one message")
    ])
    // the same limits hold for a Unix-socket agent only as its own (16 MiB frames)
    expect(errs(A(`unix-socket "/s"; events "websocket_frame"; max-request-body-bytes "12MiB";`))).toEqual([])
  })

  it("agent filters: timeout-ms, failure-mode, inspect-body, max-body-bytes; not on other filter types", () => {
    const F = (body: string) => L + `agents { agent "a" { unix-socket "/s"; }; }\nfilters { filter "f" { type "agent"; agent "a"; ${body} }; }`
    expect(ok(F(`timeout-ms 150; failure-mode "open"; inspect-body #false; max-body-bytes "64KiB";`)).filters[0]).toEqual({
      id: "f", type: "agent", agent: "a", timeoutMs: 150, failureMode: "open", inspectBody: false, maxBodyBytes: 65536
    })
    expect(errs(F(`timeout-ms 0;`))).toEqual([expect.stringContaining("`timeout-ms` must be greater than 0")])
    expect(errs(L + `filters { filter "h" { type "headers"; timeout-ms 5; }; }`)).toEqual([
      expect.stringContaining("`timeout-ms` does not apply to a filter of type \"headers\"")
    ])
  })
})

describe("listeners, limits, observability", () => {
  it("decodes slow-client timeouts, trusted proxies, validation options, logs, metrics, tracing", () => {
    const c = ok(`listeners { listener "a" { address "127.0.0.1:1"; header-timeout-secs 5; body-idle-timeout-secs "1m"; write-timeout-secs 7; trusted-proxies "10.0.0.0/8" "::1"; }; }
limits { in-flight-queue-size 0; in-flight-queue-timeout-secs 1; underscores-in-headers "reject"; escaped-slashes "reject"; max-header-line-size "4KiB"; }
observability {
  logging { error-log { level "error"; file "/var/log/e.log"; }; audit-log { log-blocked #false; }; }
  metrics { enabled #true; address "0.0.0.0:9100"; path "/m"; }
  tracing { backend "otlp" { endpoint "http://c:4318"; }; sampling-rate 1; }
}`)
    const l = c.listeners[0]
    expect([l.headerTimeout, l.bodyIdleTimeout, l.writeTimeout]).toEqual([Duration.seconds(5), Duration.seconds(60), Duration.seconds(7)])
    expect(l.trustedProxies).toEqual(["10.0.0.0/8", "::1"])
    expect(c.limits).toMatchObject({ inFlightQueueSize: 0, inFlightQueueTimeout: Duration.seconds(1), underscoresInHeaders: "reject", escapedSlashes: "reject", maxHeaderLineSize: 4096 })
    expect(c.observability.logging.errorLog).toEqual({ enabled: true, file: "/var/log/e.log", level: "error", bufferSize: 8192 })
    expect(c.observability.logging.auditLog.logBlocked).toBe(false)
    expect(c.observability.metrics).toEqual({ enabled: true, address: { host: "0.0.0.0", port: 9100 }, path: "/m", maxSeriesPerMetric: 2000 })
    expect(c.observability.tracing).toEqual({
      endpoint: "http://c:4318", samplingRate: 1, serviceName: "sentinel", parentBased: true, maxQueueSize: 2048, maxExportBatchSize: 512, exportTimeoutMs: 10000
    })
  })

  it("errors: bad CIDR, bad enums, tracing without backend or with a bad endpoint, unsupported backend", () => {
    expect(errs(`listeners { listener "a" { address "127.0.0.1:1"; trusted-proxies "10.0.0.0/33"; }; }`)).toEqual([
      "t.kdl:1:67: `trusted-proxies` entry \"10.0.0.0/33\" is not an IP address or CIDR like \"10.0.0.0/8\""
    ])
    expect(errs(L + `limits { underscores-in-headers "keep"; }`)).toEqual([
      "t.kdl:2:33: `underscores-in-headers` must be one of \"drop\", \"reject\", \"allow\", got \"keep\""
    ])
    expect(errs(L + `observability { tracing { sampling-rate 2; }; }`)).toEqual([
      "t.kdl:2:17: `tracing` needs a `backend \"otlp\" { endpoint \"http://collector:4318\" }`",
      "t.kdl:2:41: `sampling-rate` must be at most 1, got 2"
    ])
    expect(errs(L + `observability { tracing { backend "jaeger" { endpoint "ftp://x"; }; }; }`)).toEqual([
      "t.kdl:2:35: tracing `backend` \"jaeger\" is not supported yet",
      "t.kdl:2:55: `endpoint` must be an http:// or https:// URL, got \"ftp://x\""
    ])
    expect(errs(L + `observability { metrics { high-cardinality #true; path "metrics"; }; logging { audit-log { log-waf-events #true; }; }; }`)).toEqual([
      "t.kdl:2:27: `high-cardinality` is not supported yet",
      "t.kdl:2:56: `path` must be a path starting with \"/\", got \"metrics\"",
      "t.kdl:2:92: `log-waf-events` is not supported yet"
    ])
  })
})
