/**
 * Accept-Encoding negotiation (RFC 9110 §12.5.3) and the head edits of a re-encoded response,
 * as pure functions: named cases, and properties checked against a direct reading of the RFC.
 */
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compressResponse, defaultCompressConfig, typeListed } from "../../src/filters/Compress.js"
import {
  acceptEncodingWeights, type ContentCoding, hasDirective, negotiateEncoding, varyWith, weakEtag
} from "../../src/http/ContentCoding.js"

const both: ReadonlyArray<ContentCoding> = ["gzip", "br"]

describe("negotiateEncoding", () => {
  it.each([
    [undefined, null],
    ["", null],
    ["gzip", "gzip"],
    ["br", "br"],
    ["gzip, deflate, br", "gzip"],
    ["br;q=1, gzip;q=0.8", "br"],
    ["gzip;q=0.5, br;q=0.9", "br"],
    ["GZIP", "gzip"],
    ["x-gzip", "gzip"],
    ["*", "gzip"],
    ["*;q=0.1, br;q=0.2", "br"],
    ["gzip;q=0, br;q=0", null],
    ["gzip;q=0", null],
    ["identity", null],
    ["identity;q=1, *;q=0", null],
    ["*;q=0", null],
    ["deflate", null],
    ["gzip;q=1.5", null],
    ["gzip;q=abc, br", "br"],
    ["gzip ; q=0.001", "gzip"],
    ["gzip;q=0.0000", null],
    [" , ,gzip", "gzip"],
    ["gzip;level=9", "gzip"],
    ["gzip;q=0, gzip;q=1", null]
  ] as const)("%j -> %j", (header, want) => {
    expect(negotiateEncoding(header, both)).toBe(want)
  })

  it("ties go to the server's order of preference", () => {
    expect(negotiateEncoding("gzip, br", ["br", "gzip"])).toBe("br")
    expect(negotiateEncoding("gzip, br", ["gzip", "br"])).toBe("gzip")
    expect(negotiateEncoding("*", ["deflate", "gzip"])).toBe("deflate")
  })

  // A direct reading of RFC 9110 §12.5.3, used as the oracle of the properties below.
  const oracle = (elements: ReadonlyArray<{ name: string; q: string | undefined }>, offered: ReadonlyArray<ContentCoding>) => {
    const weight = (c: string): number => {
      const own = elements.find((e) => (e.name.toLowerCase() === "x-gzip" ? "gzip" : e.name.toLowerCase()) === c)
      const star = elements.find((e) => e.name === "*")
      const hit = own ?? star
      if (hit === undefined) return 0
      if (hit.q === undefined) return 1
      return /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(hit.q) ? Number(hit.q) : 0
    }
    return offered.map((c) => ({ c, q: weight(c) }))
  }
  const element = fc.record({
    name: fc.constantFrom("gzip", "GZip", "x-gzip", "br", "deflate", "identity", "*", "compress", "zstd"),
    q: fc.option(fc.constantFrom("0", "0.0", "0.001", "0.5", "0.9", "1", "1.0", "1.000", "2", "-1", "0.0001", "x", ""), { nil: undefined })
  })
  const offeredArb = fc.shuffledSubarray(["gzip", "br", "deflate"] as Array<ContentCoding>, { minLength: 1 })
  const render = (es: ReadonlyArray<{ name: string; q: string | undefined }>) =>
    es.map((e) => (e.q === undefined ? e.name : `${e.name};q=${e.q}`)).join(", ")

  it("property: the choice is offered, accepted (q > 0) and no offered coding weighs more; null only when none is acceptable", () => {
    fc.assert(
      fc.property(fc.array(element, { minLength: 1, maxLength: 6 }), offeredArb, (es, offered) => {
        // the first mention of a coding counts
        const seen = new Set<string>()
        const firsts = es.filter((e) => {
          const k = e.name.toLowerCase() === "x-gzip" ? "gzip" : e.name.toLowerCase()
          if (seen.has(k)) return false
          seen.add(k)
          return true
        })
        const weights = oracle(firsts, offered)
        const got = negotiateEncoding(render(es), offered)
        const best = Math.max(...weights.map((w) => w.q))
        if (got === null) {
          expect(best).toBe(0)
        } else {
          expect(offered).toContain(got)
          const q = weights.find((w) => w.c === got)!.q
          expect(q).toBeGreaterThan(0)
          expect(q).toBe(best)
          // ties: the earliest offered of the best
          expect(got).toBe(weights.find((w) => w.q === best)!.c)
        }
      })
    )
  })

  it("property: identity-only and refusing headers never get a coding", () => {
    const refusing = fc.constantFrom("identity", "identity;q=1", "*;q=0", "gzip;q=0, br;q=0, deflate;q=0", "identity, *;q=0")
    fc.assert(
      fc.property(refusing, offeredArb, (h, offered) => {
        expect(negotiateEncoding(h, offered)).toBeNull()
      })
    )
  })

  it("property: parsing never throws and weights stay within [0, 1]", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (h) => {
        for (const q of acceptEncodingWeights(h).values()) expect(q >= 0 && q <= 1).toBe(true)
        negotiateEncoding(h, both)
      })
    )
  })
})

