/** Typed model of the `observability { ... }` block: logging (access, error, audit), metrics, tracing. */
import * as Schema from "effect/Schema"
import { Count, defaulted, defaultedStruct, PositiveCount, Ratio, SocketAddress } from "./SchemaPrimitives.js"

export const AccessLogConfig = Schema.Struct({
  /** `enabled`. Default `#true`. */
  enabled: defaulted(Schema.Boolean, () => true),
  /** `file`: path; absent or `"-"` = stdout. */
  file: Schema.optional(Schema.String),
  /** `format`: `"json"` (default) or `"combined"`. */
  format: defaulted(Schema.Literal("json", "combined"), () => "json" as const),
  /** `buffer-size`: entries buffered before dropping. Default 8192. */
  bufferSize: defaulted(PositiveCount, () => 8192),
  /**
   * `flush-interval-ms`: how long lines may wait to be written together (nginx's `flush=`,
   * Envoy's `file_flush_interval`); 256 KiB queued go out at once. 0 = write as soon as the
   * previous write finished (one write per request at low concurrency). Default 50.
   */
  flushIntervalMs: defaulted(Count, () => 50)
})
export type AccessLogConfig = typeof AccessLogConfig.Type

const LogLevel = Schema.Literal("trace", "debug", "info", "warn", "error")

export const ErrorLogConfig = Schema.Struct({
  /** `enabled`. Default `#true`. */
  enabled: defaulted(Schema.Boolean, () => true),
  /** `file`: path; absent or `"-"` = stderr. */
  file: Schema.optional(Schema.String),
  /** `level`: lowest level written. Default `"warn"`. */
  level: defaulted(LogLevel, () => "warn" as const),
  /** `buffer-size`: lines buffered before dropping. Default 8192. */
  bufferSize: defaulted(PositiveCount, () => 8192)
})
export type ErrorLogConfig = typeof ErrorLogConfig.Type

export const AuditLogConfig = Schema.Struct({
  /** `enabled`. Default `#true`. */
  enabled: defaulted(Schema.Boolean, () => true),
  /** `file`: path; absent or `"-"` = stdout. */
  file: Schema.optional(Schema.String),
  /** `buffer-size`: entries buffered before dropping. Default 8192. */
  bufferSize: defaulted(PositiveCount, () => 8192),
  /** `log-blocked`: an entry for every blocked request. Default `#true`. */
  logBlocked: defaulted(Schema.Boolean, () => true),
  /** `log-agent-decisions`: an entry for every non-allow agent decision. Default `#true`. */
  logAgentDecisions: defaulted(Schema.Boolean, () => true)
})
export type AuditLogConfig = typeof AuditLogConfig.Type

export const LoggingConfig = Schema.Struct({
  /** `level`: `trace|debug|info|warn|error`. Default `"info"`. */
  level: defaulted(LogLevel, () => "info" as const),
  /** `format`: `"json"` (default) or `"pretty"`. */
  format: defaulted(Schema.Literal("json", "pretty"), () => "json" as const),
  /** `access-log {…}`. */
  accessLog: defaultedStruct(AccessLogConfig),
  /** `error-log {…}`. */
  errorLog: defaultedStruct(ErrorLogConfig),
  /** `audit-log {…}`. */
  auditLog: defaultedStruct(AuditLogConfig)
})

export const MetricsConfig = Schema.Struct({
  /** `enabled`: serve metrics on a dedicated listener. Default `#false` (routes with `builtin-handler "metrics"` work regardless). */
  enabled: defaulted(Schema.Boolean, () => false),
  /** `address`: where the metrics listener binds. Default "127.0.0.1:9090". */
  address: defaulted(SocketAddress, () => ({ host: "127.0.0.1", port: 9090 })),
  /** `path`. Default "/metrics". */
  path: defaulted(Schema.String, () => "/metrics"),
  /** `max-series-per-metric`: label sets kept per metric before new ones go to "other". Default 2000. */
  maxSeriesPerMetric: defaulted(PositiveCount, () => 2000)
})
export type MetricsConfig = typeof MetricsConfig.Type

/** `tracing { backend "otlp" { endpoint }; ... }` (src/observability/Tracing.ts `TracingConfig`). */
export const TracingConfig = Schema.Struct({
  /** `backend "otlp" { endpoint "http://collector:4318" }` (OTLP/HTTP). Required. */
  endpoint: Schema.NonEmptyString,
  /** `sampling-rate`: fraction of requests traced, 0..1. Default 0.01. */
  samplingRate: defaulted(Ratio, () => 0.01),
  /** `service-name`. Default "sentinel". */
  serviceName: defaulted(Schema.NonEmptyString, () => "sentinel"),
  /** `parent-based`: follow an incoming traceparent's sampled flag. Default `#true`. */
  parentBased: defaulted(Schema.Boolean, () => true),
  /** `max-queue-size`: spans buffered for export before dropping. Default 2048. */
  maxQueueSize: defaulted(PositiveCount, () => 2048),
  /** `max-export-batch-size`: spans per export request. Default 512. */
  maxExportBatchSize: defaulted(PositiveCount, () => 512),
  /** `export-timeout-secs` (ms here): deadline of one export. Default 10 s. */
  exportTimeoutMs: defaulted(PositiveCount, () => 10_000)
}).pipe(Schema.filter((t) => t.maxExportBatchSize <= t.maxQueueSize || "max-export-batch-size must not exceed max-queue-size"))
export type TracingConfig = typeof TracingConfig.Type

export const ObservabilityConfig = Schema.Struct({
  /** `logging {…}`. */
  logging: defaultedStruct(LoggingConfig),
  /** `metrics {…}`. */
  metrics: defaultedStruct(MetricsConfig),
  /** `tracing {…}`. Default: none (tracing off). */
  tracing: Schema.optional(TracingConfig)
})
export type ObservabilityConfig = typeof ObservabilityConfig.Type
