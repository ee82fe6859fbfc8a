/**
 * The package root is found from any of the layouts the code runs in (src/ in the tests,
 * dist/ modules, dist/bundle/chunks/ for the bundled service), and outside the package a
 * clear error says what was looked for.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { describe, expect, it } from "vitest"
import { findPackageRoot, packagePath, packageRoot } from "../src/PackageRoot.js"

const ROOT = join(__dirname, "..")

describe("package root", () => {
  it("is this checkout from src/, from dist/'s modules and from the bundle's chunks, given a path or a file: URL", () => {
    expect(packageRoot()).toBe(ROOT)
    expect(packagePath("proto")).toBe(join(ROOT, "proto"))
    for (const f of ["src/agents/GrpcProto.ts", "dist/agents/GrpcProto.js", "dist/bundle/chunks/Program-X.js", "dist/bundle/main.js"]) {
      expect(findPackageRoot(join(ROOT, f))).toBe(ROOT)
      expect(findPackageRoot(pathToFileURL(join(ROOT, f)).href)).toBe(ROOT)
    }
  })

  it("skips another package's package.json (a dependency's) and unreadable ones on the way up; fails clearly above all", () => {
    const dir = mkdtempSync(join(tmpdir(), "sentinel-root-"))
    try {
      mkdirSync(join(dir, "node_modules", "dep", "lib"), { recursive: true })
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "sentinel-proxy", version: "9.9.9" }))
      writeFileSync(join(dir, "node_modules", "dep", "package.json"), JSON.stringify({ name: "dep" }))
      writeFileSync(join(dir, "node_modules", "dep", "lib", "package.json"), "{ not json")
      expect(findPackageRoot(join(dir, "node_modules", "dep", "lib", "x.js"))).toBe(dir)
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "other" }))
      expect(() => findPackageRoot(join(dir, "node_modules", "dep", "lib", "x.js"))).toThrow(/no package\.json named "sentinel-proxy" above .*dep\/lib/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
