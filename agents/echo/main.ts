/**
 * echo: the connectivity-test agent (Sentinel's `agents/echo`). Allows
 * every request and adds `X-Agent-Processed: true` to it, so an operator
 * can see at the upstream that the agent ran.
 */
import * as Effect from "effect/Effect"
import { runAgentMain } from "sentinel-proxy/agents/sdk/AgentMain.js"
import { allow } from "sentinel-proxy/agents/sdk/Decision.js"

runAgentMain({
  info: { agentId: "echo", name: "echo", version: "0.1.0" },
  description: "Allows every request and adds 'X-Agent-Processed: true' to it (connectivity test).",
  handlers: {
    onRequestHeaders: () => Effect.succeed(allow().setRequestHeader("X-Agent-Processed", "true").withAudit({ tags: ["echo"] }))
  }
})
