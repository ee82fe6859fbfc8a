/**
 * waf: SQL injection, XSS, path traversal and command injection rules over
 * path, query, headers and (request_body event) body, with anomaly
 * scoring. `--mode block` answers 403 at the threshold; `--mode detect`
 * only reports (audit rule ids and tags) and allows. WebSocket text frames
 * (`websocket_frame` event) are scanned with the body rules: at the threshold
 * the tunnel is closed with 1008 (`--websocket-action close`) or the frame
 * dropped (`drop`).
 */
import * as Effect from "effect/Effect"
import { runAgentMain } from "sentinel-proxy/agents/sdk/AgentMain.js"
import { allow, block, frameAllow, frameClose, frameDrop } from "sentinel-proxy/agents/sdk/Decision.js"
import type { AgentDecision } from "sentinel-proxy/agents/sdk/Decision.js"
import { assess, BodyScanner, scanBody, scanRequest, WebSocketTextScanner } from "./Logic.js"
import type { Assessment } from "./Logic.js"

runAgentMain({
  info: { agentId: "waf", name: "waf", version: "0.1.0" },
  description:
    "Web application firewall: SQLi, XSS, path traversal and command injection rules with anomaly scoring (critical rule = 5).",
  options: {
    threshold: { description: "anomaly score at which a request is blocked", default: "5" },
    mode: { description: "block (answer 403 at the threshold) or detect (report only)", default: "block" },
    "max-body-bytes": { description: "body bytes inspected per request; the rest is not scanned", default: "1048576" },
    "max-tracked-bodies": { description: "request bodies tracked at once (oldest forgotten first)", default: "1024" },
    "websocket-action": { description: "a WebSocket text frame at the threshold: close (the tunnel, 1008) or drop (the frame)", default: "close" }
  },
  handlers: (args) =>
    Effect.gen(function*() {
      const threshold = Number(args.values.threshold)
      const mode = args.values.mode
      if (!(threshold > 0)) return yield* Effect.fail(new Error(`--threshold must be > 0`))
      if (mode !== "block" && mode !== "detect") return yield* Effect.fail(new Error(`--mode must be block or detect, got '${mode}'`))
      const wsAction = args.values["websocket-action"]
      if (wsAction !== "close" && wsAction !== "drop") return yield* Effect.fail(new Error(`--websocket-action must be close or drop, got '${wsAction}'`))
      const frames = new WebSocketTextScanner(Number(args.values["max-tracked-bodies"]))
      const bodies = new BodyScanner(threshold, Number(args.values["max-body-bytes"]), Number(args.values["max-tracked-bodies"]))
      const decide = (a: Assessment, phase: string, more: boolean): AgentDecision => {
        const audit = {
          tags: a.tags,
          ruleIds: a.ruleIds,
          reasonCodes: a.exceeded ? ["WAF_ANOMALY_THRESHOLD"] : [],
          custom: a.matches.length > 0 ? { phase, score: a.score, threshold, mode, matches: a.matches } : {}
        }
        if (a.exceeded && mode === "block") return block(403, { body: "Forbidden" }).withAudit(audit)
        return allow().withNeedsMore(more).withAudit(audit)
      }
      return {
        onRequestHeaders: (e) => Effect.sync(() => decide(assess(scanRequest(e), threshold), "request_headers", false)),
        onRequestBody: (e) =>
          Effect.sync(() => {
            const r = bodies.chunk(e.correlation_id, Buffer.from(e.data, "base64"), e.is_last)
            const d = decide(r.assessment, "request_body", !e.is_last && !r.assessment.exceeded)
            return r.truncated ? d.withAudit({ tags: ["waf-body-truncated"] }) : d
          }),
        onWebSocketFrame: (e) =>
          Effect.sync(() => {
            const text = frames.frame(e.correlation_id, e.client_to_server, String(e.opcode), e.fin, Buffer.from(e.data, "base64"))
            if (text === undefined) return frameAllow()
            const a = assess(scanBody(text, undefined), threshold)
            const audit = {
              tags: a.tags,
              ruleIds: a.ruleIds,
              reasonCodes: a.exceeded ? ["WAF_ANOMALY_THRESHOLD"] : [],
              custom: a.matches.length > 0 ? { phase: "websocket_frame", score: a.score, threshold, mode, frame_index: e.frame_index, matches: a.matches } : {}
            }
            if (!a.exceeded || mode !== "block") return frameAllow().withAudit(audit)
            return (wsAction === "drop" ? frameDrop() : frameClose(1008, "blocked by waf")).withAudit(audit)
          }),
        onRequestComplete: (e) =>
          Effect.sync(() => {
            bodies.forget(e.correlation_id)
            frames.forget(e.correlation_id)
          })
      }
    })
})
