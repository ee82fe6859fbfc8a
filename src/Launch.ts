/**
 * The service's entry, behind `main.ts` (which runs it from the bundle, dist/bundle/main.js;
 * `node dist/Launch.js` runs the same from the tsc modules). `sentinel run` re-executes itself
 * (the same script, `process.argv[1]`) once with the V8 flags of
 * `RuntimeFlags.ts` (DESIGN.md §2: the program sets them, not the user)
 * before anything heavy is loaded, so the supervising parent stays
 * small; everything else is `Program.ts`.
 *
 * The child holds an IPC lifeline to the parent: if the parent dies (even by
 * SIGKILL) the child drains and exits instead of living on as an orphan.
 * `SENTINEL_NO_RESPAWN=1` skips the re-exec.
 */
import { spawn } from "node:child_process"
import { parseCommand } from "./Cli.js"
import { proxyV8Flags } from "./RuntimeFlags.js"

const needsRespawn = (): boolean =>
  process.env["SENTINEL_NO_RESPAWN"] !== "1" &&
  !process.execArgv.some((a) => a.startsWith("--max-semi-space-size") || a === "--no-allocation-site-pretenuring") &&
  !(process.env["NODE_OPTIONS"] ?? "").includes("--max-semi-space-size")

/** Run this same command in a child with the proxy's V8 flags; forward signals; mirror its exit. */
const respawn = (): void => {
  const flags = proxyV8Flags(process.env)
  if (flags instanceof Error) {
    process.stderr.write(`${JSON.stringify({ timestamp: new Date().toISOString(), level: "error", message: flags.message })}\n`)
    process.exit(2)
  }
  const child = spawn(process.execPath, [...flags, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: ["inherit", "inherit", "inherit", "ipc"],
    env: { ...process.env, SENTINEL_NO_RESPAWN: "1", SENTINEL_LIFELINE: "1" }
  })
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"] as const) {
    process.on(sig, () => child.kill(sig))
  }
  child.on("exit", (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)))
}

if (parseCommand(process.argv.slice(2), process.env)._tag === "Run" && needsRespawn()) respawn()
else (await import("./Program.js")).main()
