/**
 * The config boundary: what a hostile or broken config file can make the
 * decoder accept or print. Ids are printable, limits are enforced with a
 * located error, and nothing from the file reaches the output unescaped.
 */
import * as os from "node:os"
import { describe, expect, it } from "vitest"
import { escapeText, formatIssue } from "../../src/config/ConfigIssue.js"
import { decodeKdl, maxNesting } from "../../src/config/Kdl.js"
import { formatLint } from "../../src/config/Lint.js"
import { summarize } from "../../src/config/Load.js"
import { formatFinding } from "../../src/config/Validate.js"

const L = `listeners { listener "main" { address "127.0.0.1:8080"; }; }\n`
const errs = (text: string) => decodeKdl(text, { file: "t.kdl" }).errors.map(formatIssue)
/** Printable ASCII only: what every line of text output must be when the config is hostile. */
const plain = /^[\x20-\x7e]*$/

const refused = (shown: string) => `contains ${shown}: ids must be printable (no control or format characters)`

describe("Kdl decoder: ids", () => {
  // [KDL escape, how the message shows it]
  const hostile: ReadonlyArray<readonly [string, string]> = [
    ["\\u{0}", "\\u0000"], ["\\n", "\\u000A"], ["\\r", "\\u000D"], ["\\t", "\\u0009"], ["\\u{7F}", "\\u007F"],
    ["\\u{85}", "\\u0085"], ["\\u{200B}", "\\u200B"], ["\\u{200F}", "\\u200F"], ["\\u{202A}", "\\u202A"],
    ["\\u{202E}", "\\u202E"], ["\\u{2066}", "\\u2066"], ["\\u{2069}", "\\u2069"], ["\\u{FEFF}", "\\uFEFF"],
    ["\\u{2028}", "\\u2028"], ["\\u{2029}", "\\u2029"], ["\\u{E0001}", "\\u{E0001}"]
  ]

  it("a listener id with a control, format or separator character is refused, the character shown escaped", () => {
    for (const [kdl, shown] of hostile) {
      const e = errs(`listeners { listener "a${kdl}b" { address "127.0.0.1:1"; }; }`)
      expect(e[0]).toBe(`t.kdl:1:22: listener id "a${shown}b" ${refused(shown)}`)
      for (const line of e) expect(line).toMatch(plain)
    }
  })

  it("every kind of id, defined or referenced, goes through the same check", () => {
    const z = "\\u{202E}"
    expect(errs(L + `upstreams { upstream "u${z}" { target "h:1"; }; }
routes { route "r${z}" { builtin-handler "status"; }; route "s" { upstream "u${z}"; filters "f${z}"; }; }
filters { filter "f${z}" { type "headers"; }; filter "g" { type "agent"; agent "a${z}"; }; }
agents { agent "a${z}" { unix-socket "/tmp/a.sock"; }; }
listeners { listener "m2" { address "127.0.0.1:2"; default-route "r${z}"; }; }`)).toEqual([
      `t.kdl:2:22: upstream id "u\\u202E" ${refused("\\u202E")}`,
      `t.kdl:3:16: route id "r\\u202E" ${refused("\\u202E")}`,
      `t.kdl:3:80: \`upstream\` "u\\u202E" ${refused("\\u202E")}`,
      `t.kdl:3:101: filter id "f\\u202E" ${refused("\\u202E")}`,
      `t.kdl:4:18: filter id "f\\u202E" ${refused("\\u202E")}`,
      `t.kdl:4:84: \`agent\` "a\\u202E" ${refused("\\u202E")}`,
      `t.kdl:5:16: agent id "a\\u202E" ${refused("\\u202E")}`,
      `t.kdl:6:66: \`default-route\` "r\\u202E" ${refused("\\u202E")}`
    ])
  })

  it("empty ids are refused; printable Unicode ids are fine", () => {
    expect(errs(`listeners { listener "" { address "127.0.0.1:1"; }; }`)[0]).toBe("t.kdl:1:22: listener id must not be empty")
    const r = decodeKdl(`listeners { listener "é-☃ x_1" { address "127.0.0.1:1"; }; }`, { file: "t.kdl" })
    expect(r.errors).toEqual([])
    expect(r.config!.listeners[0].id).toBe("é-☃ x_1")
  })

  it("characters the file holds raw (read as KDL v1) are refused the same way, never printed raw", () => {
    const e = errs(`listeners { listener "a\u202Eb\u0000" { address "127.0.0.1:1"; }; }`)
    expect(e.length).toBeGreaterThan(0)
    for (const line of e) expect(line).toMatch(plain)
  })

  it("a host name with a control or format character is not a host", () => {
    expect(errs(`listeners { listener "a" { address "local\\u{202E}host:1"; }; }`)).toEqual([
      "t.kdl:1:36: `address` must be \"host:port\" (IPv6 as \"[::1]:80\"), got \"local\\u202Ehost:1\""
    ])
  })
})

