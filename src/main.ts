#!/usr/bin/env node
/**
 * Entry point: parse the command line, load the configuration, launch the
 * `Sentinel` layer, and turn signals into a graceful drain.
 */
import { spawn } from "node:child_process"
import { Effect, Exit, Fiber, Layer } from "effect"
import { HELP, parseCommand } from "./Cli.js"
import { loadConfig, summarize } from "./config/Load.js"
import { makeConfig, type SentinelConfig } from "./config/Schema.js"
import * as App from "./App.js"
import { appLoggerLayer } from "./observability/Logs.js"
import { VERSION } from "./Version.js"

/** The young generation sized for a proxy (DESIGN.md §2): the program sets it, not the user. */
const HEAP_FLAG = "--max-semi-space-size=64"

const needsRespawn = (): boolean =>
  process.env["SENTINEL_NO_RESPAWN"] !== "1" &&
  !process.execArgv.some((a) => a.startsWith("--max-semi-space-size")) &&
  !(process.env["NODE_OPTIONS"] ?? "").includes("--max-semi-space-size")

/** Run this same command in a child with the heap flag; forward signals; mirror its exit. */
const respawn = (): void => {
  const child = spawn(process.execPath, [HEAP_FLAG, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, SENTINEL_NO_RESPAWN: "1" }
  })
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"] as const) {
    process.on(sig, () => child.kill(sig))
  }
  child.on("exit", (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)))
}

const quickConfig = (listen: string, upstream: string): SentinelConfig => {
  const url = new URL(upstream.includes("://") ? upstream : `http://${upstream}`)
  return makeConfig({
    listeners: [{ id: "quick", address: listen }],
    upstreams: [{ id: "upstream", targets: [{ address: url.host }] }],
    routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "upstream" }]
  } as never)
}

const runProxy = (config: SentinelConfig): void => {
  const logger = appLoggerLayer({ level: config.observability.logging.level })
  const program = Layer.launch(App.layer(config)).pipe(Effect.provide(logger))
  const fiber = Effect.runFork(program)
  let signals = 0
  const onSignal = (sig: NodeJS.Signals) => {
    signals++
    if (signals > 1) {
      process.stderr.write(`sentinel: second ${sig}, exiting now\n`)
      process.exit(1)
    }
    process.stderr.write(`sentinel: ${sig} received, draining (up to the graceful shutdown timeout)\n`)
    Effect.runFork(Fiber.interrupt(fiber))
  }
  process.on("SIGTERM", onSignal)
  process.on("SIGINT", onSignal)
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit) || Exit.isInterrupted(exit)) process.exit(0)
    process.stderr.write(`sentinel: ${String(exit.cause)}\n`)
    process.exit(1)
  })
}

const main = (): void => {
  const command = parseCommand(process.argv.slice(2), process.env)
  switch (command._tag) {
    case "Help":
      process.stdout.write(HELP)
      return
    case "Version":
      process.stdout.write(`sentinel ${VERSION} (node ${process.version})\n`)
      return
    case "Usage":
      process.stderr.write(`sentinel: ${command.message}\nTry 'sentinel --help'.\n`)
      process.exit(2)
    // eslint-disable-next-line no-fallthrough
    case "Test": {
      Effect.runPromise(Effect.either(loadConfig(command.config))).then((result) => {
        if (result._tag === "Left") {
          process.stderr.write(`${result.left.format()}\nconfiguration test failed: ${command.config}\n`)
          process.exit(1)
        }
        process.stdout.write(`${summarize(result.right)}\nconfiguration ok: ${command.config}\n`)
        process.exit(0)
      })
      return
    }
    case "Run": {
      if (needsRespawn()) return respawn()
      if (command.quick !== undefined) {
        let config: SentinelConfig
        try {
          config = quickConfig(command.quick.listen, command.quick.upstream)
        } catch (err) {
          process.stderr.write(`sentinel: ${(err as Error).message}\n`)
          process.exit(2)
        }
        return runProxy(config)
      }
      Effect.runPromise(Effect.either(loadConfig(command.config))).then((result) => {
        if (result._tag === "Left") {
          process.stderr.write(`${result.left.format()}\nsentinel: not started, configuration invalid: ${command.config}\n`)
          process.exit(1)
        }
        runProxy(result.right)
      })
      return
    }
  }
}

main()
