import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import fc from "fast-check"
import {
  currentTraceparent,
  decideSampled,
  externalParent,
  formatTraceparent,
  newSpanId,
  newTraceId,
  otlpTracesUrl,
  parseTraceparent,
  propagateTraceparent,
  tracingLayer
} from "../../src/observability/Tracing.js"
import { startOtlpCollector } from "../support/otlpCollector.js"

const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`))

describe("traceparent", () => {
  it("format/parse round-trip for any valid ids", () => {
    fc.assert(
      fc.property(hex(32), hex(16), fc.boolean(), (traceId, spanId, sampled) => {
        fc.pre(!/^0+$/.test(traceId) && !/^0+$/.test(spanId))
        const parsed = parseTraceparent(formatTraceparent({ traceId, spanId, sampled }))
        expect(parsed).toEqual({ traceId, spanId, sampled, flags: sampled ? 1 : 0 })
      })
    )
  })

  it("rejects invalid headers (spec examples)", () => {
    const valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    expect(parseTraceparent(valid)?.sampled).toBe(true)
    for (const bad of [
      undefined,
      "",
      [valid, valid],
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", // forbidden version
      "00-00000000000000000000000000000000-b7ad6b7169203331-01", // zero trace id
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", // zero span id
      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", // uppercase
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", // v00 has no extra fields
      "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01"
    ]) {
      expect(parseTraceparent(bad as string)).toBeUndefined()
    }
    // a future version may append fields
    expect(parseTraceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-whatever")?.traceId).toBe(
      "0af7651916cd43dd8448eb211c80319c"
    )
  })

  it("never throws on arbitrary input", () => {
    fc.assert(fc.property(fc.string(), (s) => void parseTraceparent(s)))
  })

  it("sampling: parent decides when parent-based, else the rate", () => {
    const sampledParent = parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    const unsampledParent = parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
    expect(decideSampled(sampledParent, 0)).toBe(true)
    expect(decideSampled(unsampledParent, 1)).toBe(false)
    expect(decideSampled(sampledParent, 0, { parentBased: false })).toBe(false)
    expect(decideSampled(undefined, 0.5, { random: () => 0.49 })).toBe(true)
    expect(decideSampled(undefined, 0.5, { random: () => 0.5 })).toBe(false)
    expect(decideSampled(undefined, 0)).toBe(false)
    expect(decideSampled(undefined, 1)).toBe(true)
    let hits = 0
    for (let i = 0; i < 20_000; i++) if (decideSampled(undefined, 0.1)) hits++
    expect(hits).toBeGreaterThan(1500)
    expect(hits).toBeLessThan(2500)
  })

  it("new ids are valid and distinct; propagation keeps the caller's trace", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newTraceId()))
    expect(ids.size).toBe(1000)
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/)
    expect(newSpanId()).toMatch(/^[0-9a-f]{16}$/)
    const incoming = parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")!
    const out = parseTraceparent(propagateTraceparent(incoming))!
    expect(out.traceId).toBe(incoming.traceId)
    expect(out.spanId).not.toBe(incoming.spanId)
    expect(out.sampled).toBe(true)
    expect(parseTraceparent(propagateTraceparent(undefined))?.sampled).toBe(false)
  })

  it("OTLP URL", () => {
    expect(otlpTracesUrl("http://c:4318")).toBe("http://c:4318/v1/traces")
    expect(otlpTracesUrl("http://c:4318/")).toBe("http://c:4318/v1/traces")
    expect(otlpTracesUrl("http://c:4318/v1/traces")).toBe("http://c:4318/v1/traces")
  })
})

describe("tracingLayer", () => {
  it("exports a span to the collector with the service name and the incoming parent", async () => {
    // Invariant: a sampled request's span reaches the OTLP collector, child of the caller's traceparent.
    const collector = await startOtlpCollector()
    try {
      const incoming = parseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")!
      const program = Effect.gen(function* () {
        const scope = yield* Scope.make()
        const ctx = yield* Layer.buildWithScope(
          tracingLayer({ endpoint: `http://127.0.0.1:${collector.port}`, serviceName: "sentinel-test", scheduledDelayMs: 50 }),
          scope
        )
        const outgoing = yield* currentTraceparent.pipe(
          Effect.withSpan("proxy.request", { parent: externalParent(incoming), kind: "server", attributes: { "http.method": "GET" } }),
          Effect.provide(ctx)
        )
        // closing the layer flushes the batch processor
        yield* Scope.close(scope, Exit.void)
        return outgoing
      })
      const outgoing = await Effect.runPromise(program)
      const sent = parseTraceparent(outgoing)!
      expect(sent.traceId).toBe(incoming.traceId)
      expect(sent.sampled).toBe(true)

      expect(collector.bodies.length).toBeGreaterThan(0)
      const resourceSpans = collector.bodies.flatMap((b) => b.resourceSpans)
      const serviceName = resourceSpans[0].resource.attributes.find((a: any) => a.key === "service.name")
      expect(serviceName.value.stringValue).toBe("sentinel-test")
      const spans = resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans))
      const span = spans.find((s: any) => s.name === "proxy.request")
      expect(span).toBeDefined()
      expect(span.traceId).toBe(incoming.traceId)
      expect(span.parentSpanId).toBe(incoming.spanId)
      expect(span.spanId).toBe(sent.spanId)
    } finally {
      await collector.close()
    }
  })

  it("a collector that is down does not fail or hang the program", async () => {
    const collector = await startOtlpCollector()
    await collector.close() // the port now refuses
    const t0 = Date.now()
    await Effect.runPromise(
      Effect.void.pipe(
        Effect.withSpan("x"),
        Effect.provide(
          tracingLayer({ endpoint: `http://127.0.0.1:${collector.port}`, shutdownTimeoutMs: 1000, exportTimeoutMs: 500 })
        )
      )
    )
    expect(Date.now() - t0).toBeLessThan(5000)
  })
})
