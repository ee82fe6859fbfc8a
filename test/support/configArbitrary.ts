/**
 * fast-check arbitraries for valid `SentinelConfig` values (ids unique,
 * references resolve, every field in range), for round-trip and fuzz tests.
 */
import { Duration } from "effect"
import fc from "fast-check"
import {
  BuiltinHandler, formatHostPort, loadBalancingAlgorithms, type RouteConfig, type RouteMatch, type SentinelConfig,
  type TargetConfig, type UpstreamConfig
} from "../../src/config/Schema.js"

const text = fc.string({ unit: fc.oneof(fc.char(), fc.constantFrom("é", "☃", "\"", "\\", "\n", "\t", "$", "{", "}", ";", "/")), maxLength: 12 })
const id = fc.string({ unit: fc.oneof(fc.char(), fc.constantFrom("é", "\"", "-", "_")), minLength: 1, maxLength: 8 })
const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/)
const headerValue = text.filter((s) => !/[\r\n\0]/.test(s))
const path = text.map((s) => `/${s}`)
const millis = fc.integer({ min: 0, max: 3_600_000 }).map((n) => Duration.millis(n))
const count = (max = 1_000_000) => fc.integer({ min: 0, max })
const positive = (max = 1_000_000) => fc.integer({ min: 1, max })
const host = fc.oneof(fc.domain(), fc.ipV4(), fc.constantFrom("::1", "fe80::1", "localhost"))
const port = fc.integer({ min: 0, max: 65535 })

const target: fc.Arbitrary<TargetConfig> = fc.record({ host, port, weight: positive(100) })
  .map((t) => ({ address: formatHostPort(t.host, t.port), ...t }))

const pair = (second: fc.Arbitrary<string>) => fc.tuple(token, second).map(([a, b]) => [a, b] as const)
const headerOps = fc.record({
  rename: fc.array(pair(token), { maxLength: 2 }),
  set: fc.array(pair(headerValue), { maxLength: 2 }),
  add: fc.array(pair(headerValue), { maxLength: 2 }),
  remove: fc.array(token, { maxLength: 3 })
})

const routeMatch: fc.Arbitrary<RouteMatch> = fc.oneof(
  path.map((p) => ({ _tag: "Path" as const, path: p })),
  path.map((p) => ({ _tag: "PathPrefix" as const, prefix: p })),
  fc.constantFrom("^/api/", "\\.png$", "^/v[0-9]+/(a|b)").map((p) => ({ _tag: "PathRegex" as const, pattern: p })),
  host.map((h) => ({ _tag: "Host" as const, host: h })),
  fc.record({ name: token, value: fc.option(text, { nil: undefined }) }, { requiredKeys: ["name"] })
    .map((h) => ({ _tag: "Header" as const, ...h })),
  fc.array(token.map((m) => m.toUpperCase()), { minLength: 1, maxLength: 3 }).map((methods) => ({ _tag: "Method" as const, methods })),
  fc.record({ name: id, value: fc.option(text, { nil: undefined }) }, { requiredKeys: ["name"] })
    .map((q) => ({ _tag: "QueryParam" as const, ...q }))
)

const opt = <A>(a: fc.Arbitrary<A>) => fc.option(a, { nil: undefined })

/** Drops undefined keys so deep equality does not depend on their presence. */
const compact = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T

export const arbitraryConfig: fc.Arbitrary<SentinelConfig> = fc
  .record({
    upstreamIds: fc.uniqueArray(id, { maxLength: 3 }),
    routeIds: fc.uniqueArray(id, { maxLength: 4 }),
    listenerIds: fc.uniqueArray(id, { minLength: 1, maxLength: 3 })
  })
  .chain(({ listenerIds, routeIds, upstreamIds }) => {
    const upstreams: fc.Arbitrary<Array<UpstreamConfig>> = fc.tuple(...upstreamIds.map((uid) =>
      fc.record({
        targets: fc.array(target, { minLength: 1, maxLength: 3 }),
        loadBalancing: fc.constantFrom(...loadBalancingAlgorithms),
        timeouts: fc.record({ connect: millis, request: millis, read: millis, write: millis }),
        connectionPool: fc.record({ maxConnections: positive(), maxIdle: count(), idleTimeout: millis, maxLifetime: opt(millis) })
      }).map((u) => ({ id: uid, ...u, connectionPool: compact(u.connectionPool) }))
    ))
    const routes: fc.Arbitrary<Array<RouteConfig>> = fc.tuple(...routeIds.map((rid) =>
      fc.record({
        priority: fc.integer({ min: -1000, max: 100000 }),
        matches: fc.array(routeMatch, { maxLength: 4 }),
        to: upstreamIds.length > 0
          ? fc.oneof(fc.constantFrom(...upstreamIds).map((u) => ({ upstream: u })), fc.constantFrom(...BuiltinHandler.literals).map((b) => ({ builtinHandler: b })))
          : fc.constantFrom(...BuiltinHandler.literals).map((b) => ({ builtinHandler: b })),
        policies: fc.record({ requestHeaders: headerOps, responseHeaders: headerOps, timeout: opt(millis) })
      }).map(({ to, policies, ...r }) => ({ id: rid, ...r, ...to, policies: compact(policies) }) as RouteConfig)
    ))
    const listeners = fc.tuple(...listenerIds.map((lid) =>
      fc.record({
        address: fc.record({ host, port }),
        requestTimeout: millis,
        keepaliveTimeout: millis,
        keepaliveMaxRequests: opt(positive()),
        defaultRoute: routeIds.length > 0 ? opt(fc.constantFrom(...routeIds)) : fc.constant(undefined)
      }).map((l) => compact({ id: lid, protocol: "http" as const, ...l }))
    ))
    return fc.record({
      schemaVersion: fc.constant("1.0"),
      system: fc.record({
        workerThreads: count(64),
        maxConnections: positive(),
        gracefulShutdownTimeout: millis,
        traceIdFormat: fc.constantFrom("tinyflake" as const, "uuid" as const),
        autoReload: fc.boolean(),
        routeCacheSize: count(),
        pidFile: opt(text)
      }).map(compact),
      listeners,
      upstreams,
      routes,
      limits: fc.record({
        maxHeaderSize: positive(), maxHeaderCount: positive(), maxBodySize: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        maxUriLength: positive(), maxConnectionsPerClient: positive(), maxTotalConnections: positive(), maxInFlightRequests: positive()
      }),
      observability: fc.record({
        logging: fc.record({
          level: fc.constantFrom("trace" as const, "debug" as const, "info" as const, "warn" as const, "error" as const),
          format: fc.constantFrom("json" as const, "pretty" as const),
          accessLog: fc.record({
            enabled: fc.boolean(), file: opt(text), format: fc.constantFrom("json" as const, "combined" as const), bufferSize: positive()
          }).map(compact)
        })
      })
    })
  })
