/**
 * fast-check arbitraries for valid `SentinelConfig` values (ids unique,
 * references resolve, every field in range), for round-trip and fuzz tests.
 */
import * as Duration from "effect/Duration"
import fc from "fast-check"
import {
  type AgentConfig, agentEvents, BuiltinHandler, type FilterConfig, formatHostPort, type HashKey, loadBalancingAlgorithms,
  type PathModifier, type RouteConfig, type RouteMatch, type SentinelConfig, type TargetConfig, type UpstreamConfig
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
const nullable = <A>(a: fc.Arbitrary<A>) => fc.option(a, { nil: null })
const ms = (max = 3_600_000) => fc.integer({ min: 1, max })
const ratio = fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000)
const status = fc.integer({ min: 100, max: 599 })
const urlPath = fc.stringMatching(/^\/[a-z0-9/._~-]{0,10}$/)
const failureMode = fc.constantFrom("open" as const, "closed" as const)

const circuitBreaker = fc.record({
  failureThreshold: positive(100), successThreshold: positive(100), openTimeoutMs: ms(), halfOpenMaxRequests: positive(10),
  probeTimeoutMs: opt(ms())
}).map((c) => compact(c))

const hashKey: fc.Arbitrary<HashKey> = fc.oneof(
  fc.constant({ source: "client-ip" as const }),
  fc.constant({ source: "path" as const }),
  token.map((name) => ({ source: "header" as const, name })),
  token.map((name) => ({ source: "cookie" as const, name }))
)

const defaultSticky = {
  cookieName: "SERVERID", cookieTtlSecs: 3600, cookiePath: "/", cookieSecure: true, cookieSameSite: "lax" as const,
  fallback: "round_robin" as const
}

/** Balancing options only where the algorithm reads them (the rest keep their defaults). */
const balancing = fc.constantFrom(...loadBalancingAlgorithms).chain((algo) =>
  fc.record({
    hashKey: algo === "consistent_hash" || algo === "maglev" ? hashKey : fc.constant({ source: "client-ip" as const }),
    virtualNodes: algo === "consistent_hash" ? positive(10_000) : fc.constant(160),
    maglevTableSize: algo === "maglev" ? positive(1_048_576) : fc.constant(65537),
    sticky: algo === "sticky"
      ? fc.record({
        cookieName: token, cookieTtlSecs: count(1_000_000), cookiePath: urlPath, cookieSecure: fc.boolean(),
        cookieSameSite: fc.constantFrom("strict" as const, "lax" as const, "none" as const),
        fallback: fc.constantFrom(...loadBalancingAlgorithms.filter((a) => a !== "sticky"))
      })
      : fc.constant(defaultSticky)
  }).map((o) => ({ loadBalancing: algo, ...o }))
)

const healthCheck = fc.record({
  type: fc.oneof(
    fc.constant({ kind: "tcp" as const }),
    fc.record({ kind: fc.constant("http" as const), path: urlPath, expectedStatus: fc.array(status, { minLength: 1, maxLength: 3 }), host: opt(fc.domain()) })
      .map((t) => compact(t))
  ),
  intervalMs: ms(), timeoutMs: ms(), healthyThreshold: positive(100), unhealthyThreshold: positive(100)
})

const upstreamTls = fc.record({
  sni: opt(fc.domain()), caCert: opt(path), mtls: fc.boolean(), insecureSkipVerify: fc.boolean()
}).map(({ mtls, ...t }) => compact({ ...t, clientCert: mtls ? "/etc/c.pem" : undefined, clientKey: mtls ? "/etc/k.pem" : undefined }))

const httpVersion = fc.tuple(fc.constantFrom(1 as const, 2 as const), fc.constantFrom(1 as const, 2 as const)).chain(([a, b]) =>
  fc.record({
    minVersion: fc.constant(Math.min(a, b) as 1 | 2), maxVersion: fc.constant(Math.max(a, b) as 1 | 2),
    h2PingInterval: millis, maxH2Streams: positive(1000)
  })
)

const retryPolicy = fc.record({
  maxAttempts: positive(10), retryableStatusCodes: fc.array(status, { maxLength: 3 }), backoffMs: count(10_000),
  extra: count(10_000), perAttemptTimeoutMs: opt(ms()), retryNonIdempotent: fc.boolean()
}).map(({ extra, ...r }) => compact({ ...r, maxBackoffMs: r.backoffMs + extra }))

