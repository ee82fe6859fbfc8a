/**
 * A small combinator kit for decoding KDL nodes into plain model input.
 *
 * Block decoders are data (`BlockSpec`): a table from KDL child names to
 * `Field`s. That lets one generic walker report every unknown, duplicate or
 * "not supported yet" child with a location and a hint, and lets tests
 * enumerate every known key (to check that example.kdl documents them).
 * Decoders never throw and never stop at the first problem: each reports
 * into the `Cx` sink and returns `undefined` for the bad piece.
 * Kebab-case KDL names become camelCase model keys only here.
 */
import { type Entry, getLocation, type Node, type Primitive } from "@bgotink/kdl"
import * as Duration from "effect/Duration"
import * as os from "node:os"
import { type ConfigIssue, escapeChar, escapeText, firstUnprintable, hint } from "./ConfigIssue.js"
import { notSupportedYet } from "./NotSupportedYet.js"
import { parseHostPort } from "./Schema.js"

export type Located = Node | Entry

export interface Pos {
  readonly file: string
  readonly line: number
  readonly col: number
}

/** Collects issues and the id definitions/references checked after decoding. */
export class Sink {
  /**
   * @param cores Cores of the machine the config is for, for limits relative to it
   *   (`worker-threads`); an input rather than read inside, so decoding is deterministic in tests.
   */
  constructor(readonly cores: number = os.availableParallelism()) {}
  readonly errors: Array<ConfigIssue> = []
  readonly warnings: Array<ConfigIssue> = []
  readonly defs = new Map<string, Map<string, Pos>>()
  readonly refs: Array<{ kind: string; id: string; at: Pos; what: string }> = []
  /** Facts established somewhere in the document (e.g. "admin-listener"), checked against `needs`. */
  readonly facts = new Set<string>()
  /** Requirements on facts: an error at `at` unless the fact is established. */
  readonly needs: Array<{ fact: string; at: Pos; message: string }> = []
  /**
   * Some configuration could not be read (a file with a syntax error, a missing or unreadable
   * include): what is "missing" from the rest (a listener, a referenced id) may be in it.
   */
  incomplete = false
}

/** Decoding context: the file being read plus the shared sink. */
export class Cx {
  /** The entity being decoded (`route "api"`), for messages about references. */
  owner = ""
  constructor(readonly file: string, readonly sink: Sink) {}

  pos(at: Located | undefined): Pos {
    const loc = at === undefined ? undefined : getLocation(at)
    // 1-based; the parser reports column 0 on some malformed tokens (e.g. v1-style `r#""#`)
    return { file: this.file, line: Math.max(1, loc?.start.line ?? 1), col: Math.max(1, loc?.start.column ?? 1) }
  }
  error(at: Located | undefined, message: string): undefined {
    this.sink.errors.push({ ...this.pos(at), message })
    return undefined
  }
  warn(at: Located | undefined, message: string): void {
    this.sink.warnings.push({ ...this.pos(at), message })
  }
  /** Registers an id; a second definition is an error pointing at the first. */
  define(kind: string, id: string, at: Located): void {
    let ids = this.sink.defs.get(kind)
    if (ids === undefined) this.sink.defs.set(kind, (ids = new Map()))
    const first = ids.get(id)
    if (first !== undefined) {
      this.error(at, `duplicate ${kind} id "${id}" (first defined at ${first.file}:${first.line}:${first.col})`)
    } else ids.set(id, this.pos(at))
  }
  /** Establishes a fact about the whole document (see `Sink.facts`). */
  fact(name: string): void {
    this.sink.facts.add(name)
  }
  /** Requires a fact; `message` is reported at `at` when no part of the document establishes it. */
  need(fact: string, at: Located, message: string): void {
    this.sink.needs.push({ fact, at: this.pos(at), message })
  }
  /** Records a reference to an id of `kind`, resolved once the whole document is read. */
  reference(kind: string, id: string, at: Located, what: string): void {
    this.sink.refs.push({ kind, id, at: this.pos(at), what: this.owner === "" ? what : `${this.owner} ${what}` })
  }
}

export const nodeName = (n: Node): string => n.getName()