describe("head helpers", () => {
  it("weak ETags, Vary merging, Cache-Control directives, listed types", () => {
    expect(weakEtag('"abc"')).toBe('W/"abc"')
    expect(weakEtag('W/"abc"')).toBe('W/"abc"')
    expect(varyWith(undefined, "Accept-Encoding")).toBe("Accept-Encoding")
    expect(varyWith("Origin", "Accept-Encoding")).toBe("Origin, Accept-Encoding")
    expect(varyWith("origin, accept-encoding", "Accept-Encoding")).toBeUndefined()
    expect(varyWith("*", "Accept-Encoding")).toBeUndefined()
    expect(hasDirective("public, No-Transform", "no-transform")).toBe(true)
    expect(hasDirective("max-age=60, x-no-transform", "no-transform")).toBe(false)
    expect(typeListed(["text/*"], "text/csv")).toBe(true)
    expect(typeListed(["text/"], "text/csv")).toBe(true)
    expect(typeListed(["text/html"], "text/htmlx")).toBe(false)
    expect(typeListed(["application/json"], "")).toBe(false)
  })

  it("a compressed head: no Content-Length or Accept-Ranges, the coding, a weak ETag, Vary merged into one field", () => {
    const flat = ["Content-Type", "application/json; charset=utf-8", "Content-Length", "5000", "ETag", '"v1"', "Vary", "Origin", "Accept-Ranges", "bytes"]
    const d = compressResponse(defaultCompressConfig, "GET", "gzip", 200, flat)
    expect(d._tag).toBe("Compress")
    if (d._tag === "Compress") d.encoder.discard()
    expect(flat).toEqual(["Content-Type", "application/json; charset=utf-8", "ETag", 'W/"v1"', "vary", "Origin, Accept-Encoding", "content-encoding", "gzip"])
  })

  it("HEAD and a client that did not ask: sent as is, but Vary says it depends on Accept-Encoding", () => {
    for (const [method, ae, reason] of [["HEAD", "gzip", "head"], ["GET", undefined, "not-accepted"], ["GET", "identity", "not-accepted"]] as const) {
      const flat = ["content-type", "text/html", "content-length", "5000"]
      expect(compressResponse(defaultCompressConfig, method, ae, 200, flat)).toEqual({ _tag: "Skip", reason })
      expect(flat).toEqual(["content-type", "text/html", "content-length", "5000", "vary", "Accept-Encoding"])
    }
  })

  it.each([
    [200, ["content-type", "text/html", "content-length", "10"], "size"],
    [200, ["content-type", "text/html", "content-length", "0"], "size"],
    [200, ["content-type", "image/png", "content-length", "5000"], "type"],
    [200, ["content-length", "5000"], "type"],
    [200, ["content-type", "text/html", "content-encoding", "br"], "encoded"],
    [200, ["content-type", "text/html", "cache-control", "public", "cache-control", "no-transform"], "no-transform"],
    [206, ["content-type", "text/html", "content-range", "bytes 0-9/5000"], "range"],
    [200, ["content-type", "text/html", "content-range", "bytes 0-9/5000"], "range"],
    [204, [], "status"],
    [304, ["etag", '"v1"'], "status"],
    [101, [], "status"]
  ] as const)("status %i %j: sent as is (%s), head untouched", (status, head, reason) => {
    const flat = [...head]
    expect(compressResponse(defaultCompressConfig, "GET", "gzip, br", status, flat)).toEqual({ _tag: "Skip", reason })
    expect(flat).toEqual(head)
  })
})