describe("Kdl decoder: worker-threads", () => {
  const workers = (n: number, cores: number) =>
    decodeKdl(L + `system { worker-threads ${n}; }`, { file: "t.kdl", cores }).errors.map(formatIssue)

  it("up to 4 per core of the machine the config is for; 0 is one per core", () => {
    expect(workers(0, 2)).toEqual([])
    expect(workers(8, 2)).toEqual([])
    expect(workers(9, 2)).toEqual(["t.kdl:2:25: `worker-threads` must be at most 8 (4 per core, 2 cores here; 0 means one per core), got 9"])
    expect(workers(100000, 1)).toEqual(["t.kdl:2:25: `worker-threads` must be at most 4 (4 per core, 1 core here; 0 means one per core), got 100000"])
    expect(workers(64, 16)).toEqual([])
  })

  it("the default is this machine's cores", () => {
    const cap = 4 * os.availableParallelism()
    expect(decodeKdl(L + `system { worker-threads ${cap}; }`).errors).toEqual([])
    expect(decodeKdl(L + `system { worker-threads ${cap + 1}; }`).errors).toHaveLength(1)
  })
})

describe("Kdl decoder: nesting", () => {
  const nested = (depth: number) => "a {\n".repeat(depth) + "}\n".repeat(depth)

  it(`blocks nest up to ${maxNesting} levels; deeper is a located error, also far too deep for the parser`, () => {
    expect(errs(nested(maxNesting))).toEqual(["t.kdl:1:1: unknown node `a` at the top level", expect.stringContaining("no listener")])
    expect(errs(nested(maxNesting + 1))).toEqual([`t.kdl:65:3: nesting deeper than ${maxNesting} levels of { } blocks`])
    expect(errs("\r\n\u2028" + "a {".repeat(100_000))).toEqual([`t.kdl:3:195: nesting deeper than ${maxNesting} levels of { } blocks`])
  })

  it("braces in strings, raw strings, multi-line strings and comments do not count", () => {
    const many = "{".repeat(100)
    const r = decodeKdl(`${L}system {
    pid-file "${many}\\"${many}"
    /* ${many} /* nested ${many} */ ${many} */
    // ${many}
    /- pid-file #"${many}"# ##"${many}"#"##
    /- pid-file """
        " ${many}
        """ #"""
        "# ${many}
        """#
}`, { file: "t.kdl" })
    expect(r.errors.map(formatIssue)).toEqual([])
    expect(r.config!.system.pidFile).toBe(`${many}"${many}`)
  })

  it("a KDL v1 raw string with a trailing backslash does not hide the braces after it", () => {
    expect(errs(`system { pid-file r"C:\\" ; }\n` + nested(maxNesting + 1))[0]).toMatch(/^t\.kdl:66:3: nesting deeper than/)
  })
})

describe("text output escapes what the config wrote", () => {
  it("escapeText writes controls, format characters and separators as \\uXXXX and leaves the rest", () => {
    expect(escapeText("a\nb\u202Ec\u0000d\u2028é☃\u{E0001}")).toBe("a\\u000Ab\\u202Ec\\u0000d\\u2028é☃\\u{E0001}")
  })

  it("summarize prints a static-files root with a newline on one line", () => {
    const r = decodeKdl(L + `routes { route "r" { static-files { root "/srv\\n  listener evil: http://0.0.0.0:1"; }; }; }`, { file: "t.kdl" })
    expect(r.errors).toEqual([])
    const lines = summarize(r.config!).split("\n")
    expect(lines).toHaveLength(3)
    expect(lines[2]).toBe("  route r (priority 50): all requests -> static files /srv\\u000A  listener evil: http://0.0.0.0:1")
  })

  it("lint warnings and validate findings print on one line whatever the subject holds", () => {
    expect(formatLint({ rule: "r", subject: "route \"a\u202E\"", message: "x\ny" })).toBe("warning[r]: route \"a\\u202E\": x\\u000Ay")
    expect(formatFinding({ level: "error", subject: "agent \"a\"", message: "socket /tmp/\r\n.sock" })).toBe("error: agent \"a\": socket /tmp/\\u000D\\u000A.sock")
  })

  it("issues print on one line whatever the message quotes", () => {
    expect(formatIssue({ file: "f\n.kdl", line: 1, col: 2, message: "x \"\u202E\r\n\"" })).toBe("f\\u000A.kdl:1:2: x \"\\u202E\\u000D\\u000A\"")
  })
})