const describe = (v: Primitive): string =>
  v === null ? "#null" : typeof v === "string" ? JSON.stringify(v) : typeof v === "boolean" ? `#${v}` : String(v)

// ---------------------------------------------------------------------------
// Values

/** Decodes one KDL value; reports and returns undefined when it does not fit. */
export type Val<A> = (v: Primitive, at: Entry, cx: Cx, what: string) => A | undefined

export const str: Val<string> = (v, at, cx, what) =>
  typeof v === "string" ? v : cx.error(at, `${what} must be a string, got ${describe(v)}`)

export const nonEmpty: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  return s === "" ? cx.error(at, `${what} must not be empty`) : s
}

/**
 * An id (of a listener, upstream, route, filter or agent, defined or referenced): not empty, and
 * printable, since ids are printed by `sentinel test`, written into logs and used as metric labels.
 */
export const ident: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  const bad = firstUnprintable(s)
  return bad === undefined
    ? s
    : cx.error(at, `${what} "${escapeText(s)}" contains ${escapeChar(bad)}: ids must be printable (no control or format characters)`)
}

export const bool: Val<boolean> = (v, at, cx, what) =>
  typeof v === "boolean" ? v : cx.error(at, `${what} must be #true or #false, got ${describe(v)}`)

export const int = (opts: { min?: number; max?: number } = {}): Val<number> => (v, at, cx, what) => {
  if (typeof v !== "number" || !Number.isInteger(v)) return cx.error(at, `${what} must be an integer, got ${describe(v)}`)
  // the parser rounds integers beyond 2^53 silently; refuse them rather than use a wrong value
  if (!Number.isSafeInteger(v)) return cx.error(at, `${what} is too large (integers must be below 2^53)`)
  if (opts.min !== undefined && v < opts.min) {
    return cx.error(at, opts.min === 0 ? `${what} must not be negative, got ${v}` : `${what} must be at least ${opts.min}, got ${v}`)
  }
  if (opts.max !== undefined && v > opts.max) return cx.error(at, `${what} must be at most ${opts.max}, got ${v}`)
  return v
}
export const count = int({ min: 0 })
export const positive = int({ min: 1 })

/** Seconds (integer or decimal, not negative) or a string with a unit ("250ms", "1m"), as a Duration. */
export const secs: Val<Duration.Duration> = (v, at, cx, what) => {
  const ms = durationMs(1000)(v, at, cx, what)
  return ms === undefined ? undefined : Duration.millis(ms)
}

const timeUnits: Record<string, number> = { ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * A duration as whole milliseconds: a number in `unitMs` (1000 for `-secs` keys, 1 for `-ms`
 * keys), or a string with a unit ("250ms", "1.5s", "30m", "1h", "1d"). Not negative, at most
 * one year.
 */
export const durationMs = (unitMs: number): Val<number> => (v, at, cx, what) => {
  let ms: number
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$/.exec(v)
    const unit = timeUnits[(m?.[2] ?? "").toLowerCase()]
    if (m === null || unit === undefined) {
      return cx.error(at, `${what} must be a number or a duration like "500ms", "30s", "5m", "1h", got ${describe(v)}`)
    }
    ms = Number(m[1]) * unit
  } else if (typeof v === "number" && Number.isFinite(v)) {
    ms = v * unitMs
  } else {
    return cx.error(at, `${what} must be a number${unitMs === 1000 ? " of seconds" : unitMs === 1 ? " of milliseconds" : ""} or a duration like "30s", got ${describe(v)}`)
  }
  if (ms < 0) return cx.error(at, `${what} must not be negative, got ${describe(v)}`)
  if (ms > 365 * 86_400_000) return cx.error(at, `${what} is too large (at most one year)`)
  return Math.round(ms)
}
/** Seconds (or a string with a unit) as whole milliseconds. */
export const secsMs = durationMs(1000)
/** Milliseconds (or a string with a unit) as whole milliseconds. */
export const millis = durationMs(1)

