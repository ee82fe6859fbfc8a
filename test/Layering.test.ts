/**
 * Folders import one way (README "Layout", issue 12): the entry files may import everything;
 * server/ (sockets) -> pipeline/ -> the stage folders (routing, filters, agents, upstream,
 * handlers) and observability/ -> http/ and config/. The test reads every `from "./x.js"`
 * import of src/ and fails on an arrow the rules below forbid, so the shape cannot drift back.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const root = path.resolve(__dirname, "../src")
const ENTRY = new Set(["App.ts", "Program.ts", "main.ts", "Launch.ts", "Cli.ts", "index.ts"])

const files = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? files(p) : e.name.endsWith(".ts") ? [p] : []
  })

/** `from "./x.js"` imports of a file, as paths relative to src/ (".ts"). */
const importsOf = (text: string, file: string): Array<string> =>
  [...text.matchAll(/from\s+"(\.{1,2}\/[^"]+)\.js"/g)].map((m) =>
    path.relative(root, path.resolve(path.dirname(file), m[1] + ".ts")).split(path.sep).join("/")
  )

const folderOf = (rel: string): string => (rel.includes("/") ? rel.slice(0, rel.indexOf("/")) : "")

/** Folders that are not the socket layer: they never import server/ (nor the entry files). */
const NOT_SERVER = new Set(["pipeline", "routing", "filters", "upstream", "agents", "handlers", "cache", "config", "observability", "tls", "http"])

/** What observability/ may see of the stages: the per-request context, the stage seams, the errors, the listener's reports. */
const STAGE_INTERFACE = new Set([
  "pipeline/RequestContext.ts",
  "pipeline/Stage.ts",
  "pipeline/Errors.ts",
  "pipeline/ErrorResponse.ts",
  "pipeline/Connection.ts",
  "upstream/Errors.ts"
])

/** node: modules http/ may use as pure functions (address syntax); others only as types. */
const HTTP_PURE_NODE = new Set(["node:net"])

describe("layering", () => {
  const all = files(root).map((f) => {
    const text = fs.readFileSync(f, "utf8")
    return { rel: path.relative(root, f).split(path.sep).join("/"), text, imports: importsOf(text, f) }
  })
  const arrows = (keep: (from: string, to: string) => boolean) =>
    all.flatMap((f) => f.imports.filter((i) => keep(f.rel, i)).map((i) => `${f.rel} -> ${i}`))

  it("http/ is pure: it imports no other folder of src/, and node: I/O modules only as types", () => {
    expect(arrows((from, to) => folderOf(from) === "http" && folderOf(to) !== "http")).toEqual([])
    const io = all
      .filter((f) => folderOf(f.rel) === "http")
      .flatMap((f) =>
        [...f.text.matchAll(/^import\s+(type\s+)?[^;]*?from\s+"(node:[^"]+)"/gm)]
          .filter((m) => m[1] === undefined && !HTTP_PURE_NODE.has(m[2]))
          .map((m) => `${f.rel} -> ${m[2]}`)
      )
    expect(io).toEqual([])
  })

  it("no folder but server/ and the entry files imports server/; only entry files import entry files", () => {
    expect(arrows((from, to) => NOT_SERVER.has(folderOf(from)) && folderOf(to) === "server")).toEqual([])
    expect(arrows((from, to) => folderOf(to) === "" && ENTRY.has(to) && !(folderOf(from) === "" && ENTRY.has(from)))).toEqual([])
  })

  it("observability/ sees the stages only through their interface (context, stage seams, errors)", () => {
    expect(
      arrows((from, to) => {
        if (folderOf(from) !== "observability") return false
        const folder = folderOf(to)
        return !(folder === "observability" || folder === "http" || folder === "config" || STAGE_INTERFACE.has(to))
      })
    ).toEqual([])
  })

  it("config/blocks/ (the KDL decoder's blocks) imports only config/ and http/, no runtime module", () => {
    expect(arrows((from, to) => from.startsWith("config/blocks/") && !["config", "http"].includes(folderOf(to)))).toEqual([])
  })

  it("the stage folders never import the pipeline's machinery, only its interface", () => {
    const machinery = new Set(["pipeline/Pipeline.ts", "pipeline/Answer.ts", "pipeline/Stages.ts", "pipeline/Upstream.ts"])
    expect(arrows((from, to) => ["routing", "filters", "agents", "upstream", "handlers", "cache"].includes(folderOf(from)) && machinery.has(to))).toEqual([])
  })
})
