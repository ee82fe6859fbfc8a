/**
 * The synchronous body encoder (src/filters/BodyEncoder.ts): bytes in, the same bytes back out
 * of node's own decoders whatever the chunking; pooled gzip/deflate states are reset and reused
 * cleanly; an unfinished body never returns its state to the pool; input is gathered up to
 * ENCODER_INPUT_BATCH and no more (output flows before the end for a large body).
 */
import { randomBytes } from "node:crypto"
import { brotliDecompressSync, constants, gunzipSync, inflateSync } from "node:zlib"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { createBodyEncoder, ENCODER_INPUT_BATCH, idleEncoders, POOL_IDLE } from "../../src/filters/BodyEncoder.js"
import type { ContentCoding } from "../../src/http/ContentCoding.js"

const decode: Record<ContentCoding, (b: Buffer) => Buffer> = { gzip: gunzipSync, deflate: inflateSync, br: brotliDecompressSync }
const brParams = { [constants.BROTLI_PARAM_QUALITY]: 4 }

/** Encodes `chunks` as one body; returns the encoded bytes and how many came out before `finish`. */
const encode = (coding: ContentCoding, chunks: ReadonlyArray<Buffer>, level = 6): { body: Buffer; early: number } => {
  const e = createBodyEncoder(coding, level, coding === "br" ? brParams : {})
  const out: Array<Buffer> = []
  // copies: the pieces are slices of the encoder's output buffer, valid as handed over
  const emit = (b: Buffer) => out.push(Buffer.from(b))
  for (const c of chunks) e.write(c, emit)
  const early = out.reduce((n, b) => n + b.length, 0)
  e.finish(emit)
  return { body: Buffer.concat(out), early }
}

const text = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => `{"id":${i},"v":"item-${i % 97}"}`).join(",")).subarray(0, n)

describe("BodyEncoder", () => {
  it("round trips any chunking of any body, for every coding (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ContentCoding>("gzip", "deflate", "br"),
        fc.array(fc.uint8Array({ maxLength: 40_000 }), { maxLength: 8 }),
        fc.boolean(),
        (coding, parts, compressible) => {
          const chunks = parts.map((p, i) => (compressible ? text(p.length + i) : Buffer.from(p)))
          const { body } = encode(coding, chunks)
          expect(decode[coding](body).equals(Buffer.concat(chunks))).toBe(true)
        }
      ),
      { numRuns: 60 }
    )
  })

  it("a pooled state is reset between bodies: each decodes alone, and the pool stays bounded", () => {
    // a full batch each: every body holds a state at once, more than the pool keeps
    const bodies = Array.from({ length: POOL_IDLE + 3 }, (_, i) => text(ENCODER_INPUT_BATCH + i * 1000))
    const encoders = bodies.map(() => createBodyEncoder("gzip", 3, {}))
    const outs: Array<Array<Buffer>> = bodies.map(() => [])
    bodies.forEach((b, i) => encoders[i].write(b, (p) => outs[i].push(Buffer.from(p))))
    expect(idleEncoders("gzip", 3)).toBe(0)
    encoders.forEach((e, i) => e.finish((p) => outs[i].push(Buffer.from(p))))
    const joined = outs.map((o) => Buffer.concat(o))
    joined.forEach((o, i) => expect(gunzipSync(o).equals(bodies[i])).toBe(true))
    expect(idleEncoders("gzip", 3)).toBe(POOL_IDLE)
    // the reused states give byte-identical output to fresh ones
    const again = encode("gzip", [bodies[0]], 3).body
    expect(again.equals(joined[0])).toBe(true)
  })

  it("a body cut short (discard) leaves its state out of the pool; finish or write after it throw", () => {
    encode("deflate", [text(3000)], 2) // one idle state for deflate:2
    const before = idleEncoders("deflate", 2)
    const e = createBodyEncoder("deflate", 2, {})
    expect(idleEncoders("deflate", 2)).toBe(before) // taken only when zlib first runs
    e.write(randomBytes(ENCODER_INPUT_BATCH), () => undefined) // a full batch: the state is taken
    expect(idleEncoders("deflate", 2)).toBe(before - 1)
    e.discard()
    e.discard()
    expect(idleEncoders("deflate", 2)).toBe(before - 1)
    expect(() => e.finish(() => undefined)).toThrow(/closed/)
    expect(() => e.write(Buffer.from("x"), () => undefined)).toThrow(/closed/)
  })

  it("input is held up to one batch: a large body's output flows before its end, a small one's at the end", () => {
    const small = encode("gzip", [randomBytes(ENCODER_INPUT_BATCH - 1)])
    expect(small.early).toBe(0)
    const large = encode("gzip", Array.from({ length: 8 }, () => randomBytes(ENCODER_INPUT_BATCH / 2)))
    // incompressible: most of the 256 KiB is out before finish
    expect(large.early).toBeGreaterThan(3 * ENCODER_INPUT_BATCH)
    expect(gunzipSync(large.body).length).toBe(4 * ENCODER_INPUT_BATCH)
  })
})
