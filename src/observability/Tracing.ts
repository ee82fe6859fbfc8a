/**
 * Distributed tracing: `observability { tracing { backend "otlp" { endpoint "…" };
 * sampling-rate 0.01; service-name "sentinel" } }`.
 *
 * - `tracingLayer(config)` builds one OpenTelemetry tracer provider (via
 *   `@effect/opentelemetry`) exporting to OTLP/HTTP with a bounded batch
 *   processor: when the collector is slow or down, spans beyond
 *   `max-queue-size` are dropped, never queued without bound, and the request
 *   path never waits on the exporter. Closing the layer flushes (bounded).
 *   The layer provides two things over that provider: Effect's tracer
 *   (`Effect.withSpan` in cold paths: config load, reload) and the `Tracing`
 *   service, the plain OpenTelemetry tracer the request path uses directly
 *   (RequestTrace.ts), since that path is callbacks, not Effect code.
 * - The sampling decision is made on the hot path by plain functions
 *   (`parseTraceparent`, `decideSampled`), so an unsampled request creates no
 *   span object at all. The SDK samples everything it is handed (AlwaysOn):
 *   the decision has already been made.
 */
import type * as Otel from "@opentelemetry/api"
import { randomFillSync } from "node:crypto"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Tracer from "effect/Tracer"

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