/** A duration (see `durationMs`) that must be at least 1 ms. */
export const positiveMs = (unitMs: number): Val<number> => (v, at, cx, what) => {
  const ms = durationMs(unitMs)(v, at, cx, what)
  return ms === 0 ? cx.error(at, `${what} must be greater than 0`) : ms
}

/** A finite number within bounds (decimals allowed). */
export const num = (opts: { min?: number; max?: number; exclusiveMin?: boolean } = {}): Val<number> => (v, at, cx, what) => {
  if (typeof v !== "number" || !Number.isFinite(v)) return cx.error(at, `${what} must be a number, got ${describe(v)}`)
  if (opts.min !== undefined && (opts.exclusiveMin ? v <= opts.min : v < opts.min)) {
    return cx.error(at, `${what} must be ${opts.exclusiveMin ? "greater than" : "at least"} ${opts.min}, got ${v}`)
  }
  if (opts.max !== undefined && v > opts.max) return cx.error(at, `${what} must be at most ${opts.max}, got ${v}`)
  return v
}

/** `#null`, or a value decoded by `val`. */
export const nullable = <A>(val: Val<A>): Val<A | null> => (v, at, cx, what) => (v === null ? null : val(v, at, cx, what))

/** An HTTP status code (100-599). */
export const status = int({ min: 100, max: 599 })

const units: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }

/** Bytes: an integer, or a string with a unit (`"10MiB"`, `"512KB"`). */
export const bytes: Val<number> = (v, at, cx, what) => {
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$/.exec(v)
    const unit = units[(m?.[2] ?? "b").toLowerCase()]
    if (m === null || unit === undefined) {
      return cx.error(at, `${what} must be a number of bytes or a size like "10MiB", got ${describe(v)}`)
    }
    return count(Math.round(Number(m[1]) * unit), at, cx, what)
  }
  return count(v, at, cx, what)
}

/** One of a fixed set of strings, with aliases and a hint for near misses. */
export const oneOf = <const L extends string>(
  allowed: ReadonlyArray<L>,
  opts: { aliases?: Record<string, L>; notSupported?: ReadonlyArray<string> } = {}
): Val<L> => (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  if ((allowed as ReadonlyArray<string>).includes(s)) return s as L
  const alias = opts.aliases?.[s]
  if (alias !== undefined) return alias
  if (opts.notSupported?.includes(s)) return cx.error(at, `${what} "${s}" is not supported yet`)
  const all = [...allowed, ...Object.keys(opts.aliases ?? {})]
  return cx.error(at, `${what} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${describe(v)}${hint(s, all)}`)
}

export const hostPort: Val<{ host: string; port: number }> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return parseHostPort(s) ?? cx.error(at, `${what} must be "host:port" (IPv6 as "[::1]:80"), got ${describe(v)}`)
}

// ---------------------------------------------------------------------------
// Node shapes

/**
 * Checks a node's arguments, properties and children against what it may have.
 * Returns false (after reporting) when the shape is wrong.
 */
export const shape = (
  node: Node,
  cx: Cx,
  opts: { args?: readonly [min: number, max: number]; props?: ReadonlyArray<string>; children?: boolean }
): boolean => {
  const name = nodeName(node)
  let ok = true
  const [min, max] = opts.args ?? [0, 0]
  const args = node.getArgumentEntries()
  if (args.length < min) {
    ok = cx.error(node, min === 1 && max === 1 ? `\`${name}\` needs a value` : `\`${name}\` needs at least ${min} argument${min === 1 ? "" : "s"}, got ${args.length}`) ?? false
  } else if (args.length > max) {
    // KDL v2 reads a bare word as a string: `worker-threads 1 max-connections 5` is one node with three arguments
    const extra = args[max]
    const rep = extra.value.representation
    const bare = typeof extra.getValue() === "string" && rep !== undefined && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(rep)
    const next = bare ? `; if \`${rep}\` starts the next node, put a \`;\` or a newline before it` : ""
    ok = cx.error(extra, (max === 0 ? `\`${name}\` takes no arguments` : `\`${name}\` takes at most ${max} argument${max === 1 ? "" : "s"}, got ${args.length}`) + next) ?? false
  }
  const allowed = opts.props ?? []
  const seen = new Set<string>()
  for (const p of node.getPropertyEntries()) {
    const pn = p.getName() ?? ""
    if (seen.has(pn)) ok = cx.error(p, `duplicate property \`${pn}\` on \`${name}\``) ?? false
    seen.add(pn)
    if (!allowed.includes(pn)) {
      ok = cx.error(p, allowed.length === 0
        ? `\`${name}\` takes no properties, got \`${pn}\``
        : `unknown property \`${pn}\` on \`${name}\`${hint(pn, allowed)}`) ?? false
    }
  }
  if (node.children !== null && !opts.children) {
    ok = cx.error(node, `\`${name}\` takes no children block`) ?? false
  }
  if (node.getTag() !== null) ok = cx.error(node, `type annotations like (${node.getTag()}) are not supported on \`${name}\``) ?? false
  for (const e of node.entries) {
    if (e.getTag() !== null) ok = cx.error(e, `type annotations like (${e.getTag()}) are not supported`) ?? false
  }
  return ok
}

