/**
 * The config model is passed to the feature modules as is: each decoded block
 * must be assignable to the module's own config interface (checked by `tsc`),
 * and its defaults must be the module's defaults (checked at run time).
 */
import * as Duration from "effect/Duration"
import { DEFAULT_RETRY_BUFFER_BYTES } from "../../src/pipeline/RetryPlan.js"
import { describe, expect, it } from "vitest"
import * as S from "../../src/config/Schema.js"
import { type AgentConfig, agentConfigDefaults, type AgentFilterRef } from "../../src/agents/AgentConfig.js"
import { type CorsConfig, defaultCorsConfig } from "../../src/filters/Cors.js"
import { defaultHeadersFilterConfig, type HeadersFilterConfig } from "../../src/filters/Headers.js"
import { defaultRateLimitConfig, type RateLimitConfig } from "../../src/filters/RateLimit.js"
import { defaultRedirectConfig, type RedirectConfig } from "../../src/filters/Redirect.js"
import { defaultSecurityHeadersConfig, type SecurityHeadersConfig } from "../../src/filters/SecurityHeaders.js"
import { defaultTimeoutFilterConfig, type TimeoutFilterConfig } from "../../src/filters/Timeout.js"
import { defaultUrlRewriteConfig, type UrlRewriteConfig } from "../../src/filters/UrlRewrite.js"
import { defaultStaticFilesConfig, type StaticFilesConfig } from "../../src/handlers/StaticFiles.js"
import { DEFAULT_SAMPLING_RATE, DEFAULT_SERVICE_NAME, type TracingConfig } from "../../src/observability/Tracing.js"
import { defaultRequestValidationConfig, type RequestValidationConfig } from "../../src/pipeline/validate/Settings.js"
import type { ForwardingConfig } from "../../src/http/Forwarded.js"
import { type Algorithm, type BalancerConfig, defaultStickyConfig, type StickyConfig } from "../../src/upstream/Balancer.js"
import { type CircuitConfig, defaultCircuitConfig } from "../../src/upstream/Circuit.js"
import { defaultDnsConfig, type DnsConfig } from "../../src/upstream/Dns.js"
import {
  type ActiveHealthConfig, defaultActiveHealthConfig, defaultPassiveHealthConfig, type PassiveHealthConfig
} from "../../src/upstream/Health.js"
import { defaultRetryBudgetConfig, defaultRetryPolicy, type RetryBudgetConfig, type RetryPolicy } from "../../src/upstream/Retry.js"

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
const assertType = <T extends true>(_: T) => undefined
type Filter<T extends S.FilterConfig["type"]> = Extract<S.FilterConfig, { type: T }>

/** Compile-time: the model passes to each module without mapping (besides the noted ones). */
export const wiring = {
  balancer: (u: S.UpstreamConfig): BalancerConfig => ({
    algorithm: u.loadBalancing, hashKey: u.hashKey, virtualNodes: u.virtualNodes, maglevTableSize: u.maglevTableSize, sticky: u.sticky
  }),
  sticky: (s: S.StickyConfig): StickyConfig => s,
  activeHealth: (h: S.HealthCheckConfig): ActiveHealthConfig => h,
  passiveHealth: (h: S.PassiveHealthConfig): PassiveHealthConfig => h,
  circuit: (c: S.CircuitBreakerConfig): CircuitConfig => c,
  retryPolicy: (r: S.RetryPolicyConfig): RetryPolicy => r,
  retryBudget: (b: S.RetryBudgetConfig): RetryBudgetConfig => b,
  dns: (d: S.DnsConfig): DnsConfig => d,
  agent: (a: S.AgentConfig): AgentConfig => a,
  agentFilter: (f: Filter<"agent">): AgentFilterRef => ({ agent: f.agent, failureMode: f.failureMode, filterId: f.id }),
  headers: (f: Filter<"headers">): HeadersFilterConfig => f,
  rateLimit: (f: Filter<"rate-limit">): RateLimitConfig => f,
  cors: (f: Filter<"cors">): CorsConfig => f,
  redirect: (f: Filter<"redirect">): RedirectConfig => f,
  urlRewrite: (f: Filter<"url-rewrite">): UrlRewriteConfig => f,
  timeout: (f: Filter<"timeout">): TimeoutFilterConfig => f,
  securityHeaders: (f: Filter<"security-headers">): SecurityHeadersConfig => f,
  staticFiles: (s: S.StaticFilesConfig): StaticFilesConfig => s,
  requestValidation: (l: S.LimitsConfig): RequestValidationConfig => l,
  forwarding: (l: S.ListenerConfig): ForwardingConfig => l,
  tracing: (t: S.TracingConfig): TracingConfig => t
}

