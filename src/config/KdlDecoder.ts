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
 *
 * The pieces it builds on: the context and sink (KdlContext.ts), the decoders
 * of single values (KdlValues.ts) and the "it belongs in ..." hint for a key
 * written in the wrong block (KdlPlacement.ts).
 */
import type { Node } from "@bgotink/kdl"
import { hint } from "./ConfigIssue.js"
import { type Cx, nodeName } from "./KdlContext.js"
import { belongsElsewhere } from "./KdlPlacement.js"
import { ident, type Val } from "./KdlValues.js"
import { notSupportedYet } from "./NotSupportedYet.js"

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