export const children = (node: Node): ReadonlyArray<Node> => node.children?.nodes ?? []

// ---------------------------------------------------------------------------
// Fields and blocks

/** How one KDL child name decodes into one model key. */
export interface Field<A> {
  /** KDL names; the first is canonical, the others accepted aliases (e.g. `-secs` spellings). */
  readonly names: ReadonlyArray<string>
  /** May appear several times; the result is then the list of items. */
  readonly many: boolean
  readonly decode: (node: Node, cx: Cx) => A | undefined
  /** The nested block, for tools that walk every known key. */
  readonly nested?: BlockSpec<any> | undefined
  /** Extra KDL names documented under this field (e.g. match kinds), for the same tools. */
  readonly leaves?: ReadonlyArray<string> | undefined
}

/** A block: its path in the registry of unsupported names, and its fields. */
export interface BlockSpec<T> {
  /** Dotted KDL path (`upstreams.upstream.timeouts`), the key into `notSupportedYet`. */
  readonly path: string
  readonly fields: { readonly [K in keyof T]-?: Field<any> }
}

/** `name value` with exactly one argument. */
export const scalar = <A>(names: string | ReadonlyArray<string>, val: Val<A>): Field<A> => ({
  names: typeof names === "string" ? [names] : names,
  many: false,
  decode: (node, cx) => {
    if (!shape(node, cx, { args: [1, 1] })) return undefined
    const e = node.getArgumentEntry(0)!
    return val(e.getValue(), e, cx, `\`${nodeName(node)}\``)
  }
})

/** `name v1 v2 ...`: one or more arguments, each decoded by `val` (one line; not repeatable). */
export const list = <A>(names: string | ReadonlyArray<string>, val: Val<A>, opts: { min?: number } = {}): Field<ReadonlyArray<A>> => ({
  names: typeof names === "string" ? [names] : names,
  many: false,
  decode: (node, cx) => {
    if (!shape(node, cx, { args: [opts.min ?? 1, Infinity] })) return undefined
    const out = node.getArgumentEntries().map((e) => val(e.getValue(), e, cx, `\`${nodeName(node)}\``))
    return out.every((x) => x !== undefined) ? (out as Array<A>) : undefined
  }
})

/** A child block `name { ... }` decoded by `spec`, then optionally mapped. */
export const block = <T, B = Partial<T>>(
  names: string | ReadonlyArray<string>,
  spec: BlockSpec<T>,
  map?: (fields: Partial<T>, node: Node, cx: Cx) => B | undefined
): Field<B> => ({
  names: typeof names === "string" ? [names] : names,
  many: false,
  nested: spec,
  decode: (node, cx) => {
    if (!shape(node, cx, { args: [0, 0], children: true })) return undefined
    const fields = decodeBlock(node, cx, spec).fields
    return map === undefined ? (fields as unknown as B) : map(fields, node, cx)
  }
})

/** A field with a hand-written decoder (may repeat when `many`). */
export const custom = <A>(
  names: string | ReadonlyArray<string>,
  decode: (node: Node, cx: Cx) => A | undefined,
  opts: { many?: boolean; nested?: BlockSpec<any>; leaves?: ReadonlyArray<string> } = {}
): Field<A> => ({
  names: typeof names === "string" ? [names] : names,
  many: opts.many ?? false,
  decode,
  nested: opts.nested,
  leaves: opts.leaves
})

