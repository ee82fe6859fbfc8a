#!/usr/bin/env node
/**
 * `npm start`'s pre-step: run `npm run build` only when the build is not current, so the quick
 * start (`npm ci`, which builds in `prepare`, then `npm start`) builds once.
 *
 *   node scripts/build-if-stale.mjs           build if a source changed since the last build
 *   node scripts/build-if-stale.mjs --stamp   record that a build just succeeded (the last
 *                                             step of `npm run build`)
 *
 * "Current" means `dist/.build-stamp` is newer than every file and directory under `src/` and
 * `agents/` and than the package, TypeScript and bundle settings (a directory's time covers
 * files added or removed), and the build's outputs are there: the tsc modules' and the bundled
 * service's entries (`dist/Launch.js`, `dist/bundle/main.js`, which `dist/main.js` runs). No
 * stamp, a missing output, or anything newer, builds. Runs in the package root (npm's cwd for
 * scripts).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const root = process.cwd()
const stamp = path.join(root, "dist", ".build-stamp")
const INPUT_DIRS = ["src", "agents"]
const INPUT_FILES = ["package.json", "tsconfig.json", "tsconfig.build.json", "scripts/bundle.mjs"]
const OUTPUTS = ["dist/main.js", "dist/Launch.js", "dist/bundle/main.js"]

/** Newest modification time (ms) of `p` and, for a directory, of everything under it. */
const newest = (p) => {
  let st
  try {
    st = fs.statSync(p)
  } catch {
    return 0
  }
  let t = st.mtimeMs
  if (st.isDirectory()) {
    for (const e of fs.readdirSync(p)) if (e !== "node_modules") t = Math.max(t, newest(path.join(p, e)))
  }
  return t
}

if (process.argv.includes("--stamp")) {
  fs.mkdirSync(path.dirname(stamp), { recursive: true })
  fs.writeFileSync(stamp, `${new Date().toISOString()}\n`)
  process.exit(0)
}

const built = (() => {
  try {
    return fs.statSync(stamp).mtimeMs
  } catch {
    return undefined
  }
})()
const sources = Math.max(...INPUT_DIRS.map((d) => newest(path.join(root, d))), ...INPUT_FILES.map((f) => newest(path.join(root, f))))
const missing = OUTPUTS.filter((f) => !fs.existsSync(path.join(root, f)))
if (built !== undefined && built >= sources && missing.length === 0) process.exit(0)

process.stderr.write(
  built === undefined
    ? "build-if-stale: no build yet, building\n"
    : missing.length > 0
      ? `build-if-stale: ${missing.join(", ")} missing, building\n`
      : "build-if-stale: sources changed since the last build, building\n"
)
// under npm, run the same npm; otherwise the one on PATH
const npm = process.env.npm_execpath
const r = npm
  ? spawnSync(process.execPath, [npm, "run", "build"], { stdio: "inherit" })
  : spawnSync(process.platform === "win32" ? "npm.cmd" : "npm", ["run", "build"], { stdio: "inherit" })
process.exit(r.status ?? 1)
