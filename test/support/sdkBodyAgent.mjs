#!/usr/bin/env node
// A body-inspecting agent written with the SDK (the built dist/agents/sdk/, as a
// stand-alone agent would use it), served over a Unix socket (--socket) or gRPC
// (--grpc) by runAgentMain. It prints one JSON line per body chunk it gets, so
// tests wait on events, not sleeps.
//
// --mode scan         every chunk: block 403 ("blocked at chunk N") at the chunk
//                     containing "EVIL", else allow with needs_more until the last
// --mode settle       allow with needs_more false at the first chunk (decided early)
// --mode hang         never answers a body chunk (chunk-timeout-ms)
// --mode hang-at:N    answers chunks before N as `scan`, never answers chunk N
// --mode soft-block   block with needs_more true (not final) until the last chunk, then allow
// --phase response|request|both   which body it inspects (default response)
// Lines: {"event":"chunk","phase":"response","correlation_id",...,"chunk_index","is_last",
//         "size","bytes","total_size","text"}
import { Effect } from "effect"
import { runAgentMain } from "../../dist/agents/sdk/AgentMain.js"
import { allow, block } from "../../dist/agents/sdk/Decision.js"

const log = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")

runAgentMain({
  info: { agentId: "sdk-body", name: "sdk-body", version: "0.0.1" },
  description: "Test agent: inspects body chunks (stream mode) and decides by their text.",
  options: {
    mode: { description: "scan | settle | hang | hang-at:N | soft-block", default: "scan" },
    phase: { description: "response | request | both", default: "response" }
  },
  handlers: (args) =>
    Effect.sync(() => {
      const [mode, arg] = args.values.mode.split(":")
      const phases = args.values.phase
      const decide = (phase, e, bytes) => {
        const data = Buffer.from(e.data, "base64")
        const text = data.toString("latin1")
        log({
          event: "chunk",
          phase,
          correlation_id: e.correlation_id,
          chunk_index: e.chunk_index,
          is_last: e.is_last,
          size: data.length,
          bytes,
          total_size: e.total_size ?? null,
          text: text.slice(0, 64)
        })
        const audit = { tags: ["sdk-body"], ruleIds: [] }
        if (mode === "hang" || (mode === "hang-at" && e.chunk_index >= Number(arg))) return Effect.never
        if (mode === "settle") return Effect.succeed(allow().withAudit(audit))
        if (mode === "soft-block") {
          return Effect.succeed(
            e.is_last ? allow().withAudit(audit) : block(403, { body: "not final" }).withNeedsMore(true).withAudit(audit)
          )
        }
        if (text.includes("EVIL")) {
          return Effect.succeed(block(403, { body: `blocked at chunk ${e.chunk_index}` }).withAudit({ ...audit, ruleIds: ["body-evil"] }))
        }
        return Effect.succeed(allow().withNeedsMore(!e.is_last).withAudit(audit))
      }
      return {
        ...(phases !== "request" ? { onResponseBody: (e) => decide("response", e, e.bytes_sent) } : {}),
        ...(phases !== "response" ? { onRequestBody: (e) => decide("request", e, e.bytes_received) } : {})
      }
    })
})
