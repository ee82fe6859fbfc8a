import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import type * as Contract from "./ConfigModelContract.js"
import * as S from "../../src/config/Schema.js"

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
const assertType = <T extends true>(_: T) => undefined

describe("Schema", () => {
  it("Schema.Type matches the brief's config-model contract exactly", () => {
    // compile-time: these lines fail `tsc` if the model drifts from the contract
    assertType<Equals<S.SentinelConfig, Contract.SentinelConfig>>(true)
    assertType<Equals<S.ListenerConfig, Contract.ListenerConfig>>(true)
    assertType<Equals<S.ListenerTlsConfig, Contract.ListenerTlsConfig>>(true)
    assertType<Equals<S.SniCertificateConfig, Contract.SniCertificateConfig>>(true)
    assertType<Equals<S.UpstreamConfig, Contract.UpstreamConfig>>(true)
    assertType<Equals<S.TargetConfig, Contract.TargetConfig>>(true)
    assertType<Equals<S.RouteConfig, Contract.RouteConfig>>(true)
    assertType<Equals<S.RouteMatch, Contract.RouteMatch>>(true)
    assertType<Equals<S.HeaderOps, Contract.HeaderOps>>(true)
    assertType<Equals<S.SystemConfig, Contract.SystemConfig>>(true)
    assertType<Equals<S.LimitsConfig, Contract.LimitsConfig>>(true)
    assertType<Equals<S.ObservabilityConfig, Contract.ObservabilityConfig>>(true)
    assertType<Equals<S.AccessLogConfig, Contract.AccessLogConfig>>(true)
    assertType<Equals<S.BuiltinHandler, Contract.BuiltinHandler>>(true)
    expect(true).toBe(true)
  })
})

describe("makeConfig / decodeConfig", () => {
  const base = {
    listeners: [{ id: "l", address: { host: "127.0.0.1", port: 0 } }],
    upstreams: [{ id: "u", targets: [{ address: "127.0.0.1:1234" }] }],
    routes: [{ id: "r", matches: [{ _tag: "PathPrefix" as const, prefix: "/" }], upstream: "u" }]
  }

  it("fills every default from a partial value (the brief's example)", () => {
    const c = S.makeConfig(base)
    expect(c.upstreams[0].targets[0]).toEqual({ address: "127.0.0.1:1234", host: "127.0.0.1", port: 1234, weight: 1 })
    expect(c.upstreams[0].timeouts.connect).toEqual(Duration.seconds(10))
    expect(c.upstreams[0].connectionPool).toEqual({
      maxConnections: 100, maxIdle: 20, idleTimeout: Duration.seconds(60),
      maxPendingRequests: 1000, pendingTimeout: Duration.seconds(5), maxClientShare: 0.5
    })
    expect(c.routes[0].priority).toBe(50)
    expect(c.routes[0].policies.requestHeaders).toEqual({ rename: [], set: [], add: [], remove: [] })
    expect(c.listeners[0].protocol).toBe("http")
    expect(c.system.workerThreads).toBe(1)
    expect(c.limits.maxBodySize).toBe(10 * 1024 * 1024)
    expect(c.observability.logging.accessLog.enabled).toBe(true)
  })

  it("accepts a listener address string and upper-cases methods", () => {
    const c = S.makeConfig({
      ...base,
      listeners: [{ id: "l", address: "[::1]:8080" }],
      routes: [{ id: "r", matches: [{ _tag: "Method", methods: ["get"] }], builtinHandler: "status" }]
    })
    expect(c.listeners[0].address).toEqual({ host: "::1", port: 8080 })
    expect(c.routes[0].matches[0]).toEqual({ _tag: "Method", methods: ["GET"] })
  })

  it("rejects dangling references, duplicate ids, both targets, bad regex and unknown keys", () => {
    const bad = (input: unknown) => Either.isLeft(S.decodeConfig(input))
    expect(bad({ ...base, routes: [{ id: "r", upstream: "nope" }] })).toBe(true)
    expect(bad({ ...base, upstreams: [...base.upstreams, ...base.upstreams] })).toBe(true)
    expect(bad({ ...base, routes: [{ id: "r", upstream: "u", builtinHandler: "status" }] })).toBe(true)
    expect(bad({ ...base, routes: [{ id: "r", upstream: "u", matches: [{ _tag: "PathRegex", pattern: "(" }] }] })).toBe(true)
    expect(bad({ ...base, listeners: [{ id: "l", address: { host: "h", port: 1 }, defaultRoute: "zz" }] })).toBe(true)
    expect(bad({ ...base, listeners: [] })).toBe(true)
    expect(bad({ ...base, upstreams: [{ id: "u", targets: [{ address: "nohost" }] }] })).toBe(true)
    expect(bad({ ...base, limts: {} })).toBe(true)
    expect(() => S.makeConfig({ ...base, routes: [{ id: "r", upstream: "nope" }] })).toThrow(/unknown upstream "nope"/)
  })

  it("checks filter, agent and admin references; a route needs exactly one of upstream, builtin, static files", () => {
    const bad = (input: unknown) => Either.isLeft(S.decodeConfig(input))
    const agents = [{ id: "waf", socketPath: "/run/waf.sock" }]
    const filters = [{ id: "w", type: "agent" as const, agent: "waf" }]
    expect(bad({ ...base, agents, filters, routes: [{ id: "r", upstream: "u", filters: ["w"] }] })).toBe(false)
    expect(bad({ ...base, agents, filters, routes: [{ id: "r", upstream: "u", filters: ["nope"] }] })).toBe(true)
    expect(bad({ ...base, agents, filters, routes: [{ id: "r", upstream: "u", filters: ["w", "w"] }] })).toBe(true)
    expect(bad({ ...base, filters })).toBe(true)
    expect(bad({ ...base, routes: [{ id: "r", builtinHandler: "config" }] })).toBe(true)
    expect(bad({ ...base, listeners: [{ id: "l", address: "127.0.0.1:0", admin: true }], routes: [{ id: "r", builtinHandler: "config" }] })).toBe(false)
    expect(bad({ ...base, routes: [{ id: "r", upstream: "u", staticFiles: { root: "/srv" } }] })).toBe(true)
    expect(bad({ ...base, upstreams: [{ id: "u", targets: [{ address: "h:1" }], loadBalancing: "adaptive" }] })).toBe(true)
    expect(bad({ ...base, upstreams: [{ id: "u", targets: [{ address: "h:1" }], tls: { clientCert: "/c" } }] })).toBe(true)
  })

  it("encodeConfig gives back an input that decodes to the same config", () => {
    const c = S.makeConfig(base)
    expect(S.makeConfig(S.encodeConfig(c))).toEqual(c)
  })
})
