/**
 * Label-limiting primitives over prom-client: each labelled metric keeps at most
 * `maxSeriesPerMetric` distinct label sets; further ones are counted under the label set where
 * every value is "other" (the overflow is reported to the caller, which counts it in
 * `sentinel_metric_series_overflow_total{metric}`). Children find their series entry once and
 * update it in place (prom-client's own `inc`/`observe` rebuild the key on every call).
 */
import { Counter, Gauge, Histogram } from "prom-client"

export type LabelValues<L extends ReadonlyArray<string>> = { readonly [K in keyof L]: string | number }

/** The value every label takes once a metric has reached its series cap. */
export const OVERFLOW_LABEL = "other"

const SEP = "\u0001"

export type Overflow = (metric: string) => void

/** Shared bookkeeping: the child cache and the cardinality cap. */
class BoundedChildren<C> {
  private readonly children = new Map<string, C>()
  private overflowChild: C | undefined

  constructor(
    readonly name: string,
    private readonly arity: number,
    private readonly maxSeries: number,
    private readonly bind: (values: Array<string>) => C,
    private readonly onOverflow: Overflow
  ) {}

  get(values: ReadonlyArray<string | number>): C {
    const key = values.length === 1 ? String(values[0]) : values.join(SEP)
    const hit = this.children.get(key)
    if (hit !== undefined) return hit
    if (this.children.size >= this.maxSeries) {
      this.onOverflow(this.name)
      if (this.overflowChild === undefined) {
        this.overflowChild = this.bind(new Array<string>(this.arity).fill(OVERFLOW_LABEL))
      }
      return this.overflowChild
    }
    const child = this.bind(values.map(String))
    this.children.set(key, child)
    return child
  }

  /** Forgets one label set (e.g. an upstream removed by a reload). */
  delete(values: ReadonlyArray<string | number>): boolean {
    return this.children.delete(values.length === 1 ? String(values[0]) : values.join(SEP))
  }

  get size(): number {
    return this.children.size
  }

  /** The label values of every series kept (reload-time bookkeeping, not the hot path). */
  labelSets(): Array<Array<string>> {
    return [...this.children.keys()].map((k) => k.split(SEP))
  }
}

/**
 * Pre-bound children by two label values, looked up with two Map reads and no key
 * string: for callers on the per-attempt path. `bind` goes through the metric's
 * `Bounded*` cache (and its series cap) once per pair, so a pair mapped to "other" is
 * counted in `sentinel_metric_series_overflow_total` once, not at every use.
 */
export class ChildPairs<C> {
  private readonly byFirst = new Map<string, Map<string, C>>()
  constructor(
    private readonly bind: (a: string, b: string) => C,
    /** Second values kept per first value (for client-chosen ones); `find` says no past it. */
    private readonly maxPerFirst = Infinity
  ) {}
  get(a: string, b: string): C {
    return this.find(a, b)!
  }
  /** `get`, or undefined when `b` is new and `a` already holds `maxPerFirst` second values. */
  find(a: string, b: string): C | undefined {
    let inner = this.byFirst.get(a)
    if (inner === undefined) {
      inner = new Map()
      this.byFirst.set(a, inner)
    }
    let child = inner.get(b)
    if (child === undefined) {
      if (inner.size >= this.maxPerFirst) return undefined
      child = this.bind(a, b)
      inner.set(b, child)
    }
    return child
  }
  /** Forgets every pair starting with `a` (an upstream removed by a reload). */
  forget(a: string): void {
    this.byFirst.delete(a)
  }
  /** The first label values seen. */
  firsts(): Array<string> {
    return [...this.byFirst.keys()]
  }
}

/** What a counter series takes (prom-client's `Counter.Internal`, minus exemplars). */
export interface CounterChild {
  inc(value?: number): void
}
/** What a histogram series takes. */
export interface HistogramChild {
  observe(value: number): void
}

/**
 * prom-client (15.x, pinned) keeps each series as an entry of the metric's `hashMap`
 * (`{ value }` for a counter, `{ sum, count, bucketValues }` for a histogram) and its own
 * `inc`/`observe` rebuild the entry's key from a labels object on every call (allocation,
 * validation, string building). These children go through prom-client once, find their
 * entry by its labels object, and then update it in place. An entry that went away (reset,
 * removal) or is not theirs sends them through prom-client again. The metrics tests check
 * the exported text, so a prom-client upgrade that changes these internals fails them.
 */
interface SeriesEntry {
  readonly labels: object
}
const entryKey = (metric: object, labels: object): string | undefined => {
  const map = (metric as { hashMap: Record<string, SeriesEntry | undefined> }).hashMap
  for (const k in map) if (map[k]?.labels === labels) return k
  return undefined
}
const labelObject = (names: ReadonlyArray<string>, values: ReadonlyArray<string>): Record<string, string> => {
  const labels: Record<string, string> = {}
  for (let i = 0; i < names.length; i++) labels[names[i]] = values[i]
  return labels
}

