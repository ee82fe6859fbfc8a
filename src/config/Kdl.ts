/**
 * KDL text -> typed `SentinelConfig`, with every problem reported as
 * `file:line:col: message`. Pure: file reading and includes live in Load.ts,
 * and the one fact about the machine (its cores, for the `worker-threads` cap) is an option.
 */
import { type Document, getLocation, InvalidKdlError, type Node, parse } from "@bgotink/kdl"
import { parse as parseV1 } from "@bgotink/kdl/v1-compat"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { closest, type ConfigIssue, hint, sortIssues } from "./ConfigIssue.js"
import { type BlockSpec, children, custom, decodeBlock, many, shape } from "./KdlDecoder.js"
import { Cx, Sink } from "./KdlContext.js"
import { registerRootSpec } from "./KdlPlacement.js"
import { str } from "./KdlValues.js"
import { currentSchemaVersion, SentinelConfig } from "./Schema.js"
import { agentsField } from "./blocks/Agents.js"
import { filtersField } from "./blocks/Filters.js"
import { limitsField } from "./blocks/Limits.js"
import { listenersField } from "./blocks/Listeners.js"
import { observabilityField } from "./blocks/Observability.js"
import { rateLimitsField } from "./blocks/RateLimits.js"
import { cacheStoreField } from "./blocks/Cache.js"
import { routesField } from "./blocks/Routes.js"
import { systemField } from "./blocks/System.js"
import { upstreamsField } from "./blocks/Upstreams.js"

/** A top-level node and the file it came from (includes mix files). */
export interface SourcedNode {
  readonly node: Node
  readonly file: string
}

export interface DecodeResult {
  /** Present when there are no errors. */
  readonly config: SentinelConfig | undefined
  readonly errors: ReadonlyArray<ConfigIssue>
  readonly warnings: ReadonlyArray<ConfigIssue>
}

// ---------------------------------------------------------------------------
// Syntax

/**
 * Parses KDL v2; if that fails but the text is valid KDL v1 (Sentinel configs
 * written before v2), uses that with a warning. Never throws.
 */
export const parseKdl = (
  text: string,
  file: string
): { readonly document: Document | undefined; readonly errors: Array<ConfigIssue>; readonly warnings: Array<ConfigIssue> } => {
  const deep = tooDeep(text)
  if (deep !== undefined) {
    return { document: undefined, errors: [{ file, ...position(text, deep), message: `nesting deeper than ${maxNesting} levels of { } blocks` }], warnings: [] }
  }
  try {
    return { document: parse(text, { storeLocations: true }), errors: [], warnings: [] }
  } catch (e) {
    try {
      const document = parseV1(text, { storeLocations: true })
      return {
        document,
        errors: [],
        warnings: [{ file, line: 1, col: 1, message: "parsed as KDL v1; KDL v2 syntax (#true, #false, #null) is preferred" }]
      }
    } catch {
      return { document: undefined, errors: kdlErrors(e, file, text), warnings: [] }
    }
  }
}

/** `{ }` blocks nested deeper than this are refused before parsing. */
export const maxNesting = 64

const isNewline = (c: number): boolean => c === 0x0a || c === 0x0d || c === 0x0c || c === 0x85 || c === 0x2028 || c === 0x2029

/**
 * Where the first `{` nested deeper than `maxNesting` is, if any. The parser recurses once per
 * level and overflows the stack at a few thousand, so this runs first and a deep document gets a
 * located error. Braces in strings (quoted, multi-line, raw `#"..."#`, v1 `r"..."`) and comments
 * (`//`, nested block comments) do not count. On malformed text the scan may miscount, but a false
 * refusal still needs more than `maxNesting` unbalanced `{`, which no real config has.
 */
const tooDeep = (text: string): number | undefined => scanBraces(text).tooDeepAt

/**
 * Walks the `{` and `}` of a text outside strings and comments (see `tooDeep`): where nesting
 * first exceeds `maxNesting`, and the offsets of the `{` never closed (innermost last).
 */
