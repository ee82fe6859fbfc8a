/**
 * Folders import one way (README "Extending"; issue 12 finishes the job): pure HTTP syntax in
 * `src/http/` imports no other folder; the pipeline, the stage folders (routing, filters,
 * upstream, agents, handlers), config/ and observability/ never import `server/` or the entry files; nothing
 * but the entry files imports the entry files. The imports that still break a rule are listed
 * by name below, so that no new one slips in and each removed one must leave the list.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const root = path.resolve(__dirname, "../src")
const ENTRY = new Set(["App.ts", "Program.ts", "main.ts", "Cli.ts", "index.ts"])

const files = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? files(p) : e.name.endsWith(".ts") ? [p] : []
  })

/** `from "./x.js"` imports of a file, as paths relative to src/ (".ts"). */
const importsOf = (file: string): Array<string> => {
  const text = fs.readFileSync(file, "utf8")
  return [...text.matchAll(/from\s+"(\.{1,2}\/[^"]+)\.js"/g)].map((m) =>
    path.relative(root, path.resolve(path.dirname(file), m[1] + ".ts")).split(path.sep).join("/")
  )
}

const folderOf = (rel: string): string => (rel.includes("/") ? rel.slice(0, rel.indexOf("/")) : "")

/** Imports that break a rule today, to be removed by issue 12; an entry that no longer exists fails too. */
const KNOWN_DEBTS = new Set([
  "config/Validate.ts -> server/Tls.ts",
  "handlers/StaticFilesRoute.ts -> server/ListenerCut.ts",
  "observability/AccessLog.ts -> server/Listener.ts",
  // the request's validation and the listener's cut records belong in the pipeline (issue 12)
  "pipeline/Pipeline.ts -> server/EdgePolicy.ts",
  "pipeline/Pipeline.ts -> server/ListenerCut.ts",
  "pipeline/Pipeline.ts -> server/RequestValidation.ts",
  "pipeline/Pipeline.ts -> server/ResponseClose.ts"
])

const STAGES = new Set(["pipeline", "routing", "filters", "upstream", "agents", "handlers", "config", "observability", "websocket"])

describe("layering", () => {
  const all = files(root).map((f) => ({ rel: path.relative(root, f).split(path.sep).join("/"), imports: importsOf(f) }))

  it("http/ is pure: it imports nothing from another folder of src/", () => {
    const bad = all.filter((f) => folderOf(f.rel) === "http").flatMap((f) => f.imports.filter((i) => folderOf(i) !== "http").map((i) => `${f.rel} -> ${i}`))
    expect(bad).toEqual([])
  })

  it("the pipeline, stage folders, config/ and observability/ never import server/ or the entry files (known debts aside); only entry files import entry files", () => {
    const violations: Array<string> = []
    for (const f of all) {
      const from = folderOf(f.rel)
      for (const i of f.imports) {
        const to = folderOf(i)
        const entry = to === "" && ENTRY.has(i)
        if (entry && !(from === "" && ENTRY.has(f.rel))) violations.push(`${f.rel} -> ${i}`)
        else if (STAGES.has(from) && to === "server") violations.push(`${f.rel} -> ${i}`)
      }
    }
    const unexpected = violations.filter((v) => !KNOWN_DEBTS.has(v))
    expect(unexpected).toEqual([])
    // a debt paid must leave the list
    expect([...KNOWN_DEBTS].filter((d) => !violations.includes(d))).toEqual([])
  })
})