const staticFiles = fc.record({
  root: path, index: fc.stringMatching(/^[a-z0-9._-]{1,10}$/).filter((s) => s !== "." && s !== ".."),
  directoryListing: fc.boolean(), cacheControl: headerValue, compress: fc.boolean(), compressMinSize: count(),
  fallback: nullable(urlPath), allowDotfiles: fc.boolean()
})

const pathModifier: fc.Arbitrary<PathModifier | null> = nullable(fc.oneof(
  urlPath.map((p) => ({ _tag: "ReplaceFullPath" as const, path: p })),
  urlPath.map((p) => ({ _tag: "ReplacePrefixMatch" as const, prefix: p }))
))
const printable = fc.stringMatching(/^[ -~]{0,16}$/)
const secsNum = fc.integer({ min: 1, max: 100_000 }).map((n) => n / 100)

const rlKey = fc.oneof(
  fc.constantFrom("client-ip" as const, "path" as const, "route" as const, "client-ip-and-path" as const),
  token.map((t) => `header:${t}` as const)
)

const filterBody = (agentIds: ReadonlyArray<string>): fc.Arbitrary<Omit<FilterConfig, "id">> => {
  const kinds: Array<fc.Arbitrary<Omit<FilterConfig, "id">>> = [
    fc.record({
      type: fc.constant("headers" as const), phase: fc.constantFrom("request" as const, "response" as const, "both" as const),
      rename: fc.array(pair(token), { maxLength: 2 }), set: fc.array(pair(printable), { maxLength: 2 }),
      add: fc.array(pair(printable), { maxLength: 2 }), remove: fc.array(token, { maxLength: 2 })
    }).filter((h) => ![...h.rename.flat(), ...h.set.map((p) => p[0]), ...h.add.map((p) => p[0])].some((n) =>
      ["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "proxy-connection"].includes(n.toLowerCase()))),
    fc.record({
      type: fc.constant("rate-limit" as const), maxRps: fc.integer({ min: 1, max: 1_000_000 }).map((n) => n / 10), burst: positive(),
      key: fc.oneof(fc.constantFrom("client-ip" as const, "path" as const, "route" as const, "client-ip-and-path" as const), token.map((t) => `header:${t}` as const)),
      onLimit: fc.constantFrom("reject" as const, "delay" as const, "log-only" as const), statusCode: status, message: text,
      maxDelayMs: count(100_000), maxKeys: positive(),
      backend: fc.oneof(
        fc.constant({ type: "local" as const }),
        fc.record({
          type: fc.constant("redis" as const),
          url: fc.constantFrom("redis://127.0.0.1:6379", "rediss://user:pw@redis.internal:6380/2", "redis://[::1]:7000"),
          prefix: printable, poolSize: fc.integer({ min: 1, max: 256 }), timeoutMs: positive(100_000),
          fallback: fc.constantFrom("local" as const, "open" as const, "closed" as const),
          failureThreshold: positive(), circuitOpenMs: positive(100_000)
        })
      )
    }),
    fc.record({
      type: fc.constant("cors" as const), allowedOrigins: fc.array(fc.webUrl().map((u) => new URL(u).origin), { minLength: 1, maxLength: 2 }),
      allowedMethods: fc.array(token.map((t) => t.toUpperCase()), { minLength: 1, maxLength: 3 }),
      allowedHeaders: fc.array(token, { minLength: 1, maxLength: 2 }), exposeHeaders: fc.array(token, { maxLength: 2 }),
      allowCredentials: fc.boolean(), maxAgeSecs: count()
    }),
    fc.record({
      type: fc.constant("redirect" as const), statusCode: fc.constantFrom(301 as const, 302 as const, 303 as const, 307 as const, 308 as const),
      scheme: nullable(fc.constantFrom("http" as const, "https" as const)), hostname: nullable(fc.domain()),
      port: nullable(fc.integer({ min: 1, max: 65535 })), path: pathModifier
    }),
    fc.record({ type: fc.constant("url-rewrite" as const), hostname: nullable(fc.domain()), path: pathModifier }),
    fc.record({
      type: fc.constant("timeout" as const), requestTimeoutSecs: nullable(secsNum), upstreamTimeoutSecs: nullable(secsNum),
      connectTimeoutSecs: nullable(secsNum)
    }),
    fc.record({
      type: fc.constant("security-headers" as const), hsts: nullable(printable), contentTypeOptions: fc.boolean(),
      frameOptions: nullable(fc.constantFrom("DENY" as const, "SAMEORIGIN" as const)), referrerPolicy: nullable(printable),
      contentSecurityPolicy: nullable(printable), permissionsPolicy: nullable(printable), crossOriginOpenerPolicy: nullable(printable),
      override: fc.boolean()
    })
  ]
  if (agentIds.length > 0) {
    kinds.push(fc.record({
      type: fc.constant("agent" as const), agent: fc.constantFrom(...agentIds), failureMode: opt(failureMode),
      timeoutMs: opt(ms()), inspectBody: opt(fc.boolean()), maxBodyBytes: opt(count())
    })
      .map((a) => compact(a)))
  }
  return fc.oneof(...kinds)
}

const jsonKey = fc.string({ unit: fc.oneof(fc.char(), fc.constantFrom("é", "-", "_", "\"")), minLength: 1, maxLength: 6 })
const jsonPrim = fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), text)
const jsonObject: fc.Arbitrary<Record<string, unknown>> = fc.letrec((tie) => ({
  obj: fc.dictionary(jsonKey, fc.oneof(
    { weight: 3, arbitrary: jsonPrim },
    { weight: 1, arbitrary: fc.array(jsonPrim, { minLength: 2, maxLength: 3 }) },
    { weight: 1, arbitrary: tie("obj") }
  ), { maxKeys: 3, depthIdentifier: "json" } as never)
})).obj as fc.Arbitrary<Record<string, unknown>>

const filePathArb = fc.stringMatching(/^\/[a-z0-9._-]{1,10}(\/[a-z0-9._-]{1,10})?$/)

const agent = (aid: string): fc.Arbitrary<AgentConfig> =>
  fc.record({
    type: opt(fc.constantFrom("waf", "auth", "custom-1")),
    transport: fc.oneof(
      path.map((p) => ({ socketPath: p.slice(0, 100) })),
      fc.record({
        address: fc.tuple(fc.constantFrom("http", "https"), fc.constantFrom("127.0.0.1", "agent.internal", "[::1]"), fc.integer({ min: 1, max: 65535 }))
          .map(([s, h, p]) => `${s}://${h}:${p}`),
        tls: opt(fc.record({ insecure: fc.boolean(), caCert: opt(filePathArb), pair: opt(fc.tuple(filePathArb, filePathArb)) }))
      }).map(({ address, tls }) => ({
        grpc: compact({
          address,
          tls: tls === undefined ? undefined : compact({ insecure: tls.insecure, caCert: tls.caCert, clientCert: tls.pair?.[0], clientKey: tls.pair?.[1] })
        })
      }))
    ),
    events: fc.uniqueArray(fc.constantFrom(...agentEvents), { minLength: 1, maxLength: 3 }),
    timeoutMs: ms(), failureMode, maxConcurrentCalls: positive(), maxQueuedCalls: count(), circuitBreaker,
    maxRequestBodyBytes: count(), maxResponseBodyBytes: count(), poolSize: positive(64),
    requestBodyMode: fc.constantFrom("buffer" as const, "stream" as const),
    responseBodyMode: fc.constantFrom("buffer" as const, "stream" as const), chunkTimeoutMs: ms(),
    config: fc.oneof(fc.constant(null), jsonObject),
    connectTimeoutMs: ms(), pingIntervalMs: count(100_000), reconnectBaseMs: ms(1000), reconnectMaxMs: fc.integer({ min: 1000, max: 60_000 })
  }).map(({ transport, ...a }) => {
    if ("socketPath" in transport) return compact({ id: aid, ...transport, ...a })
    // what a gRPC agent cannot be configured for is refused: keep to what it can carry
    const events = a.events.filter((e) => e !== "websocket_frame" && e !== "guardrail")
    return compact({
      id: aid,
      ...transport,
      ...a,
      events: events.length > 0 ? events : ["request_headers" as const],
      maxRequestBodyBytes: Math.min(a.maxRequestBodyBytes, 1_000_000),
      maxResponseBodyBytes: Math.min(a.maxResponseBodyBytes, 1_000_000)
    })
  })

/**
 * Listener TLS that is valid for the decoder: file paths are never read there (Tls.ts does),
 * so any path goes. Versions, suites and SNI names are consistent; SNI names are unique.
 */
const filePath = fc.stringMatching(/^\/[a-z0-9._-]{1,10}(\/[a-z0-9._-]{1,10})?$/)
const dnsLabel = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?$/)
const sniName = fc.tuple(fc.boolean(), fc.array(dnsLabel, { minLength: 1, maxLength: 3 }))
  .map(([wild, labels]) => `${wild ? "*." : ""}${labels.join(".")}`)
