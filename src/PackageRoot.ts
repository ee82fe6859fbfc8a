/**
 * The package's own directory (where package.json, proto/ and node_modules/ are), found from
 * wherever the calling module runs: src/ (the tests), dist/ (the tsc modules) or
 * dist/bundle/chunks/ (the bundled service, scripts/bundle.mjs). It walks up from `from` to the
 * first package.json named `sentinel-proxy`; a fixed `../..` would hold for one layout only.
 */
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const PACKAGE_NAME = "sentinel-proxy"

/** The directory holding our package.json, searched upward from `from` (a file: URL or path). */
export const findPackageRoot = (from: string): string => {
  const start = path.dirname(from.startsWith("file:") ? fileURLToPath(from) : from)
  for (let dir = start; ; ) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: unknown }
      if (pkg.name === PACKAGE_NAME) return dir
    } catch {
      // no package.json here, or not JSON: look further up
    }
    const up = path.dirname(dir)
    if (up === dir) throw new Error(`${PACKAGE_NAME}: no package.json named "${PACKAGE_NAME}" above ${start}`)
    dir = up
  }
}

let root: string | undefined
/** This package's root (computed once). */
export const packageRoot = (): string => (root ??= findPackageRoot(import.meta.url))

/** A path inside the package, e.g. `packagePath("proto")`. */
export const packagePath = (...parts: ReadonlyArray<string>): string => path.join(packageRoot(), ...parts)