/** Marks a field repeatable: its value becomes the list of items. */
export const many = <A>(f: Field<A>): Field<ReadonlyArray<A>> => ({ ...f, many: true }) as unknown as Field<ReadonlyArray<A>>

// ---------------------------------------------------------------------------
// Keys in the wrong block

let rootSpec: BlockSpec<any> | undefined
let placements: Map<string, Array<string>> | undefined

/** Registers the top-level spec, so an unknown key can be looked up in every other block. */
export const registerRootSpec = (spec: BlockSpec<any>): void => {
  rootSpec = spec
  placements = undefined
}

/** KDL name -> dotted paths of the blocks that have it (canonical names and aliases). */
const placementIndex = (): Map<string, Array<string>> => {
  if (placements !== undefined) return placements
  const index = new Map<string, Array<string>>()
  const seen = new Set<BlockSpec<any>>()
  const walk = (spec: BlockSpec<any>, path: string) => {
    if (seen.has(spec)) return
    seen.add(spec)
    for (const field of Object.values(spec.fields) as Array<Field<unknown>>) {
      for (const n of field.names) {
        const at = index.get(n) ?? []
        if (!at.includes(path)) at.push(path)
        index.set(n, at)
      }
      if (field.nested !== undefined) walk(field.nested, path === "" ? field.names[0] : `${path}.${field.names[0]}`)
    }
  }
  if (rootSpec !== undefined) walk(rootSpec, "")
  placements = index
  return index
}

