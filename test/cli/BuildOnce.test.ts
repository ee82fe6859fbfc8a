/**
 * The quick start builds once: `npm ci` builds (`prepare`), and `npm start`'s pre-step
 * (`scripts/build-if-stale.mjs`) builds again only when a source changed since the last
 * successful build, or when an output is missing (the bundled service, dist/bundle/main.js, which
 * dist/main.js runs). Exercised in a scratch package whose `build` counts its runs and writes
 * empty outputs.
 */
import { describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const SCRIPT = resolve("scripts/build-if-stale.mjs")
const OUTPUTS = ["dist/main.js", "dist/Launch.js", "dist/bundle/main.js"]

const scratch = () => {
  const dir = mkdtempSync(join(tmpdir(), "sentinel-build-once-"))
  const build = `node build.cjs && node ${JSON.stringify(SCRIPT)} --stamp`
  writeFileSync(
    join(dir, "build.cjs"),
    `const fs = require("fs"); fs.appendFileSync("builds.txt", "x")
for (const f of ${JSON.stringify(OUTPUTS)}) { fs.mkdirSync(require("path").dirname(f), { recursive: true }); fs.writeFileSync(f, "") }
`
  )
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "scratch", private: true, scripts: { build } }))
  writeFileSync(join(dir, "tsconfig.json"), "{}")
  mkdirSync(join(dir, "scripts"))
  writeFileSync(join(dir, "scripts", "bundle.mjs"), "")
  mkdirSync(join(dir, "src"))
  mkdirSync(join(dir, "agents"))
  writeFileSync(join(dir, "src", "a.ts"), "export {}\n")
  writeFileSync(join(dir, "agents", "b.ts"), "export {}\n")
  // every input a minute in the past: the stamp written now is clearly newer
  const past = new Date(Date.now() - 60_000)
  for (const p of ["package.json", "tsconfig.json", "scripts/bundle.mjs", "src/a.ts", "agents/b.ts", "src", "agents"]) utimesSync(join(dir, p), past, past)
  return dir
}

const prestart = (dir: string) => {
  const r = spawnSync(process.execPath, [SCRIPT], { cwd: dir, encoding: "utf8", timeout: 60_000 })
  expect(r.status, r.stderr).toBe(0)
  return existsSync(join(dir, "builds.txt")) ? readFileSync(join(dir, "builds.txt"), "utf8").length : 0
}

describe("npm start builds only when the build is not current", () => {
  it("package.json: `build` records its success, `prestart` builds only if stale, `pretest` always builds", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8"))
    expect(pkg.scripts.prepare).toBe("npm run build")
    expect(pkg.scripts.build).toMatch(/&& node scripts\/bundle\.mjs && node scripts\/build-if-stale\.mjs --stamp$/)
    expect(pkg.scripts.prestart).toBe("node scripts/build-if-stale.mjs")
    expect(pkg.scripts.pretest).toBe("npm run build")
  })

  it("no stamp builds; a current stamp does not; a changed, added or removed source builds again", () => {
    const dir = scratch()
    try {
      expect(prestart(dir)).toBe(1) // nothing built yet (e.g. a checkout without npm ci)
      expect(prestart(dir)).toBe(1) // current: `npm start` right after `npm ci` does not rebuild
      // from here on: the last build 30 s ago, inputs 60 s ago, a change 10 s ago
      const at = (secondsAgo: number) => new Date(Date.now() - secondsAgo * 1000)
      const touch = (p: string, secondsAgo: number) => utimesSync(join(dir, p), at(secondsAgo), at(secondsAgo))
      touch("dist/.build-stamp", 30)
      expect(prestart(dir)).toBe(1)
      touch("src/a.ts", 10)
      expect(prestart(dir)).toBe(2) // an edited source
      touch("dist/.build-stamp", 5)
      expect(prestart(dir)).toBe(2)
      writeFileSync(join(dir, "agents", "c.ts"), "export {}\n")
      touch("agents/c.ts", 60)
      touch("agents", 2) // a file added (or removed): its directory changed
      expect(prestart(dir)).toBe(3)
      touch("dist/.build-stamp", 1)
      touch("package.json", 0)
      expect(prestart(dir)).toBe(4) // package settings changed
      touch("dist/.build-stamp", 0)
      touch("package.json", 60)
      expect(prestart(dir)).toBe(4)
      touch("scripts/bundle.mjs", 0)
      touch("dist/.build-stamp", 10)
      expect(prestart(dir)).toBe(5) // the bundle's settings changed
      rmSync(join(dir, "dist", "bundle"), { recursive: true })
      expect(prestart(dir)).toBe(6) // the bundled service is gone (e.g. only tsc was run)
      expect(existsSync(join(dir, "dist", "bundle", "main.js"))).toBe(true)
      expect(prestart(dir)).toBe(6)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a failed build leaves no stamp, so the next start builds again", () => {
    const dir = scratch()
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
      pkg.scripts.build = `node -e "require('fs').appendFileSync('builds.txt', 'x'); process.exit(1)" && node ${JSON.stringify(SCRIPT)} --stamp`
      writeFileSync(join(dir, "package.json"), JSON.stringify(pkg))
      utimesSync(join(dir, "package.json"), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
      const r = spawnSync(process.execPath, [SCRIPT], { cwd: dir, encoding: "utf8", timeout: 60_000 })
      expect(r.status).not.toBe(0)
      expect(existsSync(join(dir, "dist", ".build-stamp"))).toBe(false)
      spawnSync(process.execPath, [SCRIPT], { cwd: dir, encoding: "utf8", timeout: 60_000 })
      expect(readFileSync(join(dir, "builds.txt"), "utf8")).toBe("xx")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
