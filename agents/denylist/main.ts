/**
 * denylist: blocks requests from listed IPs/CIDRs (v4 and v6), to listed
 * path patterns, or with listed user agents (403). The list file is
 * reloaded on SIGHUP and when it changes; an invalid file keeps the
 * previous list (and says why).
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import { runAgentMain } from "sentinel-proxy/agents/sdk/AgentMain.js"
import { allow, block } from "sentinel-proxy/agents/sdk/Decision.js"
import { evaluateDenylist, parseDenylist } from "./Logic.js"
import type { Denylist } from "./Logic.js"

runAgentMain({
  info: { agentId: "denylist", name: "denylist", version: "0.1.0" },
  description:
    "Blocks requests by client IP/CIDR, path pattern or user-agent pattern. The list file (JSON or text, see agents/README.md) is reloaded on SIGHUP and on change.",
  options: {
    list: { description: "denylist file (JSON or text)" },
    watch: { description: "reload when the file changes: true or false", default: "true" },
    status: { description: "status of the block response", default: "403" }
  },
  handlers: (args) =>
    Effect.gen(function*() {
      const file = args.values.list
      if (file === undefined) return yield* Effect.fail(new Error("--list FILE is required"))
      const status = Number(args.values.status)
      // The current list: a plain variable read per request, swapped whole on reload.
      let list: Denylist = parseDenylist(Fs.readFileSync(file, "utf8"))
      yield* Effect.log(`denylist: ${list.cidrs.length} IP/CIDR, ${list.paths.length} path, ${list.userAgents.length} user-agent entries`)
      const reload = (why: string) => {
        try {
          list = parseDenylist(Fs.readFileSync(file, "utf8"))
          Effect.runFork(Effect.log(`denylist reloaded (${why}): ${list.cidrs.length} IP/CIDR, ${list.paths.length} path, ${list.userAgents.length} user-agent entries`))
        } catch (e) {
          Effect.runFork(Effect.logWarning(`denylist reload (${why}) failed, keeping the previous list: ${(e as Error).message}`))
        }
      }
      const onHup = () => reload("SIGHUP")
      yield* Effect.acquireRelease(Effect.sync(() => process.on("SIGHUP", onHup)), () => Effect.sync(() => process.off("SIGHUP", onHup)))
      if (args.values.watch !== "false") {
        // Watch the directory, not the file: editors and config managers replace files by rename.
        const base = Path.basename(file)
        let timer: NodeJS.Timeout | undefined
        yield* Effect.acquireRelease(
          Effect.sync(() =>
            Fs.watch(Path.dirname(Path.resolve(file)), (_event, name) => {
              if (name !== null && name !== base) return
              clearTimeout(timer)
              timer = setTimeout(() => reload("file changed"), 50)
            })
          ),
          (w) => Effect.sync(() => {
            clearTimeout(timer)
            w.close()
          })
        )
      }
      return {
        onRequestHeaders: (e) =>
          Effect.sync(() => {
            const v = evaluateDenylist(list, { clientIp: e.metadata.client_ip, uri: e.uri, userAgent: e.headers["user-agent"]?.[0] })
            if (v._tag === "Allow") return allow()
            return block(status, { body: "Forbidden" }).withAudit({
              tags: ["denylist", `denylist-${v.kind}`],
              ruleIds: [v.ruleId],
              reasonCodes: [`DENYLIST_${v.kind.toUpperCase().replace("-", "_")}`],
              custom: { entry: v.entry }
            })
          })
      }
    })
})
