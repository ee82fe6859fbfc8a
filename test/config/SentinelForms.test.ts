/**
 * Syntax Sentinel (Rust) accepts, written as its parser, docs and examples write it
 * (crates/config/src/kdl/*.rs, crates/config/docs/examples.md, config/examples/*.kdl), decoded
 * into this model: every accepted form is applied, and what this build lacks is refused with
 * "not supported yet", never "unknown node".
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { formatIssue } from "../../src/config/ConfigIssue.js"
import { decodeKdl } from "../../src/config/Kdl.js"
import { loadBalancingAlgorithms, loadBalancingAliases, loadBalancingNotSupportedYet } from "../../src/config/Schema.js"

const L = `listeners { listener "main" { address "127.0.0.1:8080"; }; }\n`
const errs = (text: string) => decodeKdl(text, { file: "t.kdl" }).errors.map(formatIssue)
const ok = (text: string) => {
  const r = decodeKdl(text, { file: "t.kdl", cores: 4 })
  expect(r.errors.map(formatIssue)).toEqual([])
  return r.config!
}
const upstream = (body: string) => ok(L + `upstreams {\n    upstream "b" {\n        ${body}\n    }\n}`).upstreams[0]
const route = (body: string, extra = "") => ok(L + `upstreams { upstream "api-backend" { target "127.0.0.1:3000"; }; }\n${extra}routes {\n    route "r" {\n        ${body}\n    }\n}`).routes[0]
const agent = (head: string, body: string) => ok(L + `agents {\n    ${head} {\n        unix-socket "/run/a.sock"\n        ${body}\n    }\n}`).agents[0]

/** `s` with each letter upper- or lower-cased by `bits`. */
const recase = (s: string, bits: ReadonlyArray<boolean>) =>
  [...s].map((c, i) => (bits[i % Math.max(1, bits.length)] ? c.toUpperCase() : c.toLowerCase())).join("")

