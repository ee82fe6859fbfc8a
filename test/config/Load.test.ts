import { parse, type Node } from "@bgotink/kdl"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { ConfigInvalid, formatIssue } from "../../src/config/ConfigIssue.js"
import { topSpec } from "../../src/config/Kdl.js"
import { knownPaths } from "../../src/config/KdlDecoder.js"
import { formatInvalid, glob, loadConfig, loadConfigDetailed, maxFileBytes, summarize } from "../../src/config/Load.js"
import { notSupportedYet } from "../../src/config/NotSupportedYet.js"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-config-"))
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))

let n = 0
/** Writes files into a fresh directory; returns its path. */
const tree = (files: Record<string, string>): string => {
  const dir = path.join(root, `t${n++}`)
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    fs.writeFileSync(path.join(dir, name), text)
  }
  return dir
}
const run = <A>(e: Effect.Effect<A, ConfigInvalid>) => Effect.runPromise(Effect.either(e))
const issues = async (file: string, env: Record<string, string> = {}) => {
  const r = await run(loadConfigDetailed(file, { env }))
  if (Either.isRight(r)) throw new Error("expected failure")
  return r.left.issues.map((i) => formatIssue({ ...i, file: path.relative(path.dirname(file), i.file) }))
}

const L = (id = "main", port = 8080) => `listeners {\n    listener "${id}" {\n        address "127.0.0.1:${port}"\n    }\n}\n`
const repo = path.resolve(import.meta.dirname, "../..")

describe("loadConfig: shipped files", () => {
  it("config/sentinel.kdl loads without errors or warnings: /health, /status and / are builtins", async () => {
    const r = await run(loadConfigDetailed(path.join(repo, "config/sentinel.kdl")))
    expect(Either.isRight(r)).toBe(true)
    const { config, warnings } = Either.getOrThrow(r)
    expect(warnings).toEqual([])
    expect(config.listeners[0].address).toEqual({ host: "127.0.0.1", port: 8080 })
    expect(config.routes.map((x) => [x.matches, x.builtinHandler])).toEqual([
      [[{ _tag: "Path", path: "/health" }], "health"],
      [[{ _tag: "Path", path: "/status" }], "status"],
      [[{ _tag: "Path", path: "/" }], "status"]
    ])
  })

  it("config/example.kdl loads without errors or warnings", async () => {
    const r = await run(loadConfigDetailed(path.join(repo, "config/example.kdl")))
    expect(Either.isRight(r) ? r.right.warnings : r.left.format()).toEqual([])
  })

  it("config/example.kdl documents every key the decoder knows", () => {
    const doc = parse(fs.readFileSync(path.join(repo, "config/example.kdl"), "utf8"))
    const seen = new Set<string>()
    const walk = (nodes: ReadonlyArray<Node>, prefix: string) => {
      for (const node of nodes) {
        const p = prefix === "" ? node.getName() : `${prefix}.${node.getName()}`
        seen.add(p)
        walk(node.children?.nodes ?? [], p)
      }
    }
    walk(doc.nodes, "")
    const missing = knownPaths(topSpec).filter((p) => !seen.has(p))
    expect(missing).toEqual([])
  })

  it("no name is both decoded and listed as not supported yet", () => {
    const known = knownPaths(topSpec)
    for (const [block, names] of Object.entries(notSupportedYet)) {
      for (const name of names) expect(known).not.toContain(block === "" ? name : `${block}.${name}`)
    }
  })
})

