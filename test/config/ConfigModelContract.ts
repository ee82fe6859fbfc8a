// The typed configuration model the dataplane consumes (Schema.Type of src/config/Schema.ts).
// The config helper implements it with effect/Schema; field names below are the contract.
// Durations are effect `Duration.Duration`; sizes are numbers of bytes (branded `Bytes` ok).
import type * as Duration from "effect/Duration"
import type * as S from "../../src/config/Schema.js"

export interface SentinelConfig {
  readonly schemaVersion: string                // "1.0"
  readonly system: SystemConfig
  readonly listeners: ReadonlyArray<ListenerConfig>   // at least one
  readonly upstreams: ReadonlyArray<UpstreamConfig>
  readonly routes: ReadonlyArray<RouteConfig>
  readonly limits: LimitsConfig
  readonly observability: ObservabilityConfig
  readonly filters: ReadonlyArray<S.FilterConfig>
  readonly agents: ReadonlyArray<S.AgentConfig>
  readonly rateLimits: S.RateLimitsConfig       // rate-limits { default-rps; default-burst; key; global {…} }
  readonly cache: S.CacheStoreConfig            // cache { enabled; backend "memory"; max-size; lock-timeout; status-header; ... }
}
export interface SystemConfig {
  readonly workerThreads: number                 // 1 here means single process; 0 = cores (issue 6)
  readonly maxConnections: number                // 10000
  readonly gracefulShutdownTimeout: Duration.Duration   // graceful-shutdown-timeout-secs 30
  readonly traceIdFormat: "tinyflake" | "uuid"   // tinyflake
  readonly autoReload: boolean                   // #false
  readonly routeCacheSize: number                // 1000
  readonly pidFile?: string
  readonly user?: string                         // user "sentinel" (name or numeric uid)
  readonly group?: string                        // group "sentinel"
  readonly workingDirectory?: string             // working-directory "/var/lib/sentinel"
  readonly dns: S.DnsConfig
}
export interface ListenerConfig {
  readonly id: string
  readonly address: { readonly host: string; readonly port: number }   // "0.0.0.0:8080", "[::1]:80"
  readonly protocol: "http" | "https" | "h2"     // "http"; "https" needs tls, "h2" is cleartext (no tls)
  readonly tls?: ListenerTlsConfig               // only with protocol "https"
  readonly maxConcurrentStreams: number          // max-concurrent-streams 100 (HTTP/2)
  readonly maxEarlyResets: number                // max-early-resets 100 (HTTP/2 rapid reset)
  readonly requestTimeout: Duration.Duration     // request-timeout-secs 60
  readonly headerTimeout: Duration.Duration      // header-timeout-secs 10
  readonly bodyIdleTimeout: Duration.Duration    // body-idle-timeout-secs 30
  readonly writeTimeout: Duration.Duration       // write-timeout-secs 30
  readonly keepaliveTimeout: Duration.Duration   // keepalive-timeout-secs 75
  readonly keepaliveMaxRequests?: number
  readonly defaultRoute?: string
  readonly admin: boolean                        // #false
  readonly trustedProxies: ReadonlyArray<string> // none
}
export type TlsVersion = "1.0" | "1.1" | "1.2" | "1.3"
export interface ListenerTlsConfig {
  readonly certFile: string                      // required
  readonly keyFile: string                       // required
  readonly caFile?: string                       // client CAs (mTLS)
  readonly clientAuth: boolean                   // #false; #true needs caFile
  readonly minVersion: TlsVersion                // "1.2"
  readonly maxVersion: TlsVersion                // "1.3"
  readonly cipherSuites: ReadonlyArray<string>   // IANA names; [] = node's defaults
  readonly sessionResumption: boolean            // #true
  readonly ocspStapling: boolean                 // #false (staple OCSP responses from the certificate's responder)
  readonly sni: ReadonlyArray<SniCertificateConfig>
}
export interface SniCertificateConfig {
  readonly hostnames: ReadonlyArray<string>      // [] = the certificate's SANs
  readonly priority: boolean                     // priority-hostnames: SANs served, these names won on conflict
  readonly certFile: string
  readonly keyFile: string
}
export interface TargetConfig {
  readonly address: string      // "host:port" as written
  readonly host: string
  readonly port: number
  readonly weight: number       // 1
}
export interface UpstreamConfig {
  readonly id: string
  readonly targets: ReadonlyArray<TargetConfig>       // at least one
  readonly loadBalancing: S.LoadBalancingAlgorithm   // "round_robin"
  readonly hashKey: S.HashKey
  readonly virtualNodes: number
  readonly maglevTableSize: number
  readonly sticky: S.StickyConfig
  readonly healthCheck?: S.HealthCheckConfig
  readonly passiveHealth: S.PassiveHealthConfig
  readonly circuitBreaker: S.CircuitBreakerConfig
  readonly retryBudget: S.RetryBudgetConfig
  readonly tls?: S.UpstreamTlsConfig
  readonly httpVersion: S.HttpVersionConfig
  readonly timeouts: {
    readonly connect: Duration.Duration          // 10s
    readonly request: Duration.Duration          // 60s (total, per attempt)
    readonly read: Duration.Duration             // 30s (headers + body idle)
    readonly write: Duration.Duration            // 30s
  }
  readonly connectionPool: {
    readonly maxConnections: number              // 100 (per target)
    readonly maxIdle: number                     // 20
    readonly idleTimeout: Duration.Duration      // 60s
    readonly maxLifetime?: Duration.Duration
    readonly maxPendingRequests: number          // 1000 (waiting for a connection, per target)
    readonly pendingTimeout: Duration.Duration   // 5s
    readonly maxClientShare: number              // 0.5 (of max-connections, per client address)
  }
}
export type RouteMatch =
  | { readonly _tag: "Path"; readonly path: string }
  | { readonly _tag: "PathPrefix"; readonly prefix: string }
  | { readonly _tag: "PathRegex"; readonly pattern: string }
  | { readonly _tag: "Host"; readonly host: string }
  | { readonly _tag: "Header"; readonly name: string; readonly value?: string }
  | { readonly _tag: "Method"; readonly methods: ReadonlyArray<string> }   // upper-case
  | { readonly _tag: "QueryParam"; readonly name: string; readonly value?: string }
