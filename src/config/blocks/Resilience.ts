/**
 * Blocks shared by upstreams and agents: `circuit-breaker { ... }`, plus the
 * upstream resilience blocks (`health-check`, `passive-health`,
 * `retry-budget`) and the route `retry-policy`. KDL seconds become the
 * modules' milliseconds here.
 */
import type { Node } from "@bgotink/kdl"
import type {
  CircuitBreakerConfig, HealthCheckConfig, HealthCheckType, PassiveHealthConfig, RetryBudgetConfig, RetryPolicyConfig
} from "../Schema.js"
import { type BlockSpec, block, compact, custom, decodeBlock, list, scalar, shape } from "../KdlDecoder.js"
import type { Cx } from "../KdlContext.js"
import { type Val, bool, millis, nonEmpty, num, oneOf, positive, positiveMs, secsMs, status, str } from "../KdlValues.js"

/** `circuit-breaker { ... }` at `path` (strict like Sentinel: unknown keys and 0 are errors). */
export const circuitBreakerSpec = (path: string): BlockSpec<CircuitBreakerConfig> => ({
  path,
  fields: {
    failureThreshold: scalar("failure-threshold", positive),
    successThreshold: scalar("success-threshold", positive),
    openTimeoutMs: scalar(["timeout-seconds", "timeout-secs"], positiveMs(1000)),
    halfOpenMaxRequests: scalar("half-open-max-requests", positive),
    probeTimeoutMs: scalar(["probe-timeout-secs", "probe-timeout-seconds"], positiveMs(1000))
  }
})

// --- health-check --------------------------------------------------------------

const urlPath: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  // eslint-disable-next-line no-control-regex
  return s.startsWith("/") && !/[\x00-\x20\x7f]/.test(s) ? s : cx.error(at, `${what} must start with "/" and contain no spaces or control characters, got ${JSON.stringify(s)}`)
}

/** Sentinel writes `expected-status "200"`: accept numeric strings too. */
const statusLike: Val<number> = (v, at, cx, what) =>
  typeof v === "string" && /^\d{3}$/.test(v) ? status(Number(v), at, cx, what) : status(v, at, cx, what)

type HttpCheckFields = Omit<Extract<HealthCheckType, { kind: "http" }>, "kind">

export const httpCheckSpec: BlockSpec<HttpCheckFields> = {
  path: "upstreams.upstream.health-check.type",
  fields: {
    path: scalar("path", urlPath),
    expectedStatus: list("expected-status", statusLike),
    host: scalar("host", nonEmpty)
  }
}

const checkType = oneOf(["http", "tcp"] as const, { notSupported: ["grpc", "inference"] })

const typeField = custom("type", (node: Node, cx: Cx): HealthCheckType | undefined => {
  if (!shape(node, cx, { args: [1, 1], children: true })) return undefined
  const e = node.getArgumentEntry(0)!
  const kind = checkType(e.getValue(), e, cx, "health-check `type`")
  if (kind === undefined) return undefined
  if (kind === "tcp") {
    if (node.children !== null) return cx.error(node, "`type \"tcp\"` takes no { ... } block")
    return { kind }
  }
  const f = node.children === null ? {} : decodeBlock(node, cx, httpCheckSpec).fields
  return compact({ kind, ...f }) as HealthCheckType
}, { nested: httpCheckSpec })

export const healthCheckSpec: BlockSpec<HealthCheckConfig> = {
  path: "upstreams.upstream.health-check",
  fields: {
    type: typeField,
    intervalMs: scalar(["interval-secs", "interval"], positiveMs(1000)),
    timeoutMs: scalar(["timeout-secs", "timeout"], positiveMs(1000)),
    healthyThreshold: scalar("healthy-threshold", positive),
    unhealthyThreshold: scalar("unhealthy-threshold", positive)
  }
}

export const passiveHealthSpec: BlockSpec<PassiveHealthConfig> = {
  path: "upstreams.upstream.passive-health",
  fields: {
    windowSize: scalar("window-size", positive),
    failureRatio: scalar("failure-ratio", num({ min: 0, max: 1 })),
    minRequests: scalar("min-requests", positive),
    cooldownMs: scalar(["cooldown-secs", "cooldown"], secsMs)
  }
}

export const retryBudgetSpec: BlockSpec<RetryBudgetConfig> = {
  path: "upstreams.upstream.retry-budget",
  fields: {
    ratio: scalar("ratio", num({ min: 0, max: 1000 })),
    minPerSecond: scalar("min-per-second", num({ min: 0, max: 1e6 })),
    maxBalance: scalar("max-balance", num({ min: 0, max: 1e9 }))
  }
}

// --- retry-policy (route) --------------------------------------------------------

export const retryPolicySpec: BlockSpec<RetryPolicyConfig> = {
  path: "routes.route.retry-policy",
  fields: {
    maxAttempts: scalar("max-attempts", (v, at, cx, what) => {
      const n = positive(v, at, cx, what)
      return n !== undefined && n > 10 ? cx.error(at, `${what} must be at most 10, got ${n}`) : n
    }),
    retryableStatusCodes: list("retryable-status-codes", status),
    backoffMs: scalar(["backoff", "backoff-ms", "backoff-base-ms"], millis),
    maxBackoffMs: scalar(["max-backoff", "max-backoff-ms", "backoff-max-ms"], millis),
    perAttemptTimeoutMs: scalar(["per-attempt-timeout", "per-attempt-timeout-ms", "timeout-ms"], positiveMs(1)),
    retryNonIdempotent: scalar("retry-non-idempotent", bool)
  }
}

export const retryPolicyField = block("retry-policy", retryPolicySpec, (f, node, cx) => {
  if (f.backoffMs !== undefined && f.maxBackoffMs !== undefined && f.maxBackoffMs < f.backoffMs) {
    return cx.error(node, `\`max-backoff\` (${f.maxBackoffMs} ms) must not be less than \`backoff\` (${f.backoffMs} ms)`)
  }
  return f
})