describe("load-balancing names (parse_load_balancing)", () => {
  it("every alias of Sentinel's parser maps to its algorithm", () => {
    const cases: Array<[string, string]> = [
      ["roundrobin", "round_robin"], ["leastconnections", "least_connections"], ["weighted_round_robin", "weighted"],
      ["weighted-round-robin", "weighted"], ["iphash", "ip_hash"], ["consistenthash", "consistent_hash"],
      ["p2c", "power_of_two_choices"], ["peakewma", "peak_ewma"], ["ewma", "peak_ewma"],
      ["weighted_least_conn", "weighted_least_connections"], ["wlc", "weighted_least_connections"],
      ["sticky_session", "sticky"], ["stickysession", "sticky"]
    ]
    for (const [name, algo] of cases) {
      expect(upstream(`target "127.0.0.1:8081"\n        load-balancing "${name}"`).loadBalancing).toBe(algo)
    }
  })

  it("the hyphen spellings in Sentinel's own examples mean what they say (Sentinel runs round robin for them)", () => {
    // config/examples/load-balancer.kdl style
    expect(upstream(`target "127.0.0.1:8081"\n        load-balancing "least-connections"`).loadBalancing).toBe("least_connections")
    expect(upstream(`target "127.0.0.1:8081"\n        load-balancing "ip-hash"`).loadBalancing).toBe("ip_hash")
    expect(upstream(`target "127.0.0.1:8081"\n        load-balancing "Power-Of-Two-Choices"`).loadBalancing).toBe("power_of_two_choices")
    expect(upstream(`target "127.0.0.1:8081"\n        load-balancing "ROUND_ROBIN"`).loadBalancing).toBe("round_robin")
  })

  it("the sticky fallback takes the same names (its doc comment writes `fallback \"round-robin\"`)", () => {
    const u = upstream(`target "127.0.0.1:8081"
        load-balancing "sticky" {
            cookie-name "SERVERID"
            cookie-ttl 3600
            cookie-path "/"
            cookie-secure #true
            cookie-same-site "lax"
            fallback "round-robin"
        }`)
    expect(u.loadBalancing).toBe("sticky")
    expect(u.sticky?.fallback).toBe("round_robin")
    expect(upstream(`target "h:1"\n        load-balancing "StickySession" { fallback "LeastConnections"; }`).sticky?.fallback).toBe("least_connections")
    expect(errs(L + `upstreams { upstream "b" { target "h:1"; load-balancing "sticky" { fallback "sticky_session"; }; }; }`)).toEqual([
      "t.kdl:2:77: `fallback` cannot be \"sticky\""
    ])
  })

  it("an unknown name stays an error with a did-you-mean; Sentinel's algorithms we lack are not supported yet", () => {
    expect(errs(L + `upstreams { upstream "b" { target "h:1"; load-balancing "least-conections"; }; }`)).toEqual([
      expect.stringMatching(/^t\.kdl:2:57: `load-balancing` must be one of .*, got "least-conections"; did you mean `least_connections`\?$/)
    ])
    expect(errs(L + `upstreams { upstream "b" { target "h:1"; load-balancing "Locality-Aware"; }; }`)).toEqual([
      "t.kdl:2:57: `load-balancing` \"Locality-Aware\" is not supported yet"
    ])
    expect(errs(L + `upstreams { upstream "b" { target "h:1"; load-balancing "subsetting"; }; }`)).toEqual([
      "t.kdl:2:57: `load-balancing` \"subsetting\" is not supported yet"
    ])
  })

  it("property: any case and `-`/`_` spelling of a name or alias decodes to the same model as the canonical name", () => {
    const canonical = (name: string) => loadBalancingAliases[name] ?? name
    const names = [...loadBalancingAlgorithms, ...Object.keys(loadBalancingAliases)]
    const decode = (lb: string) => {
      const r = decodeKdl(L + `upstreams { upstream "b" { target "h:1"; target "h:2"; load-balancing ${JSON.stringify(lb)}; }; }`, { file: "t.kdl" })
      expect(r.errors.map(formatIssue)).toEqual([])
      return r.config!
    }
    fc.assert(fc.property(fc.constantFrom(...names), fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), fc.boolean(), (name, bits, hyphens) => {
      const spelt = recase(hyphens ? name.replace(/_/g, "-") : name, bits)
      expect(decode(spelt)).toEqual(decode(canonical(name)))
      // the sticky fallback reads the same table
      if (canonical(name) !== "sticky") {
        const f = (n: string) => ok(L + `upstreams { upstream "b" { target "h:1"; load-balancing "sticky" { fallback ${JSON.stringify(n)}; }; }; }`).upstreams[0].sticky
        expect(f(spelt)).toEqual(f(canonical(name)))
      }
    }), { numRuns: 150 })
  })

  it("property: every spelling of an algorithm we lack says not supported yet", () => {
    fc.assert(fc.property(fc.constantFrom(...loadBalancingNotSupportedYet), fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }), (name, bits) => {
      const e = errs(L + `upstreams { upstream "b" { target "h:1"; load-balancing ${JSON.stringify(recase(name, bits))}; }; }`)
      expect(e).toHaveLength(1)
      expect(e[0]).toMatch(/is not supported yet$/)
    }), { numRuns: 40 })
  })
})