/** `routes.route.policies` -> "`routes { route { policies { timeout-secs ... } } }`". */
const chain = (path: string, name: string): string => {
  const parts = path === "" ? [] : path.split(".")
  return `\`${parts.map((p) => `${p} { `).join("")}${name} ...${" }".repeat(parts.length)}\``
}

/**
 * `"; it belongs in ..."` when `name` is a key of another block (e.g. `timeout-secs` written
 * directly in a route belongs in its `policies`), nearest blocks first (inside this one, then
 * those sharing most of its path); `""` when no block has it.
 */
export const belongsElsewhere = (name: string, here: string): string => {
  const at = (placementIndex().get(name) ?? []).filter((p) => p !== here)
  if (at.length === 0) return ""
  const hereParts = here === "" ? [] : here.split(".")
  const shared = (p: string) => {
    const parts = p === "" ? [] : p.split(".")
    let k = 0
    while (k < parts.length && k < hereParts.length && parts[k] === hereParts[k]) k++
    return k
  }
  const inside = (p: string) => (here === "" ? p !== "" : p.startsWith(`${here}.`))
  const depth = (p: string) => (p === "" ? 0 : p.split(".").length)
  const ranked = [...at].sort((a, b) =>
    Number(inside(b)) - Number(inside(a)) || shared(b) - shared(a) || depth(a) - depth(b) || (a < b ? -1 : 1))
  const best = ranked.filter((p) => inside(p) === inside(ranked[0]) && shared(p) === shared(ranked[0])).slice(0, 2)
  if (here !== "" && inside(best[0])) {
    const rel = best.map((p) => chain(p.slice(here.length + 1), name)).join(" or ")
    return `; it belongs in ${rel} inside this \`${hereParts[hereParts.length - 1]}\``
  }
  return `; it belongs in ${best.map((p) => chain(p, name)).join(" or ")}`
}

/** Decoded children, plus their order (for blocks where order matters, like `matches`). */
export interface Decoded<T> {
  readonly fields: Partial<T>
  readonly seq: ReadonlyArray<{ readonly key: keyof T; readonly value: unknown; readonly node: Node }>
}

/**
 * Decodes the children of `parent` with `spec`. Unknown names, names that are
 * not supported yet, and repeats of single-valued fields are errors.
 */
export const decodeBlock = <T>(parent: Node | ReadonlyArray<Node>, cx: Cx, spec: BlockSpec<T>): Decoded<T> => {
  const byName = new Map<string, { key: keyof T; field: Field<any> }>()
  for (const key of Object.keys(spec.fields) as Array<keyof T>) {
    const field = spec.fields[key]
    for (const n of field.names) byName.set(n, { key, field })
  }
  const unsupported = notSupportedYet[spec.path] ?? []
  const out: Record<string, unknown> = {}
  const firstAt = new Map<keyof T, Node>()
  const seq: Array<{ key: keyof T; value: unknown; node: Node }> = []
  const where = spec.path === "" ? "at the top level" : `in \`${spec.path.split(".").pop()}\``
  for (const node of Array.isArray(parent) ? parent : children(parent as Node)) {
    const name = nodeName(node)
    const hit = byName.get(name)
    if (hit === undefined) {
      if (unsupported.includes(name)) cx.error(node, `\`${name}\` is not supported yet`)
      else {
        // `timeout` where the block has `timeout-secs`: a unit suffix left out, not a key of another block
        const canonical = (Object.values(spec.fields) as Array<Field<unknown>>).map((f) => f.names[0])
        const longer = [...canonical, ...byName.keys()].find((k) => k.startsWith(`${name}-`))
        const here = hint(name, byName.keys()) || (longer === undefined ? "" : `; did you mean \`${longer}\`?`)
        cx.error(node, `unknown node \`${name}\` ${where}${here || belongsElsewhere(name, spec.path)}`)
      }
      continue
    }
    const { key, field } = hit
    const first = firstAt.get(key)
    if (first !== undefined && !field.many) {
      const p = cx.pos(first)
      const alias = nodeName(first) === name ? "" : ` as \`${nodeName(first)}\``
      cx.error(node, `duplicate \`${name}\` (already set${alias} at ${p.line}:${p.col})`)
      continue
    }
    if (first === undefined) firstAt.set(key, node)
    const value = field.decode(node, cx)
    if (value === undefined) continue
    seq.push({ key, value, node })
    if (field.many) ((out[key as string] ??= []) as Array<unknown>).push(value)
    else out[key as string] = value
  }
  return { fields: out as Partial<T>, seq }
}

/**
 * An entity inside a collection block: `listener "id" { ... }`. Registers the
 * id (duplicates are errors) and decodes the children with `spec`.
 */
export const entity = <T, B>(
  kind: string,
  spec: BlockSpec<T>,
  build: (id: string, fields: Partial<T>, node: Node, cx: Cx) => B | undefined,
  /** `props`: properties `build` reads from the node; `blockOptional`: the `{ ... }` may be left out. */
  opts: { readonly props?: ReadonlyArray<string>; readonly blockOptional?: boolean } = {}
): Field<B> => ({
  names: [kind],
  many: true,
  nested: spec,
  decode: (node, cx) => {
    if (!shape(node, cx, { args: [1, 1], props: opts.props, children: true })) return undefined
    const e = node.getArgumentEntry(0)!
    const id = ident(e.getValue(), e, cx, `${kind} id`)
    if (id === undefined) return undefined
    cx.define(kind, id, e)
    if (node.children === null && !opts.blockOptional) return cx.error(node, `${kind} "${id}" needs a { ... } block`)
    const outer = cx.owner
    cx.owner = `${kind} "${id}"`
    try {
      return build(id, node.children === null ? {} : decodeBlock(node, cx, spec).fields, node, cx)
    } finally {
      cx.owner = outer
    }
  }
})

/** Omits undefined values, so schema defaults apply to absent keys. */
export const compact = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T

/** Enumerates every known KDL path of a spec (canonical names), for documentation checks. */
export const knownPaths = (spec: BlockSpec<any>, prefix = ""): Array<string> => {
  const out: Array<string> = []
  for (const field of Object.values(spec.fields) as Array<Field<unknown>>) {
    const p = prefix === "" ? field.names[0] : `${prefix}.${field.names[0]}`
    out.push(p)
    for (const leaf of field.leaves ?? []) out.push(`${p}.${leaf}`)
    if (field.nested !== undefined) out.push(...knownPaths(field.nested, p))
  }
  return out
}
