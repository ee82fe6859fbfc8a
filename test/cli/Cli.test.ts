/**
 * Command-line parsing (pure): every verb and flag maps to one command; bad
 * input is a usage error (exit 2), never a silent default.
 */
import { describe, expect, it } from "vitest"
import { DEFAULT_CONFIG, parseCommand } from "../../src/Cli.js"

describe("parseCommand", () => {
  it("validate: -c and the three skip flags", () => {
    expect(parseCommand(["validate", "-c", "a.kdl", "--skip-network", "--skip-agents"], {})).toEqual({
      _tag: "Validate",
      config: "a.kdl",
      skipNetwork: true,
      skipCerts: false,
      skipAgents: true
    })
    expect(parseCommand(["validate"], { SENTINEL_CONFIG: "env.kdl" })).toMatchObject({ _tag: "Validate", config: "env.kdl", skipCerts: false })
  })

  it("lint, test, run and the default", () => {
    expect(parseCommand(["lint", "--config", "l.kdl"], {})).toEqual({ _tag: "Lint", config: "l.kdl" })
    expect(parseCommand(["-t"], {})).toEqual({ _tag: "Test", config: DEFAULT_CONFIG })
    expect(parseCommand([], {})).toEqual({ _tag: "Run", config: DEFAULT_CONFIG })
  })

  it("unknown verbs and flags are usage errors", () => {
    expect(parseCommand(["reload"], {})).toMatchObject({ _tag: "Usage", message: expect.stringContaining("validate") })
    expect(parseCommand(["lint", "--skip-everything"], {})._tag).toBe("Usage")
  })
})
