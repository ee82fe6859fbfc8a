/**
 * Hash-based placement used by the balancer: a murmur3 string hash, a consistent-hash ring
 * with virtual nodes, and a Maglev lookup table. Built once per (re)configuration; lookups
 * are allocation-light and bounded.
 */

/** murmur3 x86 32-bit over the UTF-16 code units of `key` (stable, well mixed, fast). */
export const murmur3 = (key: string, seed = 0): number => {
  let h = seed >>> 0
  const len = key.length
  let i = 0
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  for (; i + 1 < len; i += 2) {
    let k = (key.charCodeAt(i) & 0xffff) | ((key.charCodeAt(i + 1) & 0xffff) << 16)
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  if (i < len) {
    let k = key.charCodeAt(i) & 0xffff
    k = Math.imul(k, c1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, c2)
    h ^= k
  }
  h ^= len
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export interface HashTarget {
  /** Stable identity (e.g. "host:port"); placement depends on it, not on the index. */
  readonly id: string
  readonly weight: number
}

/** Consistent-hash ring (ketama style): `virtualNodes` points per unit of weight. */
export class HashRing {
  private readonly points: Uint32Array
  private readonly owners: Uint32Array
  private readonly distinct: number

  constructor(targets: ReadonlyArray<HashTarget>, virtualNodes = 160) {
    const entries: Array<[number, number]> = []
    targets.forEach((t, index) => {
      // bounded: a huge weight must not build a huge ring
      const n = Math.min(Math.max(0, Math.round(virtualNodes * t.weight)), 100_000)
      for (let v = 0; v < n; v++) entries.push([murmur3(`${t.id}#${v}`), index])
    })
    entries.sort((a, b) => a[0] - b[0] || a[1] - b[1])
    this.points = Uint32Array.from(entries, (e) => e[0])
    this.owners = Uint32Array.from(entries, (e) => e[1])
    this.distinct = new Set(this.owners).size
  }

  /** Up to `max` distinct target indices, clockwise from the key's hash. */
  lookup(hash: number, max: number): number[] {
    const out: number[] = []
    const n = this.points.length
    if (n === 0 || max <= 0) return out
    let lo = 0
    let hi = n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.points[mid] < hash) lo = mid + 1
      else hi = mid
    }
    const want = Math.min(max, this.distinct)
    for (let k = 0; k < n && out.length < want; k++) {
      const owner = this.owners[(lo + k) % n]
      if (!out.includes(owner)) out.push(owner)
    }
    return out
  }
}

const isPrime = (n: number): boolean => {
  if (n < 2) return false
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false
  return true
}

/** Maglev lookup table (Eisenbud et al., NSDI'16), weighted by turns per round. */
export class MaglevTable {
  readonly size: number
  private readonly table: Int32Array
  private readonly distinct: number

  /** `size` should be a prime well above the number of targets (default 65537). */
  constructor(targets: ReadonlyArray<HashTarget>, size = 65537) {
    let m = Math.max(size, 7)
    while (!isPrime(m)) m++
    this.size = m
    this.table = new Int32Array(m).fill(-1)
    const live = targets.map((t, index) => ({ t, index })).filter((x) => x.t.weight > 0)
    this.distinct = live.length
    if (live.length === 0) return
    const offset = live.map((x) => murmur3(x.t.id, 0xabc) % m)
    const skip = live.map((x) => (murmur3(x.t.id, 0x123) % (m - 1)) + 1)
    const next = live.map(() => 0)
    const maxW = Math.max(...live.map((x) => x.t.weight))
    const credit = live.map(() => 0)
    let filled = 0
    while (filled < m) {
      for (let i = 0; i < live.length && filled < m; i++) {
        // weight by turns: a target fills a slot in a round when its accumulated credit allows
        credit[i] += live[i].t.weight / maxW
        if (credit[i] < 1) continue
        credit[i] -= 1
        let c = (offset[i] + next[i] * skip[i]) % m
        while (this.table[c] >= 0) {
          next[i]++
          c = (offset[i] + next[i] * skip[i]) % m
        }
        this.table[c] = live[i].index
        next[i]++
        filled++
      }
    }
  }

  /** Up to `max` distinct target indices: the key's entry, then following entries. */
  lookup(hash: number, max: number): number[] {
    const out: number[] = []
    if (this.distinct === 0 || max <= 0) return out
    const want = Math.min(max, this.distinct)
    const start = hash % this.size
    for (let k = 0; k < this.size && out.length < want; k++) {
      const owner = this.table[(start + k) % this.size]
      if (!out.includes(owner)) out.push(owner)
    }
    return out
  }
}