export interface HeaderOps {
  readonly rename: ReadonlyArray<readonly [from: string, to: string]>
  readonly set: ReadonlyArray<readonly [name: string, value: string]>
  readonly add: ReadonlyArray<readonly [name: string, value: string]>
  readonly remove: ReadonlyArray<string>
}
export type BuiltinHandler = "status" | "health" | "metrics" | "not-found" | "config" | "upstreams" | "cache-purge" | "cache-stats"
export interface RouteConfig {
  readonly id: string
  readonly priority: number                      // low 10, normal 50 (default), high 100, critical 1000, or integer
  readonly matches: ReadonlyArray<RouteMatch>    // in document order
  readonly upstream?: string                     // exactly one of upstream / builtinHandler / staticFiles
  readonly builtinHandler?: BuiltinHandler
  readonly staticFiles?: S.StaticFilesConfig
  readonly filters: ReadonlyArray<string>
  readonly retryPolicy?: S.RetryPolicyConfig
  readonly policies: {
    readonly requestHeaders: HeaderOps
    readonly responseHeaders: HeaderOps
    readonly timeout?: Duration.Duration         // timeout-secs: whole-request deadline for this route
    readonly failureMode?: "open" | "closed"
    readonly maxBodySize?: number                // max-body-size: this route's body limit (413)
    readonly bufferRequests: boolean             // buffer-requests #false: every body read whole first
    readonly bufferResponses: boolean            // buffer-responses #false: the response read whole (bounded) first
  }
  readonly circuitBreaker?: S.CircuitBreakerConfig // a breaker around the route's upstream calls
  readonly websocket: boolean                    // websocket #false: WebSocket handshakes tunnelled (needs upstream)
  readonly websocketInspection: boolean          // websocket-inspection #false: frames to websocket_frame agents
  readonly cache?: S.RouteCacheConfig            // cache { enabled #false; default-ttl-secs 3600; ... }
}
export interface LimitsConfig {
  readonly maxHeaderSize: number                 // 8192 bytes (also accept max-header-size-bytes)
  readonly maxHeaderCount: number                // 100
  readonly maxBodySize: number                   // 10 MiB (also accept max-body-size-bytes)
  readonly requestBufferSize: number             // 64 KiB (bodies read whole before going upstream)
  readonly responseBufferSize: number            // 256 KiB (held for a slow reader before pausing the upstream)
  readonly slowReaderTimeout: Duration.Duration  // 10s (upstream held for a client that takes nothing)
  readonly maxUriLength: number                  // 8192
  readonly maxConnectionsPerClient: number       // 100
  readonly maxTotalConnections: number           // 10000
  readonly maxInFlightRequests: number           // 10000
  readonly inFlightQueueSize: number             // 1000
  readonly inFlightQueueTimeout: Duration.Duration  // 5s
  readonly maxHeaderLineSize: number             // 8192
  readonly underscoresInHeaders: "drop" | "reject" | "allow"
  readonly allowTrace: boolean
  readonly mergeSlashes: boolean
  readonly normalizePath: boolean
  readonly escapedSlashes: "keep" | "reject"
  readonly websocketMaxFrameSize: number         // 1 MiB (frame payload; over it 1009)
  readonly websocketMaxMessageSize: number       // 16 MiB (inspected message; 0 = unbounded)
  readonly websocketIdleTimeout: Duration.Duration  // 300s (0 = never)
  readonly websocketMaxLifetime: Duration.Duration  // 0 = never
  readonly maxWebsocketTunnels: number           // 10000
  readonly maxWebsocketTunnelsPerClient: number  // 100
}
export interface AccessLogConfig {
  readonly enabled: boolean                      // #true
  readonly file?: string                         // absent or "-" = stdout
  readonly format: "json" | "combined"           // json
  readonly bufferSize: number                    // 8192 lines? (entries buffered before dropping)
  readonly flushIntervalMs: number               // 50 ms (lines written together; 0 = at once)
}
export interface ObservabilityConfig {
  readonly logging: {
    readonly level: "trace" | "debug" | "info" | "warn" | "error"   // info
    readonly format: "json" | "pretty"           // json
    readonly accessLog: AccessLogConfig
    readonly errorLog: S.ErrorLogConfig
    readonly auditLog: S.AuditLogConfig
  }
  readonly metrics: S.MetricsConfig
  readonly tracing?: S.TracingConfig
}
