/**
 * The documentation a user of the repository reads stands on its own: it names no file
 * outside the repository (`../shared/...`, a sibling checkout the user does not have), and
 * every repository path it quotes exists.
 */
import { describe, expect, it } from "vitest"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"

const DOCS = [
  "README.md",
  "bench/README.md",
  "agents/README.md",
  ...readdirSync("config")
    .filter((f) => f.endsWith(".kdl"))
    .map((f) => join("config", f))
]

/** Directories a quoted path may start with; `dist/` and `bench/results/` are made by running things. */
const REPO_DIRS = ["src/", "test/", "bench/", "config/", "agents/", "scripts/"]
const GENERATED = ["bench/results/"]

describe("documentation stands alone", () => {
  it.each(DOCS)("%s names no file outside the repository", (doc) => {
    const text = readFileSync(doc, "utf8")
    const outside = text.split("\n").flatMap((line, i) => (/(^|[\s`'"(])\.\.\/|shared\/(DESIGN|bench|reference|STYLE)/.test(line) ? [`${doc}:${i + 1}: ${line.trim()}`] : []))
    expect(outside).toEqual([])
  })

  it.each(DOCS)("every repository path %s quotes exists", (doc) => {
    const text = readFileSync(doc, "utf8")
    const quoted = [...text.matchAll(/`([A-Za-z0-9_.\-/]+)`/g)].map((m) => m[1].replace(/[.,:;]$/, ""))
    const missing = quoted.filter(
      (p) =>
        REPO_DIRS.some((d) => p.startsWith(d)) &&
        !GENERATED.some((g) => p.startsWith(g)) &&
        !p.includes("<") &&
        !existsSync(p)
    )
    expect(missing).toEqual([])
  })
})