const L = [{ id: "l", address: "127.0.0.1:0" }]
const strip = <T extends object>(o: T, ...keys: Array<string>) =>
  Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)))

describe("config model vs feature modules", () => {
  it("algorithm names are exactly the balancer's", () => {
    assertType<Equals<S.LoadBalancingAlgorithm, Algorithm>>(true)
    expect(true).toBe(true)
  })

  it("defaults of every block are the modules' defaults", () => {
    const c = S.makeConfig({
      listeners: L,
      upstreams: [{ id: "u", targets: [{ address: "h:1" }], healthCheck: {} }],
      routes: [{ id: "r", staticFiles: { root: "/srv" }, retryPolicy: {}, filters: ["h", "rl", "c", "rd", "uw", "t", "sh", "a"] }],
      filters: [
        { id: "h", type: "headers" }, { id: "rl", type: "rate-limit" }, { id: "c", type: "cors" }, { id: "rd", type: "redirect" },
        { id: "uw", type: "url-rewrite" }, { id: "t", type: "timeout" }, { id: "sh", type: "security-headers" },
        { id: "a", type: "agent", agent: "waf" }
      ],
      agents: [{ id: "waf", socketPath: "/run/waf.sock" }],
      observability: { tracing: { endpoint: "http://127.0.0.1:4318" } }
    })
    const u = c.upstreams[0]
    expect(u.sticky).toEqual(defaultStickyConfig)
    expect(u.healthCheck).toEqual(defaultActiveHealthConfig)
    expect(u.passiveHealth).toEqual(defaultPassiveHealthConfig)
    expect(u.circuitBreaker).toEqual(defaultCircuitConfig)
    expect(u.retryBudget).toEqual(defaultRetryBudgetConfig)
    expect(c.system.dns).toEqual(defaultDnsConfig)
    expect(c.routes[0].retryPolicy).toEqual(defaultRetryPolicy)
    expect(c.routes[0].staticFiles).toEqual(defaultStaticFilesConfig("/srv"))
    const f = Object.fromEntries(c.filters.map((x) => [x.id, strip(x, "id", "type")]))
    expect(f.h).toEqual(defaultHeadersFilterConfig)
    expect(f.rl).toEqual(defaultRateLimitConfig)
    expect(f.c).toEqual(defaultCorsConfig)
    expect(f.rd).toEqual(defaultRedirectConfig)
    expect(f.uw).toEqual(defaultUrlRewriteConfig)
    expect(f.t).toEqual(defaultTimeoutFilterConfig)
    expect(f.sh).toEqual(defaultSecurityHeadersConfig)
    expect(strip(c.agents[0], "id", "socketPath")).toEqual(agentConfigDefaults)
    // documented difference: the header-size default stays Sentinel's 8192 (RequestValidation's is 16384)
    expect({ ...strip(c.limits, "maxBodySize", "requestBufferSize", "responseBufferSize", "slowReaderTimeout", "maxConnectionsPerClient", "maxTotalConnections", "maxInFlightRequests",
      "inFlightQueueSize", "inFlightQueueTimeout", "websocketMaxFrameSize", "websocketMaxMessageSize", "websocketIdleTimeout", "websocketMaxLifetime",
      "maxWebsocketTunnels", "maxWebsocketTunnelsPerClient"), maxHeaderSize: 16384 }).toEqual(defaultRequestValidationConfig)
    expect(c.observability.tracing?.samplingRate).toBe(DEFAULT_SAMPLING_RATE)
    expect(c.observability.tracing?.serviceName).toBe(DEFAULT_SERVICE_NAME)
    expect(c.limits.inFlightQueueTimeout).toEqual(Duration.seconds(5))
    expect(c.limits.requestBufferSize).toBe(DEFAULT_RETRY_BUFFER_BYTES)
    // Sentinel's codec limit (crates/proxy/src/websocket/codec.rs)
    expect(c.limits.websocketMaxFrameSize).toBe(1024 * 1024)
  })
})