describe("loadConfig: files, includes, env", () => {
  it("a missing file is a ConfigInvalid naming it", async () => {
    const r = await run(loadConfig(path.join(root, "nope.kdl")))
    expect(Either.isLeft(r) && r.left.format()).toMatch(/nope\.kdl:1:1: cannot read config file .*nope\.kdl: ENOENT/)
  })

  it("includes are relative, sorted, recursive; collections merge", async () => {
    const dir = tree({
      "main.kdl": `include "conf.d/*.kdl"\n${L()}`,
      "conf.d/b.kdl": `routes {\n    route "b" { upstream "u"; }\n}\ninclude "../more/**/*.kdl"\n`,
      "conf.d/a.kdl": `upstreams {\n    upstream "u" { target "h:1"; }\n}\n`,
      "more/x/y/c.kdl": `routes {\n    route "c" { builtin-handler "status"; }\n}\n`,
      "conf.d/ignored.txt": "garbage"
    })
    const r = await run(loadConfigDetailed(path.join(dir, "main.kdl")))
    const loaded = Either.getOrThrow(r)
    expect(loaded.config.routes.map((x) => x.id)).toEqual(["b", "c"])
    expect(loaded.config.upstreams.map((x) => x.id)).toEqual(["u"])
    expect(loaded.files.map((f) => path.relative(dir, f))).toEqual(["main.kdl", "conf.d/a.kdl", "conf.d/b.kdl", "more/x/y/c.kdl"])
  })

  it("errors in included files point into those files; duplicate ids across files name both", async () => {
    const dir = tree({
      "main.kdl": `${L()}include "extra.kdl"\n`,
      "extra.kdl": `listeners {\n    listener "main" { address "127.0.0.1:1"; }\n}\nsystem { wrker-threads 1; }\n`
    })
    expect(await issues(path.join(dir, "main.kdl"))).toEqual([
      `extra.kdl:2:14: duplicate listener id "main" (first defined at ${path.join(dir, "main.kdl")}:2:14)`,
      "extra.kdl:4:10: unknown node `wrker-threads` in `system`; did you mean `worker-threads`?"
    ])
  })

  it("include cycles are reported clearly", async () => {
    const dir = tree({ "a.kdl": `${L()}include "b.kdl"\n`, "b.kdl": `include "a.kdl"\n` })
    const [e] = await issues(path.join(dir, "a.kdl"))
    expect(e).toMatch(/^b\.kdl:1:1: include cycle: .*a\.kdl -> .*b\.kdl -> .*a\.kdl$/)
  })

  it("a glob matching nothing warns; a missing literal file is an error", async () => {
    const dir = tree({ "a.kdl": `${L()}include "none/*.kdl"\n`, "b.kdl": `${L()}include "none.kdl"\n` })
    const r = Either.getOrThrow(await run(loadConfigDetailed(path.join(dir, "a.kdl"))))
    expect(r.warnings.map(formatIssue)).toEqual([`${path.join(dir, "a.kdl")}:6:1: include "none/*.kdl" matches no file`])
    expect(await issues(path.join(dir, "b.kdl"))).toEqual(["b.kdl:6:1: included file not found: none.kdl"])
  })

  it.skipIf(process.platform === "win32")("an include of something that is not a regular file says so, without reading it", async () => {
    const dir = tree({ "main.kdl": `${L()}include "/dev/zero"\ninclude "sub"\ninclude "fifos/*.kdl"\n`, "sub/x.kdl": "" })
    fs.mkdirSync(path.join(dir, "fifos"))
    expect(spawnSync("mkfifo", [path.join(dir, "fifos/f.kdl")]).status).toBe(0)
    expect(await issues(path.join(dir, "main.kdl"))).toEqual([
      "main.kdl:6:1: included file /dev/zero is not a regular file (a character device)",
      `main.kdl:7:1: included file ${path.join(dir, "sub")} is not a regular file (a directory)`,
      `main.kdl:8:1: included file ${path.join(dir, "fifos/f.kdl")} is not a regular file (a FIFO)`
    ])
    expect((await issues(path.join(dir, "sub")))[0]).toBe(`sub:1:1: config file ${path.join(dir, "sub")} is not a regular file (a directory)`)
  })

  it(`files larger than ${maxFileBytes} bytes are refused before they are read`, async () => {
    const dir = tree({ "main.kdl": `${L()}include "big.kdl"\n`, "big.kdl": "" })
    fs.truncateSync(path.join(dir, "big.kdl"), maxFileBytes + 1)
    expect(await issues(path.join(dir, "main.kdl"))).toEqual([
      `main.kdl:6:1: included file ${path.join(dir, "big.kdl")} is larger than 4 MiB (${maxFileBytes + 1} bytes)`
    ])
  })

  it("a singleton block in an included file overrides with a warning", async () => {
    const dir = tree({ "main.kdl": `${L()}system { worker-threads 2; }\ninclude "over.kdl"\n`, "over.kdl": `system { worker-threads 4; }\n` })
    const r = Either.getOrThrow(await run(loadConfigDetailed(path.join(dir, "main.kdl"))))
    expect(r.config.system.workerThreads).toBe(4)
    expect(r.warnings.map((w) => w.message)).toEqual([`\`system\` overrides the one at ${path.join(dir, "main.kdl")}:6:1`])
  })

  it("${VAR} substitution in loaded files; unset variables are located errors", async () => {
    const dir = tree({ "main.kdl": `listeners {\n    listener "main" { address "127.0.0.1:\${PORT:-81}"; }\n}\nsystem { pid-file "\${RUN}/p"; }\n` })
    const ok = Either.getOrThrow(await run(loadConfigDetailed(path.join(dir, "main.kdl"), { env: { RUN: "/run" } })))
    expect(ok.config.listeners[0].address.port).toBe(81)
    expect(ok.config.system.pidFile).toBe("/run/p")
    expect(await issues(path.join(dir, "main.kdl"))).toEqual([
      "main.kdl:4:19: environment variable RUN is not set (use ${RUN:-default} for a default)"
    ])
  })

  it("ConfigInvalid lists every issue, one per line", async () => {
    const dir = tree({ "main.kdl": `${L()}limits { max-body-size -1; }\nwaf { }\n` })
    const r = await run(loadConfig(path.join(dir, "main.kdl")))
    if (Either.isRight(r)) throw new Error("expected failure")
    expect(r.left).toBeInstanceOf(ConfigInvalid)
    expect(r.left._tag).toBe("ConfigInvalid")
    expect(r.left.format().split("\n")).toHaveLength(2)
    expect(formatInvalid(r.left)).toMatch(/^configuration invalid \(2 problems\):\n.*main\.kdl:6:24: `max-body-size` must not be negative, got -1\n.*main\.kdl:7:1: `waf` is not supported yet$/)
  })

  it("summarize counts listeners, routes and upstreams", async () => {
    const c = Either.getOrThrow(await run(loadConfigDetailed(path.join(repo, "config/example.kdl")))).config
    const s = summarize(c)
    expect(s.split("\n")[0]).toBe("configuration OK (schema 1.0): 4 listeners, 7 routes, 4 upstreams, 11 filters, 4 agents")
    expect(s).toContain("  route api (priority 100): 7 conditions via cors, api-rl, auth, waf, security, strip-debug, slow-api, gzip -> upstream api")
    expect(s).toContain("  route site (priority 10): 1 condition -> static files /srv/www")
    expect(s).toContain("  listener admin: http://127.0.0.1:9901 (admin)")
    expect(s).toContain("  listener secure: https://0.0.0.0:8443")
    expect(s).toContain("  listener internal-h2: h2://127.0.0.1:8081")
  })

  it("glob supports *, ?, {a,b}, ** and skips hidden entries", async () => {
    const dir = tree({ "a1.kdl": "", "a2.kdl": "", "b.kdl": "", ".h.kdl": "", "d/e/f.kdl": "", "d/.x/g.kdl": "" })
    const rel = async (p: string) => (await glob(path.join(dir, p))).map((f) => path.relative(dir, f))
    expect(await rel("a?.kdl")).toEqual(["a1.kdl", "a2.kdl"])
    expect(await rel("{b,a1}.kdl")).toEqual(["a1.kdl", "b.kdl"])
    expect(await rel("*.kdl")).toEqual(["a1.kdl", "a2.kdl", "b.kdl"])
    expect(await rel("**/*.kdl")).toEqual(["a1.kdl", "a2.kdl", "b.kdl", "d/e/f.kdl"])
  })
})
