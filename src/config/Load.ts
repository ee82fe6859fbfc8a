/**
 * Loading a configuration from disk: files, `include "glob"`, `${VAR}`
 * substitution, then the KDL decoder. Every problem in every file is
 * reported at once as `file:line:col: message`.
 */
import type { Node } from "@bgotink/kdl"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { Stats } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { type ConfigIssue, ConfigInvalid, escapeText, formatIssue, sortIssues } from "./ConfigIssue.js"
import { decodeNodes, parseKdl, type SourcedNode, substituteEnv } from "./Kdl.js"
import { shape } from "./KdlDecoder.js"
import { Cx, Sink } from "./KdlContext.js"
import { str } from "./KdlValues.js"
import { formatHostPort, type SentinelConfig } from "./Schema.js"

export { ConfigInvalid } from "./ConfigIssue.js"

export interface LoadOptions {
  /** Variables for `${VAR}` substitution. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Cores of the machine the config is for (caps `worker-threads`). Default this machine's. */
  readonly cores?: number
}

export interface Loaded {
  readonly config: SentinelConfig
  readonly warnings: ReadonlyArray<ConfigIssue>
  /** Every file read (main file first), e.g. for a reload watcher. */
  readonly files: ReadonlyArray<string>
}

/** Bounds so a bad include pattern cannot make loading unbounded. */
const maxIncludeDepth = 16
const maxFiles = 512
/** Per file: configs are kilobytes, so a larger file is a wrong path, refused before it is read. */
export const maxFileBytes = 4 * 1024 * 1024

/**
 * Loads, decodes and validates a config file and its includes, logging
 * warnings. Fails with `ConfigInvalid` listing every problem.
 */
export const loadConfig = (file: string, opts: LoadOptions = {}): Effect.Effect<SentinelConfig, ConfigInvalid> =>
  loadConfigDetailed(file, opts).pipe(
    Effect.tap(({ warnings }) => Effect.forEach(warnings, (w) => Effect.logWarning(formatIssue(w)), { discard: true })),
    Effect.map(({ config }) => config)
  )

/** Like `loadConfig`, but returns the warnings and files instead of logging. */
export const loadConfigDetailed = (file: string, opts: LoadOptions = {}): Effect.Effect<Loaded, ConfigInvalid> =>
  Effect.promise(() => collect(file, opts.env ?? process.env, opts.cores)).pipe(
    Effect.flatMap(({ nodes, sink, files }) => {
      const result = decodeNodes(nodes, file, sink)
      return result.config === undefined
        ? Effect.fail(new ConfigInvalid({ issues: result.errors }))
        : Effect.succeed({ config: result.config, warnings: result.warnings, files })
    }),
    Effect.withSpan("Config.load", { attributes: { file } })
  )

/** Reads the main file and, depth first, everything it includes, in order. */
const collect = async (mainFile: string, env: Readonly<Record<string, string | undefined>>, cores: number | undefined) => {
  const sink = new Sink(cores)
  const nodes: Array<SourcedNode> = []
  const files: Array<string> = []
  const loaded = new Set<string>()

  const visit = async (file: string, stack: ReadonlyArray<string>, from: { cx: Cx; node: Node; pattern: string } | undefined) => {
    const fail = (message: string) => {
      sink.incomplete = true
      if (from === undefined) sink.errors.push({ file, line: 1, col: 1, message })
      else from.cx.error(from.node, message)
    }
    let real: string
    let text: string
    try {
      real = await fs.realpath(file)
      const read = await readConfigFile(real)
      if (typeof read !== "string") return fail(`${from === undefined ? "config" : "included"} file ${file} ${read.problem}`)
      text = read
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (from !== undefined && code === "ENOENT") return fail(`included file not found: ${from.pattern}`)
      return fail(`cannot read config file ${file}: ${code ?? (e as Error).message}`)
    }
    if (stack.includes(real)) {
      sink.incomplete = true
      const chain = [...stack.slice(stack.indexOf(real)), real].map((f) => path.relative(process.cwd(), f) || f)
      from?.cx.error(from.node, `include cycle: ${chain.join(" -> ")}`)
      return
    }
    if (loaded.has(real)) {
      from?.cx.warn(from.node, `${file} is already included; skipped`)
      return
    }
    if (files.length >= maxFiles) {
      sink.incomplete = true
      from?.cx.error(from.node, `too many config files (more than ${maxFiles})`)
      return
    }
    loaded.add(real)
    files.push(file)
    const parsed = parseKdl(text, file)
    sink.errors.push(...parsed.errors)
    sink.warnings.push(...parsed.warnings)
    if (parsed.document === undefined) {
      sink.incomplete = true
      return
    }
    substituteEnv(parsed.document.nodes, file, env, sink.errors)
    const cx = new Cx(file, sink)
    for (const node of parsed.document.nodes) {
      if (node.getName() !== "include") {
        nodes.push({ node, file })
        continue
      }
      if (!shape(node, cx, { args: [1, 1] })) continue
      const e = node.getArgumentEntry(0)!
      const pattern = str(e.getValue(), e, cx, "`include`")
      if (pattern === undefined) continue
      if (stack.length + 1 >= maxIncludeDepth) {
        cx.error(node, `includes nested too deeply (more than ${maxIncludeDepth} levels)`)
        continue
      }
      // a literal path is read as is, so that a directory or device there is named as the problem
      const target = path.resolve(path.dirname(file), pattern)
      const matches = hasGlob(pattern) ? await glob(target) : [target]
      if (matches.length === 0) {
        cx.warn(node, `include "${pattern}" matches no file`)
        continue
      }
      for (const m of matches) await visit(m, [...stack, real], { cx, node, pattern })
    }
  }

  await visit(mainFile, [], undefined)
  return { nodes, sink, files }
}

