/**
 * What a new user trips over: the first error printed is the real cause. An error that only
 * follows from another (no listener after a misspelt `listners`, a syntax error or a missing
 * include) is left out or listed last; syntax errors say what is wrong in words; a key in the
 * wrong block names the block where it belongs.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { formatIssue, sortIssues } from "../../src/config/ConfigIssue.js"
import { decodeKdl } from "../../src/config/Kdl.js"
import { formatInvalid, loadConfigDetailed } from "../../src/config/Load.js"

const L = `listeners { listener "main" { address "127.0.0.1:8080"; }; }\n`
const errs = (text: string) => decodeKdl(text, { file: "t.kdl" }).errors.map(formatIssue)
const noListener = "no listener defined: add `listeners { listener \"main\" { address \"0.0.0.0:8080\" } }`"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-first-"))
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))
let n = 0
const tree = (files: Record<string, string>): string => {
  const dir = path.join(root, `t${n++}`)
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
    fs.writeFileSync(path.join(dir, name), text)
  }
  return dir
}
const loadIssues = async (file: string) => {
  const r = await Effect.runPromise(Effect.either(loadConfigDetailed(file, { env: {} })))
  if (Either.isRight(r)) throw new Error("expected failure")
  return { lines: r.left.issues.map((i) => formatIssue({ ...i, file: path.relative(path.dirname(file), i.file) })), printed: formatInvalid(r.left) }
}

describe("an error that follows from another is not printed first", () => {
  it("a misspelt `listeners` (or `listener`) gives its did-you-mean, not \"no listener defined\"", () => {
    expect(errs(`listners {\n    listener "main" { address "127.0.0.1:8080"; }\n}`)).toEqual([
      "t.kdl:1:1: unknown node `listners` at the top level; did you mean `listeners`?"
    ])
    expect(errs(`listener "main" { address "127.0.0.1:8080"; }`)).toEqual([
      "t.kdl:1:1: unknown node `listener` at the top level; did you mean `listeners`?"
    ])
    expect(errs(`listeners {\n    listner "main" { address "127.0.0.1:8080"; }\n}`)).toEqual([
      "t.kdl:2:5: unknown node `listner` in `listeners`; did you mean `listener`?"
    ])
  })

  it("a config that really has no listener says so, after the other problems", () => {
    expect(errs(`// comment\n\nsystem { wrker-threads 2; }`)).toEqual([
      "t.kdl:3:10: unknown node `wrker-threads` in `system`; did you mean `worker-threads`?",
      `t.kdl:1:1: ${noListener}`
    ])
    expect(errs(`system { }`)).toEqual([`t.kdl:1:1: ${noListener}`])
  })

  it("a syntax error in the main file is the only error (loadConfig)", async () => {
    const dir = tree({ "main.kdl": `listeners {\n    listener "main" { address "127.0.0.1:8080" } listener "b" { address "127.0.0.1:8081" }\n}\n` })
    const { lines } = await loadIssues(path.join(dir, "main.kdl"))
    expect(lines).toEqual([
      "main.kdl:2:50: invalid KDL: missing `;` or a newline between two nodes: `listener` follows `}` on the same line (write `} listener` as `}; listener`, or start `listener` on a new line)"
    ])
  })

  it("a missing include or an included file that does not parse: no \"no listener\"; references into it come after the cause", async () => {
    const missing = tree({ "main.kdl": `include "listeners.kdl"\nroutes { route "r" { builtin-handler "status"; }; }\n` })
    expect((await loadIssues(path.join(missing, "main.kdl"))).lines).toEqual(["main.kdl:1:1: included file not found: listeners.kdl"])

    const broken = tree({
      "a-main.kdl": `routes {\n    route "r" { upstream "api"; }\n}\ninclude "z-upstreams.kdl"\n${L}`,
      "z-upstreams.kdl": `upstreams {\n    upstream "api" { target "127.0.0.1:3000" }\n"\n}\n`
    })
    const { lines, printed } = await loadIssues(path.join(broken, "a-main.kdl"))
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/^z-upstreams\.kdl:\d+:\d+: invalid KDL: /)
    expect(lines[1]).toBe("a-main.kdl:2:26: route \"r\" references unknown upstream \"api\"")
    // the command line's listing (which sorts again) keeps that order
    const out = printed.split("\n").slice(1)
    expect(out[0]).toContain("z-upstreams.kdl")
    expect(out[1]).toContain("references unknown upstream")
  })

  it("sortIssues keeps secondary issues last, whatever their file and position", () => {
    const sorted = sortIssues([
      { file: "a.kdl", line: 1, col: 1, message: "follows", secondary: true },
      { file: "b.kdl", line: 9, col: 9, message: "cause" }
    ])
    expect(sorted.map((i) => i.message)).toEqual(["cause", "follows"])
  })
})

describe("syntax errors in words, at their position", () => {
  it("a missing `;` between nodes on one line", () => {
    expect(errs(`listeners { listener "a" { address "127.0.0.1:1" } listener "b" { address "127.0.0.1:2" } }`)).toEqual([
      "t.kdl:1:52: invalid KDL: missing `;` or a newline between two nodes: `listener` follows `}` on the same line (write `} listener` as `}; listener`, or start `listener` on a new line)"
    ])
    expect(errs(`${L}routes { route "x" { builtin-handler "status"; } route "y" { builtin-handler "health"; }; }`)).toEqual([
      "t.kdl:2:50: invalid KDL: missing `;` or a newline between two nodes: `route` follows `}` on the same line (write `} route` as `}; route`, or start `route` on a new line)"
    ])
    expect(errs(`listeners { listener "a" { address "127.0.0.1:1"; }; } system { }`)).toEqual([
      "t.kdl:1:56: invalid KDL: missing `;` or a newline between two nodes: `system` follows `}` on the same line (write `} system` as `}; system`, or start `system` on a new line)"
    ])
  })

  it("a missing `;` between two value nodes reads as extra arguments: the error says so", () => {
    expect(errs(`${L}system { worker-threads 1 max-connections 5; }`)).toEqual([
      "t.kdl:2:27: `worker-threads` takes at most 1 argument, got 3; if `max-connections` starts the next node, put a `;` or a newline before it"
    ])
  })

  it("a block never closed names its `{`", () => {
    expect(errs(`listeners {\n    listener "a" {\n        address "127.0.0.1:1"\n    }\n`)).toEqual([
      "t.kdl:5:1: invalid KDL: the file ends inside a { } block: the `{` at 1:11 is never closed (missing `}`)"
    ])
  })
})

describe("a key in the wrong block names the block where it belongs", () => {
  it("inside the block (timeout-secs in a route belongs in its policies)", () => {
    expect(errs(`${L}upstreams { upstream "u" { target "h:1"; }; }\nroutes {\n    route "r" {\n        upstream "u"\n        timeout-secs 30\n    }\n}`)).toEqual([
      "t.kdl:6:9: unknown node `timeout-secs` in `route`; it belongs in `circuit-breaker { timeout-secs ... }` or `policies { timeout-secs ... }` inside this `route`"
    ])
    expect(errs(`${L}upstreams { upstream "u" { target "h:1"; interval-secs 5; }; }`)).toEqual([
      "t.kdl:2:42: unknown node `interval-secs` in `upstream`; it belongs in `health-check { interval-secs ... }` inside this `upstream`"
    ])
  })

  it("elsewhere (worker-threads in a listener, max-rps in a route, upstream in matches)", () => {
    expect(errs(`listeners { listener "a" { address "127.0.0.1:1"; worker-threads 2; }; }`)).toEqual([
      "t.kdl:1:51: unknown node `worker-threads` in `listener`; it belongs in `system { worker-threads ... }`"
    ])
    expect(errs(`${L}routes { route "r" { builtin-handler "status"; max-rps 5; }; }`)).toEqual([
      "t.kdl:2:48: unknown node `max-rps` in `route`; it belongs in `filters { filter { max-rps ... } }` or `rate-limits { global { max-rps ... } }`"
    ])
    expect(errs(`${L}routes { route "r" { builtin-handler "status"; matches { upstream "u"; }; }; }`)).toEqual([
      "t.kdl:2:58: unknown node `upstream` in `matches`; it belongs in `routes { route { upstream ... } }`"
    ])
    expect(errs(`${L}max-connections 5`)).toEqual([
      "t.kdl:2:1: unknown node `max-connections` at the top level; it belongs in `system { max-connections ... }` or `upstreams { upstream { connection-pool { max-connections ... } } }`"
    ])
  })

  it("a near miss still gets its did-you-mean, and a name no block has gets no hint", () => {
    expect(errs(`${L}system { wrker-threads 2; }`)).toEqual(["t.kdl:2:10: unknown node `wrker-threads` in `system`; did you mean `worker-threads`?"])
    expect(errs(`${L}system { frobnicate 2; }`)).toEqual(["t.kdl:2:10: unknown node `frobnicate` in `system`"])
  })
})