export interface TracingConfig {
  /**
   * `backend "otlp" { endpoint "…" }`: OTLP/HTTP collector. A base URL
   * (`http://collector:4318`) gets `/v1/traces` appended; a URL whose path
   * already ends in `/v1/traces` is used as is. No default (tracing is off
   * without a `tracing` block). Note Sentinel exports OTLP/gRPC (port 4317);
   * this exporter speaks OTLP/HTTP JSON (port 4318).
   */
  readonly endpoint: string
  /** `sampling-rate`: fraction of requests traced, 0..1. Default 0.01. */
  readonly samplingRate?: number | undefined
  /** `service-name`. Default "sentinel". */
  readonly serviceName?: string | undefined
  /** Reported as `service.version`. Default: none. */
  readonly serviceVersion?: string | undefined
  /**
   * Follow the sampled flag of an incoming `traceparent` (W3C "parent based")
   * instead of rolling `samplingRate`. Default true. Spans are bounded by
   * `maxQueueSize` either way, so a client setting the flag cannot grow memory.
   */
  readonly parentBased?: boolean | undefined
  /** Spans buffered for export before new ones are dropped. Default 2048. */
  readonly maxQueueSize?: number | undefined
  /** Spans per export request. Default 512. */
  readonly maxExportBatchSize?: number | undefined
  /** Delay between exports. Default 1000 ms. */
  readonly scheduledDelayMs?: number | undefined
  /** Timeout of one export request. Default 10000 ms. */
  readonly exportTimeoutMs?: number | undefined
  /** Upper bound for flushing spans at shutdown. Default 3000 ms. */
  readonly shutdownTimeoutMs?: number | undefined
  /** Extra HTTP headers for the collector (e.g. authentication). Default none. */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

export const DEFAULT_SAMPLING_RATE = 0.01
export const DEFAULT_SERVICE_NAME = "sentinel"

/** The OTLP/HTTP traces URL for a configured endpoint. */
export const otlpTracesUrl = (endpoint: string): string => {
  const trimmed = endpoint.replace(/\/+$/, "")
  return trimmed.endsWith("/v1/traces") ? trimmed : `${trimmed}/v1/traces`
}

/** What the request path needs to trace: the decision inputs and the tracer. */
export interface RequestTracing {
  /** Fraction of requests (without a parent decision) that get spans, 0..1. */
  readonly samplingRate: number
  /** Follow an incoming `traceparent`'s sampled flag. */
  readonly parentBased: boolean
  /** The OpenTelemetry tracer of the layer's provider (exports to the collector). */
  readonly tracer: Otel.Tracer
  /** Random source for the sampling roll (tests). Default `Math.random`. */
  readonly random?: () => number
}

/**
 * The request path's tracer, present when tracing is configured. Read it with
 * `Effect.serviceOption(Tracing)`: absent means tracing is off.
 */
export class Tracing extends Context.Tag("sentinel/observability/Tracing")<Tracing, RequestTracing>() {}

/**
 * The tracer as a layer: one provider (batch processor + OTLP/HTTP exporter),
 * closed (flushed, bounded by `shutdownTimeoutMs`) with the layer. Provides
 * `Tracing` for the request path and installs Effect's tracer over the same
 * provider, so `Effect.withSpan` inside it is exported too. Nothing global is
 * registered.
 */
export const tracingLayer = (config: TracingConfig): Layer.Layer<Tracing> =>
  Layer.unwrapEffect(
    // The SDK is loaded only when tracing is configured (~100 ms of start-up otherwise).
    Effect.promise(() =>
      Promise.all([
        import("@effect/opentelemetry"),
        import("@opentelemetry/exporter-trace-otlp-http"),
        import("@opentelemetry/sdk-trace-base")
      ])
    ).pipe(
      Effect.map(([{ NodeSdk, Resource, Tracer: OtelTracer }, { OTLPTraceExporter }, { AlwaysOnSampler, BatchSpanProcessor }]) => {
        const processor = new BatchSpanProcessor(
          new OTLPTraceExporter({
            url: otlpTracesUrl(config.endpoint),
            timeoutMillis: config.exportTimeoutMs ?? 10_000,
            ...(config.headers ? { headers: { ...config.headers } } : {})
          }),
          {
            maxQueueSize: config.maxQueueSize ?? 2048,
            maxExportBatchSize: config.maxExportBatchSize ?? 512,
            scheduledDelayMillis: config.scheduledDelayMs ?? 1000,
            exportTimeoutMillis: config.exportTimeoutMs ?? 10_000
          }
        )
        const resource = Resource.layer({
          serviceName: config.serviceName ?? DEFAULT_SERVICE_NAME,
          ...(config.serviceVersion !== undefined ? { serviceVersion: config.serviceVersion } : {})
        })
        const provider = NodeSdk.layerTracerProvider(processor, {
          sampler: new AlwaysOnSampler(),
          shutdownTimeout: config.shutdownTimeoutMs ?? 3000
        }).pipe(Layer.provideMerge(resource))
        const requestTracing = Layer.effect(
          Tracing,
          Effect.map(
            OtelTracer.OtelTracer,
            (tracer): RequestTracing => ({
              samplingRate: config.samplingRate ?? DEFAULT_SAMPLING_RATE,
              parentBased: config.parentBased ?? true,
              tracer
            })
          )
        )
        return requestTracing.pipe(Layer.provideMerge(OtelTracer.layer), Layer.provide(provider))
      })
    )
  )

/**
 * `tracingLayer` when configured, else nothing (Effect's native tracer stays,
 * and `Effect.serviceOption(Tracing)` finds none).
 */
export const tracingLayerOptional = (config: TracingConfig | undefined): Layer.Layer<never> =>
  config === undefined ? Layer.empty : tracingLayer(config)

// ---------------------------------------------------------------------------
// W3C traceparent (pure, hot path)
// ---------------------------------------------------------------------------

/** A parsed `traceparent`: ids in lowercase hex. */
export interface TraceContext {
  /** 32 lowercase hex digits, not all zero. */
  readonly traceId: string
  /** 16 lowercase hex digits, not all zero (the caller's span). */
  readonly spanId: string
  /** Trace flags byte; bit 0 = sampled. */
  readonly flags: number
  readonly sampled: boolean
}

const HEX = /^[0-9a-f]+$/
const ZERO_TRACE = "00000000000000000000000000000000"
const ZERO_SPAN = "0000000000000000"

/**
 * Parses a `traceparent` header per W3C Trace Context level 1. Returns
 * undefined for anything invalid (including repeated headers), in which case
 * the proxy starts a new trace, as the spec requires.
 */
export const parseTraceparent = (header: string | ReadonlyArray<string> | undefined): TraceContext | undefined => {
  if (typeof header !== "string") return undefined
  const h = header.trim()
  if (h.length < 55) return undefined
  const version = h.slice(0, 2)
  if (!HEX.test(version) || version === "ff") return undefined
  // Version 00 is exactly 55 characters; later versions may append "-…" fields.
  if (version === "00" ? h.length !== 55 : h.length > 55 && h[55] !== "-") return undefined
  if (h[2] !== "-" || h[35] !== "-" || h[52] !== "-") return undefined
  const traceId = h.slice(3, 35)
  const spanId = h.slice(36, 52)
  const flagsHex = h.slice(53, 55)
  if (!HEX.test(traceId) || !HEX.test(spanId) || !HEX.test(flagsHex)) return undefined
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined
  const flags = parseInt(flagsHex, 16)
  return { traceId, spanId, flags, sampled: (flags & 1) === 1 }
}

/** `00-<trace-id>-<span-id>-<flags>`. */
export const formatTraceparent = (ctx: {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}): string => `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? "01" : "00"}`

/**
 * Whether this request gets a span: follow the incoming sampled flag when
 * `parentBased` (default), else roll `rate` (0 = never, 1 = always).
 */
export const decideSampled = (
  parent: TraceContext | undefined,
  rate: number,
  options: { readonly parentBased?: boolean; readonly random?: () => number } = {}
): boolean => {
  if (parent !== undefined && (options.parentBased ?? true)) return parent.sampled
  if (rate <= 0) return false
  if (rate >= 1) return true
  return (options.random ?? Math.random)() < rate
}

// Ids from a pooled buffer of random bytes: one getrandom() per ~170 trace ids.
const POOL_SIZE = 4096
const pool = Buffer.alloc(POOL_SIZE)
let poolOffset = POOL_SIZE
const randomHex = (bytes: number): string => {
  for (;;) {
    if (poolOffset + bytes > POOL_SIZE) {
      randomFillSync(pool)
      poolOffset = 0
    }
    const hex = pool.toString("hex", poolOffset, poolOffset + bytes)
    poolOffset += bytes
    if (!/^0+$/.test(hex)) return hex // all-zero ids are invalid
  }
}

/** A new random trace id (32 hex). */
export const newTraceId = (): string => randomHex(16)
/** A new random span id (16 hex). */
export const newSpanId = (): string => randomHex(8)

/**
 * The `traceparent` to send upstream when this proxy did not create a span:
 * keep the caller's trace (new parent id, same flags) or start a new unsampled one.
 */
export const propagateTraceparent = (incoming: TraceContext | undefined): string =>
  incoming !== undefined
    ? formatTraceparent({ traceId: incoming.traceId, spanId: newSpanId(), sampled: incoming.sampled })
    : formatTraceparent({ traceId: newTraceId(), spanId: newSpanId(), sampled: false })

/** The incoming context as the parent of an Effect span (`Effect.withSpan(name, { parent })`). */
export const externalParent = (ctx: TraceContext): Tracer.ExternalSpan =>
  Tracer.externalSpan({ traceId: ctx.traceId, spanId: ctx.spanId, sampled: ctx.sampled })

/**
 * The `traceparent` of the current Effect span (to send upstream from inside
 * a sampled request), or undefined outside any span.
 */
export const currentTraceparent: Effect.Effect<string | undefined> = Effect.map(Effect.currentSpan, (span) =>
  formatTraceparent({ traceId: span.traceId, spanId: span.spanId, sampled: span.sampled })
).pipe(Effect.orElseSucceed(() => undefined))
