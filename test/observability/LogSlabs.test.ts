/**
 * The log writer's byte slabs are reused once written (src/observability/LogSlabs.ts), for its own
 * file stream only, and never while a region of them is still waiting or in flight.
 */
import fc from "fast-check"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Writable } from "node:stream"
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import { makeSlabPool, type Slab } from "../../src/observability/LogSlabs.js"
import { makeLogWriter } from "../../src/observability/LogWriter.js"

let dir: string
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-slabs-"))
})
afterEach(() => {
  vi.restoreAllMocks()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** A line of about 1 KiB that says which one it is (an overwritten slab would show). */
const line = (i: number) => `${i} ${"x".repeat(1000)} ${i}`
const ROUNDS = 40
const PER_ROUND = 300 // ~300 KiB: more than one slab (256 KiB) per round

describe("log slabs", () => {
  it("a file log written for a while reuses its slabs: every line arrives once, in order, intact", async () => {
    const alloc = vi.spyOn(Buffer, "allocUnsafeSlow")
    const file = path.join(dir, "access.log")
    const w = makeLogWriter({ name: "access", file })
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < PER_ROUND; i++) w.write(line(r * PER_ROUND + i))
      await w.flush()
    }
    await w.close()
    const got = fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "")
    expect(got.length).toBe(ROUNDS * PER_ROUND)
    got.forEach((l, i) => {
      if (l !== line(i)) expect(l).toBe(line(i)) // one failure message, not 12000
    })
    // ~47 slabs' worth of lines; without reuse every one of them is a new allocation
    expect(alloc.mock.calls.filter(([n]) => n === 256 * 1024).length).toBeLessThanOrEqual(4)
  })

  it("a custom sink may keep its chunks: they are never written over, so its slabs are new ones", async () => {
    const alloc = vi.spyOn(Buffer, "allocUnsafeSlow")
    const kept: Array<{ chunk: Buffer; copy: string }> = []
    const sink = () =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          kept.push({ chunk, copy: chunk.toString("latin1") })
          setImmediate(cb)
        }
      })
    const w = makeLogWriter({ name: "access", sink })
    for (let r = 0; r < 10; r++) {
      for (let i = 0; i < PER_ROUND; i++) w.write(line(r * PER_ROUND + i))
      await w.flush()
    }
    await w.close()
    expect(kept.length).toBeGreaterThan(10)
    for (const k of kept) if (k.chunk.toString("latin1") !== k.copy) expect(k.chunk.toString("latin1")).toBe(k.copy)
    expect(alloc.mock.calls.filter(([n]) => n === 256 * 1024).length).toBeGreaterThanOrEqual(10)
  })

  it("the pool never hands out a slab that is in use or has regions not yet written (property)", () => {
    // ops: 0 take a new current slab (retiring the last), 1 seal a region of the current one,
    // 2 the oldest region in flight is written
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 200 }), fc.integer({ min: 0, max: 3 }), (ops, keep) => {
        const pool = makeSlabPool(64, keep, true)
        let current: Slab | undefined
        const inFlight: Array<Slab> = []
        const live = new Set<Buffer>()
        for (const op of ops) {
          if (op === 0) {
            if (current !== undefined) pool.retire(current)
            if (current !== undefined && current.pending === 0) live.delete(current.bytes)
            current = pool.take(10)
            expect(live.has(current.bytes)).toBe(false)
            expect(current.bytes.length).toBe(64)
            live.add(current.bytes)
          } else if (op === 1 && current !== undefined) {
            current.pending++
            inFlight.push(current)
          } else if (op === 2 && inFlight.length > 0) {
            const s = inFlight.shift()!
            pool.written(s)
            if (s.retired && s.pending === 0) live.delete(s.bytes)
          }
        }
      })
    )
  })

  it("a line larger than a slab gets a slab of its own size, never a reused smaller one", () => {
    const pool = makeSlabPool(64, 2, true)
    const a = pool.take(10)
    pool.retire(a)
    const big = pool.take(100)
    expect(big.bytes.length).toBe(100)
    expect(big.bytes).not.toBe(a.bytes)
    expect(pool.take(10).bytes).toBe(a.bytes)
  })
})
