/**
 * The hand-built access-log JSON line is byte-identical to the plain
 * JSON.stringify reference for any entry, including hostile strings.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { formatAccessJson, isoTimestamp, msText, type AccessLogEntry } from "../../src/observability/AccessFormat.js"

const reference = (e: AccessLogEntry): string =>
  JSON.stringify({
    timestamp: new Date(e.timestamp).toISOString(),
    trace_id: e.trace_id,
    method: e.method,
    path: e.path,
    query: e.query ?? null,
    protocol: e.protocol,
    status: e.status,
    body_bytes: e.body_bytes,
    duration_ms: Math.round(e.duration_ms * 1000) / 1000,
    client_ip: e.client_ip,
    user_agent: e.user_agent ?? null,
    referer: e.referer ?? null,
    host: e.host ?? null,
    route_id: e.route_id ?? null,
    upstream: e.upstream ?? null,
    upstream_attempts: e.upstream_attempts,
    upstream_addr: e.upstream_addr ?? null,
    instance_id: e.instance_id,
    body_bytes_sent: e.body_bytes_sent,
    ...(e.compression !== undefined ? { compression: e.compression } : {}),
    ...(e.error !== undefined ? { error: e.error } : {})
  })

const text = fc.oneof(fc.string(), fc.fullUnicodeString(), fc.constantFrom("/a/b", 'q"x', "a\\b", "\u0000\n\t", "\u2028"))
const opt = fc.option(text, { nil: undefined })
const entry: fc.Arbitrary<AccessLogEntry> = fc.record({
  timestamp: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  trace_id: text,
  method: text,
  path: text,
  query: opt,
  protocol: text,
  status: fc.integer({ min: 0, max: 999 }),
  body_bytes: fc.nat(),
  duration_ms: fc.double({ min: 0, max: 1e6, noNaN: true }),
  client_ip: text,
  user_agent: opt,
  referer: opt,
  host: opt,
  route_id: opt,
  upstream: opt,
  upstream_attempts: fc.nat(10),
  upstream_addr: opt,
  instance_id: text,
  body_bytes_sent: fc.nat(),
  compression: fc.option(fc.record({ encoding: fc.constantFrom("gzip", "br", "deflate"), bytes_in: fc.nat(), bytes_out: fc.nat() }), { nil: undefined }),
  error: opt
})

describe("access log JSON", () => {
  it("matches JSON.stringify of the entry for random entries", () => {
    fc.assert(fc.property(entry, (e) => formatAccessJson(e) === reference(e)), { numRuns: 2000 })
  })

  it("values repeated on every line (ids, methods, reasons: quoted once, then remembered) stay exact", () => {
    const few = fc.constantFrom("GET", "route-1", 'odd"id', "a\\b", "\u00e9t\u00e9", "upstream_timeout", "")
    const repeated = entry.chain((e) =>
      fc.record({ method: few, route_id: few, upstream: few, upstream_addr: few, error: few, protocol: few }).map((r) => ({ ...e, ...r }))
    )
    fc.assert(fc.property(repeated, (e) => formatAccessJson(e) === reference(e)), { numRuns: 1000 })
  })

  it("msText writes milliseconds as JSON.stringify writes them rounded to the microsecond", () => {
    const asJson = (n: number) => JSON.stringify(Math.round(n * 1000) / 1000)
    fc.assert(
      fc.property(fc.oneof(fc.double({ min: 0, max: 1e7, noNaN: true }), fc.integer({ min: 0, max: 5_000_000 }).map((us) => us / 1000)), (n) => msText(n) === asJson(n)),
      { numRuns: 5000 }
    )
    for (const n of [0, 0.0004, 0.0005, 0.001, 0.01, 0.1, 1, 1.5, 999.9995, 2 ** 31, 1e12]) expect(msText(n)).toBe(asJson(n))
  })

  it("isoTimestamp equals Date#toISOString, across second boundaries", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4_102_444_800_000 }), { maxLength: 20 }), (ts) =>
        ts.every((t) => isoTimestamp(t) === new Date(t).toISOString())
      ),
      { numRuns: 500 }
    )
    expect(isoTimestamp(999)).toBe("1970-01-01T00:00:00.999Z")
    expect(isoTimestamp(1000)).toBe("1970-01-01T00:00:01.000Z")
  })
})