describe("target forms (parse_upstream_targets)", () => {
  it("each form its doc comment lists gives the same target", () => {
    const forms = [
      `target "10.0.0.1:80" weight=2`,
      `target address="10.0.0.1:80" weight=2`,
      `target "10.0.0.1:80" { weight 2; }`,
      `target { address "10.0.0.1:80"; weight 2; }`,
      // the doc comment writes the weight on the address child
      `target { address "10.0.0.1:80" weight=2; }`,
      `targets {\n            target { address "10.0.0.1:80" weight=2; }\n        }`,
      `target address="10.0.0.1:80" { weight 2; }`
    ]
    const canonical = upstream(`target "10.0.0.1:80" weight=2`).targets
    expect(canonical).toEqual([{ address: "10.0.0.1:80", host: "10.0.0.1", port: 80, weight: 2 }])
    for (const f of forms) expect(upstream(f).targets).toEqual(canonical)
  })

  it("without a weight the default is 1; the upstream's own `address` (child or property) is one target", () => {
    const t = (a: string) => ({ address: a, host: a.split(":")[0], port: 80, weight: 1 })
    expect(upstream(`target address="10.0.0.1:80"`).targets).toEqual([t("10.0.0.1:80")])
    expect(upstream(`address "10.0.0.1:80"`).targets).toEqual([t("10.0.0.1:80")])
    const c = ok(L + `upstreams {\n    upstream "b" address="10.0.0.1:80"\n    upstream "c" address="10.0.0.2:80" { load-balancing "random"; }\n}`)
    expect(c.upstreams.map((u) => [u.id, u.targets, u.loadBalancing])).toEqual([
      ["b", [t("10.0.0.1:80")], "round_robin"],
      ["c", [t("10.0.0.2:80")], "random"]
    ])
  })

  it("an address or a weight written twice is an error, not a silent choice", () => {
    expect(errs(L + `upstreams { upstream "b" { target "10.0.0.1:80" address="10.0.0.2:80"; }; }`)).toEqual([
      "t.kdl:2:28: `target` has more than one address (argument, `address=` property, `address` child); write it once"
    ])
    expect(errs(L + `upstreams { upstream "b" { target "10.0.0.1:80" weight=2 { weight 3; }; }; }`)).toEqual([
      "t.kdl:2:28: `target` has more than one `weight`; write it once"
    ])
    expect(errs(L + `upstreams { upstream "b" { target weight=2; }; }`)).toEqual([
      "t.kdl:2:28: `target` needs an address: `target \"host:port\"`"
    ])
    expect(errs(L + `upstreams { upstream "b" { target address="nope" weight=0; }; }`)).toEqual([
      "t.kdl:2:35: target address must be \"host:port\" (IPv6 as \"[::1]:80\"), got \"nope\"",
      "t.kdl:2:50: `weight` must be at least 1, got 0"
    ])
  })
})

