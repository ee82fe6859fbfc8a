import { assert, describe, it } from "@effect/vitest"
import { HashRing, MaglevTable, murmur3 } from "../../src/upstream/Hashing.js"

describe("Hashing", () => {
  it("murmur3 is pinned: changing it would move every hashed key and invalidate sticky cookies", () => {
    assert.deepStrictEqual([murmur3(""), murmur3("a"), murmur3("10.0.0.1:8080"), murmur3("héllo", 42)], PINNED)
  })

  it("maglev fills every slot and shares them by weight; ring and table lookups are bounded", () => {
    const targets = [
      { id: "a", weight: 1 },
      { id: "b", weight: 3 },
      { id: "off", weight: 0 }
    ]
    const table = new MaglevTable(targets, 1009)
    const counts = [0, 0, 0]
    for (let h = 0; h < table.size; h++) counts[table.lookup(h, 1)[0]]++
    assert.strictEqual(counts[0] + counts[1], table.size)
    assert.strictEqual(counts[2], 0)
    assert.approximately(counts[1] / table.size, 0.75, 0.02)
    assert.deepStrictEqual(new MaglevTable(targets, 1009).lookup(7, 10).sort(), [0, 1])
    assert.deepStrictEqual(new HashRing(targets).lookup(12345, 10).sort(), [0, 1])
    assert.deepStrictEqual(new HashRing([]).lookup(1, 3), [])
    assert.deepStrictEqual(new MaglevTable([], 7).lookup(1, 3), [])
  })
})

const PINNED = [0, 1009084850, 4022786657, 3994919549]