const scanBraces = (text: string): { readonly tooDeepAt: number | undefined; readonly unclosed: ReadonlyArray<number> } => {
  const n = text.length
  const open: Array<number> = []
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x7b /* { */) {
      open.push(i)
      if (open.length > maxNesting) return { tooDeepAt: i, unclosed: open }
    } else if (c === 0x7d /* } */) {
      open.pop()
    } else if (c === 0x2f /* / */ && text.startsWith("//", i)) {
      while (i + 1 < n && !isNewline(text.charCodeAt(i + 1))) i++
    } else if (c === 0x2f && text.startsWith("/*", i)) {
      let level = 0
      for (; i < n; i++) {
        if (text.startsWith("/*", i)) {
          level++
          i++
        } else if (text.startsWith("*/", i) && --level === 0) break
      }
      i++
    } else if (c === 0x22 /* " */ || c === 0x23 /* # */) {
      let j = i
      while (text.charCodeAt(j) === 0x23) j++
      if (text.charCodeAt(j) !== 0x22) {
        i = j - 1 // `#true`, `#null`, ...
        continue
      }
      const hashes = j - i
      const raw = hashes > 0 || text.charCodeAt(i - 1) === 0x72 /* r, KDL v1 */
      const quotes = text.startsWith('"""', j) ? '"""' : '"'
      const close = quotes + "#".repeat(hashes)
      j += quotes.length
      while (j < n && !text.startsWith(close, j)) j += !raw && text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1
      i = j + close.length - 1
    }
  }
  return { tooDeepAt: undefined, unclosed: open }
}

/** 1-based line and column of an offset, counting newlines as KDL does (CRLF is one). */
const position = (text: string, offset: number): { readonly line: number; readonly col: number } => {
  let line = 1
  let start = 0
  for (let i = 0; i < offset; i++) {
    const c = text.charCodeAt(i)
    if (isNewline(c) && !(c === 0x0d && text.charCodeAt(i + 1) === 0x0a)) {
      line++
      start = i + 1
    }
  }
  return { line, col: offset - start + 1 }
}

/**
 * The parser's message, said in words where it is terse: a node after `}` on the same line
 * (a missing `;`), and a `{` never closed (named by its position).
 */
const explain = (message: string, x: InvalidKdlError, text: string): string => {
  const offset = x.start?.offset
  if (offset === undefined) return message
  if (/^(Invalid node children|Unexpected token|Expected a property or argument|Invalid argument)/.test(message)) {
    let i = offset - 1
    while (i >= 0 && (text[i] === " " || text[i] === "\t")) i--
    const word = /^[^\s{}();=]+/.exec(text.slice(offset))?.[0]
    if (text[i] === "}" && word !== undefined) {
      return `missing \`;\` or a newline between two nodes: \`${word}\` follows \`}\` on the same line (write \`} ${word}\` as \`}; ${word}\`, or start \`${word}\` on a new line)`
    }
  }
  if (message.startsWith("Invalid node children") && text.slice(offset).trim() === "") {
    const unclosed = scanBraces(text).unclosed
    if (unclosed.length > 0) {
      const at = position(text, unclosed[unclosed.length - 1])
      return `the file ends inside a { } block: the \`{\` at ${at.line}:${at.col} is never closed (missing \`}\`)`
    }
  }
  return message
}

const kdlErrors = (e: unknown, file: string, text: string): Array<ConfigIssue> => {
  if (e instanceof InvalidKdlError) {
    return [...e.flat()].map((x) => ({
      file,
      // the parser reports column 0 for some errors (e.g. `r#""#`); positions here are 1-based
      line: Math.max(1, x.start?.line ?? 1),
      col: Math.max(1, x.start?.column ?? 1),
      // the library appends " at L:C" / " at end of input"; the prefix already says where
      message: `invalid KDL: ${explain(x.message.replace(/ at (\d+:\d+|end of input)$/, ""), x, text)}`
    }))
  }
  return [{ file, line: 1, col: 1, message: `invalid KDL: ${e instanceof Error ? e.message : String(e)}` }]
}

// ---------------------------------------------------------------------------
// Environment substitution