describe("routes (parse_routes)", () => {
  it("header and query-param matches with properties (crates/config/docs/examples.md)", () => {
    const r = route(`matches {
            path-prefix "/api"
            header name="X-API-Key"
            header name="X-Provider" value="openai"
            query-param name="debug" value="1"
            query-param name="trace"
            header "X-Api" value="v1"
        }
        upstream "api-backend"`)
    expect(r.matches).toEqual([
      { _tag: "PathPrefix", prefix: "/api" },
      { _tag: "Header", name: "X-API-Key" },
      { _tag: "Header", name: "X-Provider", value: "openai" },
      { _tag: "QueryParam", name: "debug", value: "1" },
      { _tag: "QueryParam", name: "trace" },
      { _tag: "Header", name: "X-Api", value: "v1" }
    ])
    // the same as the argument forms
    expect(route(`matches { header "X-Api" "v1"; query-param "debug" "1"; }\n        upstream "api-backend"`).matches)
      .toEqual(route(`matches { header name="X-Api" value="v1"; query-param name="debug" value="1"; }\n        upstream "api-backend"`).matches)
    expect(errs(L + `routes { route "r" { builtin-handler "status"; matches { header name="X" "v"; header value="v"; header nme="X"; }; }; }`)).toEqual([
      "t.kdl:2:74: `header` takes no arguments",
      "t.kdl:2:79: `header` needs a name: `header \"X-Name\"` or `header name=\"X-Name\"`",
      "t.kdl:2:97: `header` needs a name: `header \"X-Name\"` or `header name=\"X-Name\"`",
      "t.kdl:2:104: unknown property `nme` on `header`; did you mean `name`?"
    ])
  })

  it("service-type agrees with what the route does, or is an error", () => {
    expect(route(`service-type "api"\n        upstream "api-backend"`).upstream).toBe("api-backend")
    expect(route(`service-type "web"\n        upstream "api-backend"`).upstream).toBe("api-backend")
    expect(route(`service-type "builtin"\n        builtin-handler "not-found"`).builtinHandler).toBe("not-found")
    expect(route(`service-type "Static"\n        static-files { root "/var/www/static"; }`).staticFiles?.root).toBe("/var/www/static")
    // the model has no service type: it is a check only
    expect(Object.keys(route(`service-type "api"\n        upstream "api-backend"`))).not.toContain("serviceType")
    expect(errs(L + `routes { route "r" { service-type "static"; builtin-handler "status"; }; }`)).toEqual([
      "t.kdl:2:22: route \"r\": `service-type \"static\"` contradicts the route's `builtin-handler`: a static route has `static-files { root ... }` (for this route write \"builtin\", or leave `service-type` out: it is inferred)"
    ])
    expect(errs(L + `routes { route "r" { service-type "builtin"; static-files { root "/srv"; }; }; }`)).toEqual([
      "t.kdl:2:22: route \"r\": `service-type \"builtin\"` contradicts the route's `static-files`: a builtin route has a `builtin-handler` (for this route write \"static\", or leave `service-type` out: it is inferred)"
    ])
    expect(errs(L + `routes { route "r" { service-type "inference"; builtin-handler "status"; }; }`)).toEqual([
      "t.kdl:2:35: `service-type` \"inference\" is not supported yet (no inference routing in this build)"
    ])
    expect(errs(L + `routes { route "r" { service-type "statc"; builtin-handler "status"; }; }`)).toEqual([
      "t.kdl:2:35: `service-type` must be one of \"web\", \"api\", \"static\", \"builtin\", got \"statc\"; did you mean `static`?"
    ])
  })

  it("static-files fallback relative to the root, as Sentinel documents it, means the file under root", () => {
    const sf = (f: string) => route(`static-files {\n            root "/var/www/app"\n            index "index.html"\n            fallback ${JSON.stringify(f)}\n        }`).staticFiles?.fallback
    expect(sf("index.html")).toBe("/index.html")
    expect(sf("/index.html")).toBe("/index.html")
    expect(sf("app/shell.html")).toBe("/app/shell.html")
    expect(sf("./app//shell.html")).toBe("/app/shell.html")
    // the handler percent-decodes the path once: the name keeps naming that file
    expect(sf("my shell%.html")).toBe("/my%20shell%25.html")
    expect(errs(L + `routes { route "r" { static-files { root "/srv"; fallback "../etc/passwd"; }; }; }`)).toEqual([
      "t.kdl:2:59: `fallback` must name a file under `root` (no \"..\" segments), got \"../etc/passwd\""
    ])
    expect(errs(L + `routes { route "r" { static-files { root "/srv"; fallback "."; }; }; }`)).toEqual([
      "t.kdl:2:59: `fallback` must name a file under `root`, got \".\""
    ])
  })

  it("priority names in any case; builtin-handler not_found", () => {
    expect(route(`priority "HIGH"\n        upstream "api-backend"`).priority).toBe(100)
    expect(route(`priority "Critical"\n        upstream "api-backend"`).priority).toBe(1000)
    expect(route(`builtin-handler "not_found"`).builtinHandler).toBe("not-found")
    expect(route(`builtin-handler "NOT-FOUND"`).builtinHandler).toBe("not-found")
    expect(route(`builtin-handler "cache_purge"`).builtinHandler).toBe("cache-purge")
    expect(errs(L + `routes { route "r" { builtin-handler "not-fund"; }; }`)).toEqual([
      expect.stringMatching(/^t\.kdl:2:38: `builtin-handler` must be one of .*, got "not-fund"; did you mean `not-found`\?$/)
    ])
    expect(errs(L + `routes { route "r" { priority "urgent"; builtin-handler "status"; }; }`)).toEqual([
      expect.stringMatching(/^t\.kdl:2:31: `priority` must be "low", "normal", "high", "critical" or an integer, got "urgent"/)
    ])
  })
})

