/**
 * The compress filter's synchronous encoder needs node:zlib's stream handle: the check runs when
 * a `compress` filter is compiled, not when the module loads, and a node without the handle is
 * told plainly what it lacks.
 */
import { afterEach, describe, expect, it, vi } from "vitest"

afterEach(() => {
  vi.doUnmock("node:zlib")
  vi.resetModules()
})

const withoutHandle = async (): Promise<{ made: () => number }> => {
  let made = 0
  vi.resetModules()
  vi.doMock("node:zlib", async (original) => {
    const zlib = await original<typeof import("node:zlib")>()
    return {
      ...zlib,
      createGzip: (...args: Parameters<typeof zlib.createGzip>) => {
        made++
        const g = zlib.createGzip(...args)
        // a node whose zlib streams have no `_handle` (what the encoder drives)
        Object.defineProperty(g, "_handle", { value: null })
        return g
      }
    }
  })
  return { made: () => made }
}

describe("compress encoder support", () => {
  it("loading the module makes no zlib state; compiling a compress filter on a node without the handle fails with the reason", async () => {
    const zlib = await withoutHandle()
    const { requireEncoderSupport } = await import("../../src/filters/BodyEncoder.js")
    expect(zlib.made()).toBe(0)
    expect(() => requireEncoderSupport()).toThrow(/compress filter needs node:zlib's stream handle .*which node v\d+/)
    expect(zlib.made()).toBe(1)
    // checked once
    expect(() => requireEncoderSupport()).toThrow(/stream handle/)
    expect(zlib.made()).toBe(1)
  })

  it("this node has the handle: the check passes", async () => {
    vi.resetModules()
    const { requireEncoderSupport } = await import("../../src/filters/BodyEncoder.js")
    expect(() => requireEncoderSupport()).not.toThrow()
  })
})
