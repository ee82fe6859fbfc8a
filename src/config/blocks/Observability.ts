/** `observability { logging { ... }; metrics { ... }; tracing { ... } }`. */
import type { AccessLogConfig, AuditLogConfig, ErrorLogConfig, MetricsConfig, ObservabilityConfig, TracingConfig } from "../Schema.js"
import { type BlockSpec, block, custom, decodeBlock, scalar, shape } from "../KdlDecoder.js"
import { type Val, bool, count, hostPort, num, oneOf, positive, positiveMs, str } from "../KdlValues.js"

const level = oneOf(["trace", "debug", "info", "warn", "error"] as const, { aliases: { warning: "warn" } })

export const accessLogSpec: BlockSpec<AccessLogConfig> = {
  path: "observability.logging.access-log",
  fields: {
    enabled: scalar("enabled", bool),
    file: scalar("file", str),
    format: scalar("format", oneOf(["json", "combined"] as const)),
    bufferSize: scalar("buffer-size", positive),
    flushIntervalMs: scalar("flush-interval-ms", count)
  }
}

export const errorLogSpec: BlockSpec<ErrorLogConfig> = {
  path: "observability.logging.error-log",
  fields: {
    enabled: scalar("enabled", bool),
    file: scalar("file", str),
    level: scalar("level", level),
    bufferSize: scalar("buffer-size", positive)
  }
}

export const auditLogSpec: BlockSpec<AuditLogConfig> = {
  path: "observability.logging.audit-log",
  fields: {
    enabled: scalar("enabled", bool),
    file: scalar("file", str),
    bufferSize: scalar("buffer-size", positive),
    logBlocked: scalar("log-blocked", bool),
    logAgentDecisions: scalar("log-agent-decisions", bool)
  }
}

export const loggingSpec: BlockSpec<ObservabilityConfig["logging"]> = {
  path: "observability.logging",
  fields: {
    level: scalar("level", level),
    format: scalar("format", oneOf(["json", "pretty"] as const)),
    accessLog: block("access-log", accessLogSpec),
    errorLog: block("error-log", errorLogSpec),
    auditLog: block("audit-log", auditLogSpec)
  }
}

const urlPath: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return /^\/[^\s?#]*$/.test(s) ? s : cx.error(at, `${what} must be a path starting with "/", got ${JSON.stringify(s)}`)
}

export const metricsSpec: BlockSpec<MetricsConfig> = {
  path: "observability.metrics",
  fields: {
    enabled: scalar("enabled", bool),
    address: scalar("address", hostPort),
    path: scalar("path", urlPath),
    maxSeriesPerMetric: scalar("max-series-per-metric", positive)
  }
}

const endpoint: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  try {
    const u = new URL(s)
    if (u.protocol === "http:" || u.protocol === "https:") return s
  } catch {
    // reported below
  }
  return cx.error(at, `${what} must be an http:// or https:// URL, got ${JSON.stringify(s)}`)
}

export const otlpSpec: BlockSpec<{ endpoint: string }> = {
  path: "observability.tracing.backend",
  fields: { endpoint: scalar("endpoint", endpoint) }
}

const backend = oneOf(["otlp"] as const, { notSupported: ["jaeger", "zipkin"] })

/** `backend "otlp" { endpoint "..." }`: yields the endpoint. */
const backendField = custom("backend", (node, cx): string | undefined => {
  if (!shape(node, cx, { args: [1, 1], children: true })) return undefined
  const e = node.getArgumentEntry(0)!
  const kind = backend(e.getValue(), e, cx, "tracing `backend`")
  if (node.children === null) return cx.error(node, "`backend` needs a { endpoint \"...\" } block")
  const f = decodeBlock(node, cx, otlpSpec).fields
  if (kind === undefined) return undefined
  if (f.endpoint === undefined) {
    if (!node.children.nodes.some((n) => n.getName() === "endpoint")) cx.error(node, "`backend` needs an `endpoint`")
    return undefined
  }
  return f.endpoint
}, { nested: otlpSpec })

interface TracingFields extends Omit<TracingConfig, "endpoint"> {
  readonly backend: string
}

export const tracingSpec: BlockSpec<TracingFields> = {
  path: "observability.tracing",
  fields: {
    backend: backendField,
    samplingRate: scalar("sampling-rate", num({ min: 0, max: 1 })),
    serviceName: scalar("service-name", (v, at, cx, what) => {
      const s = str(v, at, cx, what)
      return s === "" ? cx.error(at, `${what} must not be empty`) : s
    }),
    parentBased: scalar("parent-based", bool),
    maxQueueSize: scalar("max-queue-size", positive),
    maxExportBatchSize: scalar("max-export-batch-size", positive),
    exportTimeoutMs: scalar(["export-timeout-secs", "export-timeout"], positiveMs(1000))
  }
}

export const observabilitySpec: BlockSpec<ObservabilityConfig> = {
  path: "observability",
  fields: {
    logging: block("logging", loggingSpec),
    metrics: block("metrics", metricsSpec),
    tracing: block("tracing", tracingSpec, ({ backend: ep, ...rest }, node, cx) => {
      if (ep === undefined) {
        if (!node.children?.nodes.some((n) => n.getName() === "backend")) {
          cx.error(node, "`tracing` needs a `backend \"otlp\" { endpoint \"http://collector:4318\" }`")
        }
        return undefined
      }
      if ((rest.maxExportBatchSize ?? 512) > (rest.maxQueueSize ?? 2048)) {
        return cx.error(node, "`max-export-batch-size` must not exceed `max-queue-size`")
      }
      return { endpoint: ep, ...rest }
    })
  }
}

export const observabilityField = block("observability", observabilitySpec)
