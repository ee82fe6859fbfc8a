import * as fc from "fast-check"
import * as Either from "effect/Either"
import { describe, expect, it } from "vitest"
import { decodeAgentResponse } from "../../src/agents/ProtocolDecoders.js"
import { parseAgentArgs } from "../../src/agents/sdk/AgentMain.js"
import { allow, block, challenge, redirect } from "../../src/agents/sdk/Decision.js"

describe("Decision builders", () => {
  it("build the four wire decisions", () => {
    expect(allow().toWire("c").decision).toBe("allow")
    expect(block().toWire("c").decision).toEqual({ block: { status: 403, body: null, headers: null } })
    expect(block(429, { body: "slow down", headers: { "Retry-After": "3" } }).toWire("c").decision).toEqual({
      block: { status: 429, body: "slow down", headers: { "Retry-After": "3" } }
    })
    expect(redirect("https://login.example/?next=/a").toWire("c").decision).toEqual({
      redirect: { url: "https://login.example/?next=/a", status: 302 }
    })
    expect(challenge("captcha", { site_key: "k" }).toWire("c").decision).toEqual({
      challenge: { challenge_type: "captcha", params: { site_key: "k" } }
    })
  })

  it("are immutable: with* returns a new decision and leaves the original alone", () => {
    const base = allow()
    const edited = base.setRequestHeader("X-A", "1").withAudit({ tags: ["t"] })
    expect(base.toWire("c").request_headers).toBeUndefined()
    expect(edited.toWire("c").request_headers).toEqual([{ set: { name: "X-A", value: "1" } }])
  })

  it("leave out the fields at their protocol default: a plain allow is version, decision and the correlation id", () => {
    expect(allow().toWire("c1")).toEqual({ version: 2, decision: "allow", audit: { custom: { correlation_id: "c1" } } })
    const full = allow()
      .addResponseHeader("X-B", "2")
      .withRoutingMetadata("k", "v")
      .withAudit({ ruleIds: ["r1"], reasonCodes: ["c"], confidence: 0.5 })
      .withNeedsMore()
      .withRequestBodyMutation("", 0)
      .toWire("c2")
    expect(full).toEqual({
      version: 2,
      decision: "allow",
      response_headers: [{ add: { name: "X-B", value: "2" } }],
      routing_metadata: { k: "v" },
      audit: { rule_ids: ["r1"], reason_codes: ["c"], confidence: 0.5, custom: { correlation_id: "c2" } },
      needs_more: true,
      request_body_mutation: { data: "", chunk_index: 0 }
    })
  })

  it("reject what the proxy would refuse: bad header names/values, out-of-range statuses, confidence", () => {
    expect(() => allow().setRequestHeader("Bad Name", "v")).toThrow(TypeError)
    expect(() => allow().addResponseHeader("X-A", "a\r\nSet-Cookie: x=1")).toThrow(TypeError)
    expect(() => block(99)).toThrow(TypeError)
    expect(() => block(403, { headers: { "X-A": "\0" } })).toThrow(TypeError)
    expect(() => redirect("/x", 200)).toThrow(TypeError)
    expect(() => redirect("/x\r\n")).toThrow(TypeError)
    expect(() => allow().withAudit({ confidence: 2 })).toThrow(TypeError)
  })

  it("property: the correlation id always ends up in audit.custom, and the proxy's decoder accepts the answer", () => {
    const token = fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/)
    const value = fc.string({ maxLength: 30 }).filter((s) => !/[\r\n\0]/.test(s))
    fc.assert(
      fc.property(
        fc.string(),
        fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue()),
        fc.array(fc.tuple(fc.constantFrom("set", "add", "remove"), token, value), { maxLength: 5 }),
        fc.oneof(fc.constant(allow()), fc.integer({ min: 100, max: 599 }).map((s) => block(s)), fc.constant(redirect("/r", 307))),
        (cid, custom, edits, decision) => {
          let d = decision.withAudit({ custom: { ...custom, correlation_id: "spoof" }, tags: ["x"] })
          for (const [op, name, v] of edits) {
            d = op === "remove" ? d.removeRequestHeader(name) : op === "set" ? d.setResponseHeader(name, v) : d.addRequestHeader(name, v)
          }
          const wire = JSON.parse(JSON.stringify(d.toWire(cid)))
          expect(wire.version).toBe(2)
          expect(wire.audit.custom.correlation_id).toBe(cid)
          expect(Either.isRight(decodeAgentResponse(wire))).toBe(true)
          // the compact answer decodes exactly as the one with every default written out
          const defaults = { request_headers: [], response_headers: [], routing_metadata: {}, needs_more: false, request_body_mutation: null, response_body_mutation: null, websocket_decision: null }
          const full = { ...defaults, ...wire, audit: { tags: [], rule_ids: [], reason_codes: [], ...wire.audit } }
          expect(decodeAgentResponse(wire)).toEqual(decodeAgentResponse(full))
        }
      )
    )
  })
})