const fileKind = (st: Stats): string =>
  st.isDirectory() ? "a directory"
  : st.isCharacterDevice() ? "a character device"
  : st.isBlockDevice() ? "a block device"
  : st.isFIFO() ? "a FIFO"
  : st.isSocket() ? "a socket"
  : "not a file"

/**
 * The text of a config file, or what is wrong with it: not a regular file (a directory,
 * /dev/zero, a FIFO) or larger than `maxFileBytes`, found before a byte is read. Opened
 * non-blocking so a FIFO cannot stall loading, and checked on the open descriptor so the
 * path cannot be swapped after the check.
 */
const readConfigFile = async (real: string): Promise<string | { readonly problem: string }> => {
  const handle = await fs.open(real, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0))
  try {
    const st = await handle.stat()
    if (!st.isFile()) return { problem: `is not a regular file (${fileKind(st)})` }
    if (st.size > maxFileBytes) return { problem: `is larger than ${maxFileBytes / (1024 * 1024)} MiB (${st.size} bytes)` }
    return await handle.readFile("utf8")
  } finally {
    await handle.close()
  }
}

// ---------------------------------------------------------------------------
// A small glob: `*`, `?`, `[...]`, `{a,b}` within a segment, `**` across directories.

const hasGlob = (s: string): boolean => /[*?[{]/.test(s)

const segmentRegex = (seg: string): RegExp => {
  let re = ""
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]
    if (c === "*") re += "[^/]*"
    else if (c === "?") re += "[^/]"
    else if (c === "[") {
      const end = seg.indexOf("]", i + 1)
      if (end < 0) re += "\\["
      else {
        re += `[${seg.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\")}]`
        i = end
      }
    } else if (c === "{") {
      const end = seg.indexOf("}", i + 1)
      if (end < 0) re += "\\{"
      else {
        re += `(?:${seg.slice(i + 1, end).split(",").map((a) => a.replace(/[.+^$()|\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")).join("|")})`
        i = end
      }
    } else re += c.replace(/[.+^$()|\\\]}]/g, "\\$&")
  }
  return new RegExp(`^${re}$`)
}

const listDir = async (dir: string) => {
  try {
    return await fs.readdir(dir, { withFileTypes: true })
  } catch {
    return []
  }
}

/** Paths (not directories) matching an absolute pattern, sorted. Hidden entries match only explicit dots. */
export const glob = async (pattern: string): Promise<Array<string>> => {
  const root = path.parse(pattern).root
  const segments = pattern.slice(root.length).split(/[\\/]+/).filter((s) => s !== "")
  const out = new Set<string>()
  const walk = async (dir: string, i: number): Promise<void> => {
    if (i === segments.length) {
      // a device or FIFO that matches is reported when read; directories are just not files
      const st = await fs.stat(dir).catch(() => undefined)
      if (st !== undefined && !st.isDirectory()) out.add(dir)
      return
    }
    const seg = segments[i]
    if (!hasGlob(seg)) return walk(path.join(dir, seg), i + 1)
    if (seg === "**") {
      await walk(dir, i + 1)
      for (const d of await listDir(dir)) {
        if (d.isDirectory() && !d.name.startsWith(".")) await walk(path.join(dir, d.name), i)
      }
      return
    }
    const re = segmentRegex(seg)
    for (const d of await listDir(dir)) {
      if (d.name.startsWith(".") && !seg.startsWith(".")) continue
      if (re.test(d.name)) await walk(path.join(dir, d.name), i + 1)
    }
  }
  await walk(root, 0)
  return [...out].sort()
}

// ---------------------------------------------------------------------------

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/** The text `sentinel test` prints for a valid config (ids and paths escaped: one line per item, whatever they contain). */
export const summarize = (config: SentinelConfig): string => {
  const lines = [
    `configuration OK (schema ${config.schemaVersion}): ${plural(config.listeners.length, "listener")}, ` +
    `${plural(config.routes.length, "route")}, ${plural(config.upstreams.length, "upstream")}, ` +
    `${plural(config.filters.length, "filter")}, ${plural(config.agents.length, "agent")}`
  ]
  for (const l of config.listeners) {
    lines.push(`  listener ${l.id}: ${l.protocol}://${formatHostPort(l.address.host, l.address.port)}${l.admin ? " (admin)" : ""}`)
  }
  for (const r of [...config.routes].sort((a, b) => b.priority - a.priority)) {
    const target = r.upstream !== undefined
      ? `upstream ${r.upstream}`
      : r.staticFiles !== undefined ? `static files ${r.staticFiles.root}` : `builtin ${r.builtinHandler}`
    const filters = r.filters.length === 0 ? "" : ` via ${r.filters.join(", ")}`
    lines.push(`  route ${r.id} (priority ${r.priority}): ${r.matches.length === 0 ? "all requests" : plural(r.matches.length, "condition")}${filters} -> ${target}`)
  }
  for (const u of config.upstreams) {
    lines.push(`  upstream ${u.id}: ${plural(u.targets.length, "target")}, ${u.loadBalancing}, connect timeout ${Duration.format(u.timeouts.connect)}`)
  }
  return lines.map(escapeText).join("\n")
}

/** Formats a failure for the command line. */
export const formatInvalid = (e: ConfigInvalid): string =>
  `configuration invalid (${plural(e.issues.length, "problem")}):\n${sortIssues(e.issues).map(formatIssue).join("\n")}`