describe("filters (parse_rate_limit_backend)", () => {
  it("backend \"local\" is the default and accepted (config/examples/rate-limiting-per-route.kdl)", () => {
    const c = ok(L + `filters {
    filter "auth-rate-limit" {
        type "rate-limit"
        max-rps 10
        burst 15
        key "client-ip"
        on-limit "reject"
        backend "local"
    }
    filter "same-without-backend" {
        type "rate-limit"
        max-rps 10
        burst 15
        key "client-ip"
        on-limit "reject"
    }
}`)
    const [a, b] = c.filters
    expect({ ...a, id: "x" }).toEqual({ ...b, id: "x" })
    expect(a).toMatchObject({ type: "rate-limit", maxRps: 10, burst: 15, key: "client-ip", onLimit: "reject" })
  })

  it("redis (config/examples/distributed-rate-limit.kdl) is accepted with Sentinel's keys; memcached says not supported yet", () => {
    const c = ok(L + `filters {
    filter "redis-rate-limit" {
        type "rate-limit"
        max-rps 100
        burst 200
        backend "redis"
        redis-url "redis://redis-cluster.internal:6379"
        redis-prefix "zentinel:ratelimit:"
        redis-pool-size 10
        redis-timeout-ms 50
        redis-fallback-local #true
    }
    filter "defaults" {
        type "rate-limit"
        backend "redis"
    }
    filter "open" {
        type "rate-limit"
        backend "REDIS"
        redis-fallback #false
    }
}`)
    expect(c.filters.map((f) => (f as { backend: unknown }).backend)).toEqual([
      { type: "redis", url: "redis://redis-cluster.internal:6379", prefix: "zentinel:ratelimit:", poolSize: 10, timeoutMs: 50, fallback: "local", failureThreshold: 3, circuitOpenMs: 1000 },
      { type: "redis", url: "redis://127.0.0.1:6379", prefix: "sentinel:ratelimit:", poolSize: 10, timeoutMs: 50, fallback: "local", failureThreshold: 3, circuitOpenMs: 1000 },
      { type: "redis", url: "redis://127.0.0.1:6379", prefix: "sentinel:ratelimit:", poolSize: 10, timeoutMs: 50, fallback: "open", failureThreshold: 3, circuitOpenMs: 1000 }
    ])
    const e = errs(L + `filters {
    filter "mc" {
        type "rate-limit"
        backend "memcached"
        memcached-url "memcache://127.0.0.1:11211"
        memcached-ttl 2
        memcached-fallback-local #true
    }
}`)
    expect(e).toEqual([
      "t.kdl:5:17: `backend` \"memcached\" is not supported yet (use \"redis\" for counters a fleet shares, or \"local\")",
      "t.kdl:6:9: `memcached-url` is not supported yet",
      "t.kdl:7:9: `memcached-ttl` is not supported yet",
      "t.kdl:8:9: `memcached-fallback-local` is not supported yet"
    ])
    expect(errs(L + `filters { filter "f" { type "headers"; backend "local"; }; }`)).toEqual([
      expect.stringMatching(/^t\.kdl:2:40: `backend` does not apply to a filter of type "headers"/)
    ])
  })

  it("redis keys: checked values, only with backend \"redis\"", () => {
    const f = (body: string) => errs(L + `filters { filter "f" { type "rate-limit"; ${body}; }; }`)
    expect(f(`redis-url "redis://h:6379"`)).toEqual([
      expect.stringMatching(/`redis-url` applies only with `backend "redis"` \(filter "f" has no `backend`, so it is local\)/)
    ])
    expect(f(`backend "local"; redis-timeout-ms 10`)).toEqual([expect.stringMatching(/`redis-timeout-ms` applies only with `backend "redis"` \(filter "f" is local\)/)])
    expect(f(`backend "redis"; redis-url "http://h:6379"`)).toEqual([expect.stringMatching(/`redis-url` must be a URL like "redis:\/\/host:6379"/)])
    expect(f(`backend "redis"; redis-url "redis://h:6379/x"`)).toEqual([expect.stringMatching(/the path is the database number/)])
    expect(f(`backend "redis"; redis-fallback "cloesd"`)).toEqual([expect.stringMatching(/got "cloesd"; did you mean `closed`\?/)])
    expect(f(`backend "redis"; redis-pool-size 0`)).toEqual([expect.stringMatching(/`redis-pool-size` must be at least 1/)])
    expect(f(`backend "redis"; redis-timeout-ms 0`)).toEqual([expect.stringMatching(/`redis-timeout-ms` must be greater than 0/)])
    expect(f(`backend "redis"; redis-fallback #true; redis-fallback-local #false`)).toEqual([expect.stringMatching(/duplicate `redis-fallback-local` \(already set as `redis-fallback`/)])
    expect(f(`backend "reddis"`)).toEqual([expect.stringMatching(/`backend` must be "local" or "redis", got "reddis"; did you mean `redis`\?/)])
    const ok1 = ok(L + `filters { filter "f" { type "rate-limit"; backend "redis"; redis-fallback "closed"; redis-timeout-ms "20ms"; redis-circuit-open-ms "2s"; redis-failure-threshold 5; }; }`)
    expect(ok1.filters[0]).toMatchObject({ backend: { fallback: "closed", timeoutMs: 20, circuitOpenMs: 2000, failureThreshold: 5 } })
  })
})

describe("rate-limits (parse_rate_limits_config)", () => {
  it("default-rps, default-burst, key and global { max-rps burst key } (Sentinel's doc comment)", () => {
    const c = ok(L + `rate-limits {
    default-rps 100
    default-burst 20
    key "client-ip"
    global {
        max-rps 10000
        burst 1000
        key "header:X-Api-Key"
    }
}`)
    expect(c.rateLimits).toEqual({ defaultRps: 100, defaultBurst: 20, key: "client-ip", global: { maxRps: 10000, burst: 1000, key: "header:X-Api-Key" } })
    expect(ok(L + `rate-limits {}`).rateLimits).toEqual({ key: "client-ip" })
    expect(ok(L).rateLimits).toEqual({ key: "client-ip" })
    expect(ok(L + `rate-limits { global { max-rps 5; }; }`).rateLimits.global).toEqual({ maxRps: 5, burst: 10, key: "client-ip" })
  })

  it("global needs max-rps; default-burst needs default-rps; unknown keys are errors", () => {
    expect(errs(L + `rate-limits { global { burst 5; }; }`)).toEqual([expect.stringMatching(/`global` needs `max-rps`/)])
    expect(errs(L + `rate-limits { default-burst 5; }`)).toEqual([expect.stringMatching(/`default-burst` needs `default-rps`/)])
    expect(errs(L + `rate-limits { default-rsp 5; }`)).toEqual([expect.stringMatching(/unknown node `default-rsp` in `rate-limits`; did you mean `default-rps`\?/)])
    expect(errs(L + `rate-limits { key "ip-address"; }`)).toEqual([expect.stringMatching(/`key` must be "client-ip"/)])
  })
})

describe("agents (parse_single_agent)", () => {
  it("type as a property or as a child node (config/examples/api-gateway.kdl writes the child)", () => {
    expect(agent(`agent "auth" type="auth"`, "").type).toBe("auth")
    expect(agent(`agent "auth"`, `type "auth"`).type).toBe("auth")
    expect(agent(`agent "auth"`, `type "auth"`)).toEqual(agent(`agent "auth" type="auth"`, ""))
    expect(errs(L + `agents { agent "a" type="waf" { type "auth"; unix-socket "/a.sock"; }; }`)).toEqual([
      "t.kdl:2:33: agent \"a\" has `type` both as a property and as a child; write it once"
    ])
  })

  it("protocol-version 2 (Sentinel's \"v2\" too) is accepted; other versions are refused", () => {
    const base = agent(`agent "a"`, "")
    expect(agent(`agent "a"`, `protocol-version 2`)).toEqual(base)
    expect(agent(`agent "a"`, `protocol-version "v2"`)).toEqual(base)
    expect(errs(L + `agents { agent "a" { unix-socket "/a.sock"; protocol-version 1; }; }`)).toEqual([
      "t.kdl:2:62: `protocol-version` 1 is not supported: this proxy speaks agent protocol v2 only (write `protocol-version 2` or leave it out)"
    ])
    expect(errs(L + `agents { agent "a" { unix-socket "/a.sock"; protocol-version "v1"; }; }`)).toEqual([
      "t.kdl:2:62: `protocol-version` \"v1\" is not supported: this proxy speaks agent protocol v2 only (write `protocol-version 2` or leave it out)"
    ])
  })

  it("request-body-mode / response-body-mode \"buffer\" (default) and \"stream\" with chunk-timeout-ms; hybrid is not supported yet", () => {
    const base = agent(`agent "a"`, `events "request_body"`)
    expect(agent(`agent "a"`, `events "request_body"\n        request-body-mode "buffer"\n        response-body-mode "buffer"`)).toEqual(base)
    expect(agent(`agent "a"`, `events "request_body"\n        request-body-mode "stream"\n        chunk-timeout-ms 250`)).toEqual({
      ...base, requestBodyMode: "stream", chunkTimeoutMs: 250
    })
    expect(agent(`agent "a"`, `events "request_body"\n        response-body-mode "stream"`)).toEqual({ ...base, responseBodyMode: "stream" })
    expect(errs(L + `agents { agent "a" { unix-socket "/a.sock"; request-body-mode "hybrid"; response-body-mode "hybrid:4096"; }; }`)).toEqual([
      "t.kdl:2:63: `request-body-mode` \"hybrid\" is not supported yet (use \"buffer\" or \"stream\")",
      "t.kdl:2:92: `response-body-mode` \"hybrid:4096\" is not supported yet (use \"buffer\" or \"stream\")"
    ])
  })
})

describe("system (parse_server_config)", () => {
  it("`workers` (config/examples/api-schema-validation.kdl) is `worker-threads`", () => {
    expect(ok(L + `system {\n    workers 4\n    daemon #false\n}`).system.workerThreads).toBe(4)
    expect(ok(L + `system {\n    workers 4\n}`).system).toEqual(ok(L + `system {\n    worker-threads 4\n}`).system)
    expect(errs(L + `system { workers 2; worker-threads 3; }`)).toEqual([
      "t.kdl:2:21: duplicate `worker-threads` (already set as `workers` at 2:10)"
    ])
  })

  it("user, group, working-directory decode into the model; daemon #false is accepted, #true refused", () => {
    const s = ok(L + `system {\n    user "sentinel"\n    group "sentinel"\n    working-directory "/var/lib/sentinel"\n    daemon #false\n}`).system
    expect([s.user, s.group, s.workingDirectory]).toEqual(["sentinel", "sentinel", "/var/lib/sentinel"])
    expect(ok(L + `system { user 1000; group 1000; }`).system).toMatchObject({ user: "1000", group: "1000" })
    const none = ok(L).system
    expect([none.user, none.group, none.workingDirectory]).toEqual([undefined, undefined, undefined])
    expect(Object.keys(ok(L + `system { daemon #false; }`).system)).not.toContain("daemon")
    expect(errs(L + `system { daemon #true; }`)).toEqual([
      "t.kdl:2:17: `daemon` #true is not supported: Sentinel for Node.js stays in the foreground; run it under systemd (Type=simple), a container or another supervisor, and remove `daemon` or write `daemon #false`"
    ])
    expect(errs(L + `system { user "bad user"; group ""; working-directory ""; }`)).toEqual([
      "t.kdl:2:15: `user` must be a user name or a numeric id, got \"bad user\"",
      "t.kdl:2:33: `group` must not be empty",
      "t.kdl:2:55: `working-directory` must not be empty"
    ])
  })
})