class FastCounterChild implements CounterChild {
  private key: string | undefined
  constructor(
    private readonly metric: Counter<string>,
    private readonly labels: Record<string, string>
  ) {}
  inc(value = 1): void {
    if (this.key !== undefined && value >= 0 && Number.isFinite(value)) {
      const e = (this.metric as unknown as { hashMap: Record<string, { labels: object; value: number } | undefined> }).hashMap[this.key]
      if (e !== undefined && e.labels === this.labels) {
        e.value += value
        return
      }
    }
    this.metric.inc(this.labels, value)
    this.key = entryKey(this.metric, this.labels)
  }
}

interface HistogramEntry extends SeriesEntry {
  sum: number
  count: number
  readonly bucketValues: Record<number, number>
}

class FastHistogramChild implements HistogramChild {
  private key: string | undefined
  private readonly bounds: ReadonlyArray<number>
  /**
   * `String(bound)` of each bound: the keys of the entry's `bucketValues`. Indexing it by the
   * number itself converts the number to a string on every access (about 5x slower).
   */
  private readonly bucketKeys: ReadonlyArray<string>
  constructor(
    private readonly metric: Histogram<string>,
    private readonly labels: Record<string, string>
  ) {
    this.bounds = (metric as unknown as { upperBounds: ReadonlyArray<number> }).upperBounds
    this.bucketKeys = this.bounds.map(String)
  }
  observe(value: number): void {
    if (this.key !== undefined && Number.isFinite(value)) {
      const e = (this.metric as unknown as { hashMap: Record<string, HistogramEntry | undefined> }).hashMap[this.key]
      if (e !== undefined && e.labels === this.labels) {
        e.sum += value
        e.count += 1
        const bounds = this.bounds
        for (let i = 0; i < bounds.length; i++) {
          if (value <= bounds[i]) {
            ;(e.bucketValues as unknown as Record<string, number>)[this.bucketKeys[i]] += 1
            break
          }
        }
        return
      }
    }
    this.metric.observe(this.labels, value)
    this.key = entryKey(this.metric, this.labels)
  }
}

/** A counter with positional labels, cached children and a series cap. */
export class BoundedCounter<L extends ReadonlyArray<string>> {
  private readonly children: BoundedChildren<CounterChild>
  constructor(readonly metric: Counter<string>, name: string, arity: number, maxSeries: number, onOverflow: Overflow, labelNames: ReadonlyArray<string>) {
    this.children = new BoundedChildren(name, arity, maxSeries, (v) => new FastCounterChild(metric, labelObject(labelNames, v)), onOverflow)
  }
  /** Adds 1 to the series of these label values. */
  inc(...values: LabelValues<L>): void {
    this.children.get(values).inc()
  }
  /** Adds `n` (>= 0) to the series of these label values. */
  add(n: number, ...values: LabelValues<L>): void {
    this.children.get(values).inc(n)
  }
  /** The pre-bound child, for a caller that wants to keep it (e.g. per route). */
  child(...values: LabelValues<L>): CounterChild {
    return this.children.get(values)
  }
  get series(): number {
    return this.children.size
  }
}

/** A gauge with positional labels, cached children and a series cap. */
export class BoundedGauge<L extends ReadonlyArray<string>> {
  private readonly children: BoundedChildren<Gauge.Internal<string>>
  constructor(readonly metric: Gauge<string>, name: string, arity: number, maxSeries: number, onOverflow: Overflow) {
    this.children = new BoundedChildren(name, arity, maxSeries, (v) => metric.labels(...v), onOverflow)
  }
  set(value: number, ...values: LabelValues<L>): void {
    this.children.get(values).set(value)
  }
  inc(...values: LabelValues<L>): void {
    this.children.get(values).inc()
  }
  dec(...values: LabelValues<L>): void {
    this.children.get(values).dec()
  }
  /** Removes a series, so a target removed by a reload stops being exported. */
  remove(...values: LabelValues<L>): void {
    if (this.children.delete(values)) this.metric.remove(...values.map(String))
  }
  child(...values: LabelValues<L>): Gauge.Internal<string> {
    return this.children.get(values)
  }
  get series(): number {
    return this.children.size
  }
  /** The label values of every series (reload-time bookkeeping). */
  labelSets(): Array<Array<string>> {
    return this.children.labelSets()
  }
}

/** A histogram with positional labels, cached children and a series cap. */
export class BoundedHistogram<L extends ReadonlyArray<string>> {
  private readonly children: BoundedChildren<HistogramChild>
  constructor(readonly metric: Histogram<string>, name: string, arity: number, maxSeries: number, onOverflow: Overflow, labelNames: ReadonlyArray<string>) {
    this.children = new BoundedChildren(name, arity, maxSeries, (v) => new FastHistogramChild(metric, labelObject(labelNames, v)), onOverflow)
  }
  /** Records one observation (seconds for `_seconds` histograms). */
  observe(value: number, ...values: LabelValues<L>): void {
    this.children.get(values).observe(value)
  }
  child(...values: LabelValues<L>): HistogramChild {
    return this.children.get(values)
  }
  get series(): number {
    return this.children.size
  }
}

/** Distinct methods per route whose series `Metrics.completed` caches. */
