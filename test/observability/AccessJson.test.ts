/**
 * The hand-built access-log JSON line is byte-identical to the plain
 * JSON.stringify reference for any entry, including hostile strings.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { formatAccessJson, isoTimestamp, type AccessLogEntry } from "../../src/observability/Logs.js"

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
  error: opt
})

describe("access log JSON", () => {
  it("matches JSON.stringify of the entry for random entries", () => {
    fc.assert(fc.property(entry, (e) => formatAccessJson(e) === reference(e)), { numRuns: 2000 })
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