const reference = /\$\$\{|\$\{([^}]*)\}|\$\{/g
const variable = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string value (arguments
 * and properties, at any depth); `$${` stays a literal `${`. An unset
 * variable without default is an error at the value's location.
 */
export const substituteEnv = (
  nodes: ReadonlyArray<Node>,
  file: string,
  env: Readonly<Record<string, string | undefined>>,
  errors: Array<ConfigIssue>
): void => {
  for (const node of nodes) {
    for (const entry of node.entries) {
      const v = entry.getValue()
      if (typeof v !== "string" || !v.includes("${")) continue
      const at = getLocation(entry)?.start
      const fail = (message: string) => errors.push({ file, line: at?.line ?? 1, col: at?.column ?? 1, message })
      const out = v.replace(reference, (m, inner: string | undefined) => {
        if (m === "$${") return "${"
        if (inner === undefined) {
          fail("unterminated `${` in string (write `$${` for a literal)")
          return m
        }
        const parsed = variable.exec(inner)
        if (parsed === null) {
          fail(`invalid variable reference \`${m}\` (expected \${NAME} or \${NAME:-default})`)
          return m
        }
        const value = env[parsed[1]]
        if (value !== undefined && value !== "") return value
        if (parsed[2] !== undefined) return parsed[2]
        if (value === undefined) fail(`environment variable ${parsed[1]} is not set (use \${${parsed[1]}:-default} for a default)`)
        return value ?? ""
      })
      if (out !== v) entry.setValue(out)
    }
    if (node.children !== null) substituteEnv(node.children.nodes, file, env, errors)
  }
}

// ---------------------------------------------------------------------------
// The top level

const versionField = custom(["schema-version", "version"], (node, cx) => {
  if (!shape(node, cx, { args: [1, 1] })) return undefined
  const e = node.getArgumentEntry(0)!
  const v = str(e.getValue(), e, cx, `\`${node.getName()}\``)
  if (v === undefined) return undefined
  const m = /^(\d+)\.(\d+)$/.exec(v)
  if (m === null) return cx.error(e, `schema version must look like "${currentSchemaVersion}", got ${JSON.stringify(v)}`)
  const [cur, curMinor] = currentSchemaVersion.split(".").map(Number)
  const cmp = Number(m[1]) - cur || Number(m[2]) - curMinor
  if (cmp < 0) return cx.error(e, `schema version ${v} is older than the supported ${currentSchemaVersion}`)
  if (cmp > 0) cx.warn(e, `schema version ${v} is newer than ${currentSchemaVersion}; newer features may be rejected`)
  return v
})

/** Top-level blocks. Collections may repeat (their entries merge); the rest are singletons. */
export const topSpec: BlockSpec<{
  schemaVersion: string
  system: unknown
  listeners: unknown
  upstreams: unknown
  routes: unknown
  limits: unknown
  observability: unknown
  filters: unknown
  agents: unknown
  rateLimits: unknown
  cache: unknown
}> = {
  path: "",
  fields: {
    schemaVersion: versionField,
    system: { ...systemField, names: ["system", "server"] },
    listeners: many(listenersField),
    upstreams: many(upstreamsField),
    routes: many(routesField),
    limits: limitsField,
    observability: observabilityField,
    filters: many(filtersField),
    agents: many(agentsField),
    rateLimits: rateLimitsField,
    cache: cacheStoreField
  }
}

registerRootSpec(topSpec)

const collections = new Set(["listeners", "upstreams", "routes", "filters", "agents"])

/**
 * Decodes top-level nodes (possibly from several files) into a config.
 * Singleton blocks repeated in one file are errors; across files the last
 * wins with a warning (an included file overriding `system`, as in Sentinel).
 */
export const decodeNodes = (
  nodes: ReadonlyArray<SourcedNode>,
  mainFile: string,
  sink: Sink = new Sink()
): DecodeResult => {
  const out: Record<string, unknown> = {}
  const firstAt = new Map<string, SourcedNode>()
  for (const sourced of nodes) {
    const { node, file } = sourced
    const cx = new Cx(file, sink)
    const name = node.getName()
    if (name === "include") {
      cx.error(node, "`include` is only allowed at the top level of a file loaded with loadConfig")
      continue
    }
    if (name === "server") cx.warn(node, "`server` is deprecated; use `system`")
    const { fields } = decodeBlock([node], cx, topSpec)
    for (const [key, value] of Object.entries(fields)) {
      if (collections.has(key)) {
        out[key] = [...((out[key] as Array<unknown>) ?? []), ...(value as Array<Array<unknown>>).flat()]
        continue
      }
      const first = firstAt.get(key)
      if (first !== undefined) {
        const p = new Cx(first.file, sink).pos(first.node)
        if (first.file === file) {
          cx.error(node, `duplicate \`${name}\` (already set at ${p.line}:${p.col})`)
          continue
        }
        cx.warn(node, `\`${name}\` overrides the one at ${p.file}:${p.line}:${p.col}`)
      }
      firstAt.set(key, sourced)
      out[key] = value
    }
  }
  // When part of the configuration could not be read, a reference to an id defined there is
  // a consequence, not a cause: it is listed after the real problems.
  const consequence = sink.incomplete ? ({ secondary: true } as const) : {}
  for (const ref of sink.refs) {
    const ids = sink.defs.get(ref.kind) ?? new Map()
    if (!ids.has(ref.id)) {
      sink.errors.push({ ...ref.at, message: `${ref.what} unknown ${ref.kind} "${ref.id}"${hint(ref.id, ids.keys())}`, ...consequence })
    }
  }
  for (const need of sink.needs) {
    if (!sink.facts.has(need.fact)) sink.errors.push({ ...need.at, message: need.message, ...consequence })
  }
  const listenerWritten = nodes.some((n) => n.node.getName() === "listeners" && children(n.node).some((c) => c.getName() === "listener"))
  if (!listenerWritten && !listenerMisspelt(nodes) && !sink.incomplete) {
    // at 1:1 of the main file, but listed after any other problem
    sink.errors.push({ file: mainFile, line: 1, col: 1, message: "no listener defined: add `listeners { listener \"main\" { address \"0.0.0.0:8080\" } }`", secondary: true })
  }
  const warnings = sortIssues(sink.warnings)
  if (sink.errors.length > 0) return { config: undefined, errors: sortIssues(sink.errors), warnings }
  const decoded = Schema.decodeUnknownEither(SentinelConfig, { errors: "all" })(out)
  if (Either.isLeft(decoded)) {
    // the block decoders should catch everything first; this is the safety net (on one line, as every issue)
    const message = ParseResult.TreeFormatter.formatErrorSync(decoded.left).replace(/\s*\n\s*/g, " ")
    return { config: undefined, errors: [{ file: mainFile, line: 1, col: 1, message }], warnings }
  }
  return { config: decoded.right, errors: [], warnings }
}

/**
 * A listener was written but misspelt (`listners { }`, `listener` at the top level, `listners`
 * inside `listeners`): its did-you-mean error is the cause, "no listener defined" only repeats it.
 */
const listenerMisspelt = (nodes: ReadonlyArray<SourcedNode>): boolean => {
  const topNames = Object.values(topSpec.fields).flatMap((f) => (f as { names: ReadonlyArray<string> }).names)
  return nodes.some(({ node }) => {
    const name = node.getName()
    if (name === "listeners") return children(node).some((c) => c.getName() !== "listener" && closest(c.getName(), ["listener"]) !== undefined)
    return !topNames.includes(name) && closest(name, topNames) === "listeners"
  })
}

/** Parses and decodes one KDL text (no includes). Never throws. */
export const decodeKdl = (
  text: string,
  opts: {
    readonly file?: string
    readonly env?: Readonly<Record<string, string | undefined>>
    /** Cores of the machine the config is for (caps `worker-threads`). Default this machine's. */
    readonly cores?: number
  } = {}
): DecodeResult => {
  const file = opts.file ?? "<config>"
  const parsed = parseKdl(text, file)
  if (parsed.document === undefined) return { config: undefined, errors: parsed.errors, warnings: parsed.warnings }
  const sink = new Sink(opts.cores)
  sink.warnings.push(...parsed.warnings)
  if (opts.env !== undefined) substituteEnv(parsed.document.nodes, file, opts.env, sink.errors)
  return decodeNodes(parsed.document.nodes.map((node) => ({ node, file })), file, sink)
}