describe("parseAgentArgs", () => {
  const o = {
    info: { agentId: "x", name: "x", version: "1" },
    description: "d",
    options: {
      rate: { description: "r", default: "10" },
      aud: { description: "a", repeatable: true },
      dry: { description: "f", flag: true }
    }
  }

  it("parses --socket, --name value, --name=value, flags, repeatables and defaults", () => {
    const r = parseAgentArgs(["--socket", "/s.sock", "--rate=5", "--aud", "a", "--aud", "b", "--dry"], o)
    expect(r).toEqual({
      _tag: "Args",
      args: { socket: "/s.sock", values: { socket: "/s.sock", rate: "5", aud: "a\nb", dry: "true" }, all: { socket: ["/s.sock"], rate: ["5"], aud: ["a", "b"], dry: ["true"] } }
    })
    const d = parseAgentArgs(["--socket", "/s"], o)
    expect(d._tag === "Args" && d.args.values.rate).toBe("10")
  })

  it("parses --grpc HOST:PORT (alone or with --socket) and the gRPC TLS options", () => {
    expect(parseAgentArgs(["--grpc", "0.0.0.0:50051"], o)).toMatchObject({ _tag: "Args", args: { socket: undefined, grpc: "0.0.0.0:50051", grpcTls: undefined } })
    expect(parseAgentArgs(["--socket", "/s", "--grpc", "[::1]:1"], o)).toMatchObject({ _tag: "Args", args: { socket: "/s", grpc: "[::1]:1" } })
    expect(parseAgentArgs(["--grpc", "h:1", "--grpc-tls-cert", "c", "--grpc-tls-key", "k", "--grpc-tls-client-ca", "ca"], o)).toMatchObject({
      _tag: "Args", args: { grpcTls: { cert: "c", key: "k", clientCa: "ca" } }
    })
    expect(parseAgentArgs(["--grpc", "nohost"], o)).toMatchObject({ _tag: "Error", message: "--grpc must be HOST:PORT, got 'nohost'" })
    expect(parseAgentArgs(["--grpc", "h:1", "--grpc-tls-cert", "c"], o)).toMatchObject({ _tag: "Error", message: "--grpc-tls-cert and --grpc-tls-key go together" })
    expect(parseAgentArgs(["--socket", "/s", "--grpc-tls-cert", "c", "--grpc-tls-key", "k"], o)).toMatchObject({ _tag: "Error", message: "--grpc-tls-* need --grpc HOST:PORT" })
    expect(parseAgentArgs(["--help"], o)).toMatchObject({ _tag: "Help", text: expect.stringContaining("--grpc HOST:PORT") })
  })

  it("answers --help with usage, and rejects unknown, duplicate, valueless options and a missing --socket", () => {
    const help = parseAgentArgs(["--rate", "1", "--help"], o)
    expect(help._tag).toBe("Help")
    expect(help._tag === "Help" && help.text).toContain("--rate VALUE")
    expect(parseAgentArgs(["--socket", "/s", "--nope", "1"], o)).toMatchObject({ _tag: "Error", message: "unknown option '--nope'" })
    expect(parseAgentArgs(["--socket", "/s", "--rate", "1", "--rate", "2"], o)).toMatchObject({ _tag: "Error" })
    expect(parseAgentArgs(["--socket", "/s", "--rate"], o)).toMatchObject({ _tag: "Error", message: "option '--rate' needs a value" })
    expect(parseAgentArgs(["--rate", "1"], o)).toMatchObject({ _tag: "Error", message: "--socket PATH or --grpc HOST:PORT is required" })
    expect(parseAgentArgs(["--socket", "/s", "--dry=1"], o)).toMatchObject({ _tag: "Error" })
  })
})