const listenerTls = fc.record({
  certFile: filePath,
  keyFile: filePath,
  caFile: opt(filePath),
  clientAuth: fc.boolean(),
  versions: fc.constantFrom(
    { minVersion: "1.2" as const, maxVersion: "1.3" as const, suites: ["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"] },
    { minVersion: "1.3" as const, maxVersion: "1.3" as const, suites: ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"] },
    { minVersion: "1.0" as const, maxVersion: "1.2" as const, suites: ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_128_CBC_SHA"] }
  ),
  withSuites: fc.boolean(),
  sessionResumption: fc.boolean(),
  sni: fc.uniqueArray(sniName, { maxLength: 6 }).chain((names) =>
    fc.array(fc.record({ priority: fc.boolean(), certFile: filePath, keyFile: filePath }), { maxLength: 3 }).map((blocks) =>
      // names dealt out to the blocks, so no name is claimed twice
      blocks.map((b, i) => ({ ...b, hostnames: names.filter((_, j) => j % blocks.length === i) }))
        .map((b) => (b.priority && b.hostnames.length === 0 ? { ...b, priority: false } : b))
    )
  )
}).map(({ versions, withSuites, caFile, clientAuth, ...t }) => compact({
  ...t,
  caFile,
  clientAuth: clientAuth && caFile !== undefined,
  minVersion: versions.minVersion,
  maxVersion: versions.maxVersion,
  cipherSuites: withSuites ? versions.suites : [],
  ocspStapling: false
}))

/** Drops undefined keys so deep equality does not depend on their presence. */
const compact = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T

const routeCache = fc.record({
  enabled: fc.boolean(), defaultTtl: millis, maxSizeBytes: positive(), cachePrivate: fc.boolean(), staleWhileRevalidate: millis,
  staleIfError: millis, cacheableMethods: fc.subarray(["GET", "HEAD", "POST"], { minLength: 1 }),
  cacheableStatusCodes: fc.subarray([200, 203, 204, 301, 404, 410], { minLength: 1 }),
  varyHeaders: fc.subarray(["Accept-Encoding", "Accept-Language", "X-Tenant"]),
  ignoreQueryParams: fc.subarray(["utm_source", "utm_medium", "fbclid"]),
  excludeExtensions: fc.subarray(["php", "cgi"]), excludePaths: fc.subarray(["/admin", "/api/private"])
})

export const arbitraryConfig: fc.Arbitrary<SentinelConfig> = fc
  .record({
    upstreamIds: fc.uniqueArray(id, { maxLength: 3 }),
    routeIds: fc.uniqueArray(id, { maxLength: 4 }),
    listenerIds: fc.uniqueArray(id, { minLength: 1, maxLength: 3 }),
    filterIds: fc.uniqueArray(id, { maxLength: 3 }),
    agentIds: fc.uniqueArray(id, { maxLength: 2 })
  })
  .chain(({ listenerIds, routeIds, upstreamIds, filterIds, agentIds }) => {
    const upstreams: fc.Arbitrary<Array<UpstreamConfig>> = fc.tuple(...upstreamIds.map((uid) =>
      fc.record({
        targets: fc.array(target, { minLength: 1, maxLength: 3 }),
        balancing,
        timeouts: fc.record({ connect: millis, request: millis, read: millis, write: millis }),
        connectionPool: fc.record({
          maxConnections: positive(), maxIdle: count(), idleTimeout: millis, maxLifetime: opt(millis),
          maxPendingRequests: count(), pendingTimeout: millis, maxClientShare: fc.integer({ min: 1, max: 1000 }).map((n) => n / 1000)
        }),
        healthCheck: opt(healthCheck),
        passiveHealth: fc.record({ windowSize: positive(), failureRatio: ratio, minRequests: positive(), cooldownMs: count(3_600_000) }),
        circuitBreaker,
        retryBudget: fc.record({ ratio, minPerSecond: count(1000), maxBalance: count(1000) }),
        tls: opt(upstreamTls),
        httpVersion
      }).map(({ balancing: b, ...u }) => compact({ id: uid, ...b, ...u, connectionPool: compact(u.connectionPool) }))
    ))
    const routes: fc.Arbitrary<Array<RouteConfig>> = fc.tuple(...routeIds.map((rid) =>
      fc.record({
        priority: fc.integer({ min: -1000, max: 100000 }),
        matches: fc.array(routeMatch, { maxLength: 4 }),
        to: fc.oneof(
          ...(upstreamIds.length > 0 ? [fc.constantFrom(...upstreamIds).map((u) => ({ upstream: u }))] : []),
          fc.constantFrom(...BuiltinHandler.literals).map((b) => ({ builtinHandler: b })),
          staticFiles.map((s) => ({ staticFiles: s }))
        ),
        filters: filterIds.length > 0 ? fc.shuffledSubarray([...filterIds]) : fc.constant([]),
        retryPolicy: opt(retryPolicy),
        circuitBreaker: opt(circuitBreaker),
        policies: fc.record({
          requestHeaders: headerOps, responseHeaders: headerOps, timeout: opt(millis), failureMode: opt(failureMode),
          maxBodySize: opt(count(1 << 30)), bufferRequests: fc.boolean(), bufferResponses: fc.boolean()
        }),
        websocket: fc.boolean(),
        websocketInspection: fc.boolean(),
        cache: opt(routeCache)
      }).map(({ to, policies, websocket, websocketInspection, cache, ...r }) => {
        // a WebSocket route has an upstream; inspection needs websocket; only upstream routes cache
        const ws = websocket && "upstream" in to
        const c = cache === undefined ? undefined : { ...cache, enabled: cache.enabled && "upstream" in to }
        return compact({ id: rid, ...r, ...to, policies: compact(policies), websocket: ws, websocketInspection: ws && websocketInspection, cache: c }) as RouteConfig
      })
    ))
    const listeners = fc.tuple(...listenerIds.map((lid) =>
      fc.record({
        address: fc.record({ host, port }),
        requestTimeout: millis,
        keepaliveTimeout: millis,
        keepaliveMaxRequests: opt(positive()),
        headerTimeout: millis,
        bodyIdleTimeout: millis,
        writeTimeout: millis,
        defaultRoute: routeIds.length > 0 ? opt(fc.constantFrom(...routeIds)) : fc.constant(undefined),
        admin: fc.boolean(),
        trustedProxies: fc.array(fc.oneof(fc.ipV4(), fc.ipV4().map((ip) => `${ip}/24`), fc.constant("2001:db8::/32")), { maxLength: 2 }),
        maxConcurrentStreams: positive(), maxEarlyResets: positive(),
        transport: fc.oneof(
          fc.constant({ protocol: "http" as const }),
          fc.constant({ protocol: "h2" as const }),
          listenerTls.map((tls) => ({ protocol: "https" as const, tls }))
        )
      }).map(({ transport, ...l }) => compact({ id: lid, ...transport, ...l }))
    ))
    const filters = fc.tuple(...filterIds.map((fid) => filterBody(agentIds).map((f) => ({ id: fid, ...f }) as FilterConfig)))
    const agents = fc.tuple(...agentIds.map(agent))
    return fc.record({
      schemaVersion: fc.constant("1.0"),
      system: fc.record({
        workerThreads: count(64),
        maxConnections: positive(),
        gracefulShutdownTimeout: millis,
        traceIdFormat: fc.constantFrom("tinyflake" as const, "uuid" as const),
        autoReload: fc.boolean(),
        routeCacheSize: count(),
        pidFile: opt(text),
        user: opt(fc.constantFrom("sentinel", "www-data", "nobody", "1000", "svc.proxy")),
        group: opt(fc.constantFrom("sentinel", "www-data", "nogroup", "1000")),
        workingDirectory: opt(text.filter((t) => t !== "")),
        dns: fc.record({ refreshMs: ms(), timeoutMs: ms(), maxStaleMs: count(3_600_000), maxHosts: positive() })
      }).map(compact),
      listeners,
      filters,
      agents,
      upstreams,
      routes,
      rateLimits: fc.record({
        defaultRps: opt(fc.integer({ min: 1, max: 1_000_000 }).map((n) => n / 10)), key: rlKey,
        global: opt(fc.record({ maxRps: fc.integer({ min: 1, max: 1_000_000 }).map((n) => n / 10), burst: positive(), key: rlKey }))
      }).chain((r) => (r.defaultRps === undefined ? fc.constant(r) : opt(positive()).map((defaultBurst) => ({ ...r, defaultBurst }))))
        .map(compact),
      cache: fc.record({
        enabled: fc.boolean(), backend: fc.constant("memory" as const), maxSize: positive(), lockTimeout: millis,
        statusHeader: fc.boolean(), statusHeaderName: fc.constantFrom("sentinel", "edge-1", "cdn.local"), adminOnly: fc.boolean()
      }),
      limits: fc.record({
        maxHeaderSize: positive(), maxHeaderCount: positive(), maxBodySize: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        requestBufferSize: fc.nat({ max: 1 << 24 }), responseBufferSize: fc.nat({ max: 1 << 24 }), slowReaderTimeout: millis,
        maxUriLength: positive(), maxConnectionsPerClient: positive(), maxTotalConnections: positive(), maxInFlightRequests: positive(),
        inFlightQueueSize: count(), inFlightQueueTimeout: millis, maxHeaderLineSize: positive(),
        underscoresInHeaders: fc.constantFrom("drop" as const, "reject" as const, "allow" as const), allowTrace: fc.boolean(),
        mergeSlashes: fc.boolean(), normalizePath: fc.boolean(), escapedSlashes: fc.constantFrom("keep" as const, "reject" as const),
        websocketMaxFrameSize: positive(), websocketMaxMessageSize: count(), websocketIdleTimeout: millis, websocketMaxLifetime: millis,
        maxWebsocketTunnels: positive(), maxWebsocketTunnelsPerClient: positive()
      }),
      observability: fc.record({
        logging: fc.record({
          level: fc.constantFrom("trace" as const, "debug" as const, "info" as const, "warn" as const, "error" as const),
          format: fc.constantFrom("json" as const, "pretty" as const),
          accessLog: fc.record({
            enabled: fc.boolean(), file: opt(text), format: fc.constantFrom("json" as const, "combined" as const), bufferSize: positive(),
            flushIntervalMs: fc.nat({ max: 10_000 })
          }).map(compact),
          errorLog: fc.record({
            enabled: fc.boolean(), file: opt(text), level: fc.constantFrom("trace" as const, "debug" as const, "info" as const, "warn" as const, "error" as const),
            bufferSize: positive()
          }).map(compact),
          auditLog: fc.record({
            enabled: fc.boolean(), file: opt(text), bufferSize: positive(), logBlocked: fc.boolean(), logAgentDecisions: fc.boolean()
          }).map(compact)
        }),
        metrics: fc.record({ enabled: fc.boolean(), address: fc.record({ host, port }), path: urlPath, maxSeriesPerMetric: positive() }),
        tracing: opt(fc.record({
          endpoint: fc.webUrl(), samplingRate: ratio, serviceName: id, parentBased: fc.boolean(),
          maxQueueSize: fc.integer({ min: 1000, max: 100_000 }), maxExportBatchSize: positive(1000), exportTimeoutMs: ms()
        }))
      }).map(compact)
    })
  })
  // builtin-handler "config" is served only on admin listeners: make one admin when a route uses it
  .map((c) => {
    if (!c.routes.some((r) => r.builtinHandler === "config") || c.listeners.some((l) => l.admin)) return c
    return { ...c, listeners: [{ ...c.listeners[0], admin: true }, ...c.listeners.slice(1)] }
  })
