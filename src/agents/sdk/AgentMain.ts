/**
 * `runAgentMain`: the `main` of a stand-alone agent process. Parses
 * `--socket PATH` and / or `--grpc HOST:PORT` (at least one; with
 * `--grpc-tls-cert`, `--grpc-tls-key`, `--grpc-tls-client-ca` for TLS), the agent's own `--name value` options and
 * `--help`, builds the handlers (a scoped Effect, so watchers and timers
 * it starts are released), serves them, and exits cleanly on SIGTERM or
 * SIGINT (the scope closes: drain, close connections, remove the socket).
 */
// The NodeRuntime module alone: the package index loads HTTP, workers and undici (seconds of start-up).
import { runMain } from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { serveAgent } from "./AgentServer.js"
import { serveGrpcAgent } from "./GrpcAgentServer.js"
import type { AgentHandlers, AgentInfo, ServeAgentOptions } from "./AgentServer.js"

/** One command-line option of an agent (`--name value`, or `--name` for a flag). */
export interface OptionSpec {
  readonly description: string
  /** Shown in `--help`; the value used when the option is absent. */
  readonly default?: string
  /** A flag takes no value; its parsed value is "true" when present. */
  readonly flag?: boolean
  /** May be given several times; values are joined with "\n" in `ParsedArgs.values`, all kept in `ParsedArgs.all`. */
  readonly repeatable?: boolean
}

export interface ParsedArgs {
  /** `--socket PATH`: serve over this Unix socket. */
  readonly socket: string | undefined
  /** `--grpc HOST:PORT`: serve AgentServiceV2 there. */
  readonly grpc: string | undefined
  /** `--grpc-tls-cert` / `--grpc-tls-key` (TLS on the gRPC port), `--grpc-tls-client-ca` (require client certificates). */
  readonly grpcTls: { readonly cert: string; readonly key: string; readonly clientCa?: string } | undefined
  /** Last value of each option (or its default); absent options without a default are missing. */
  readonly values: Readonly<Record<string, string>>
  /** Every value of each option, in order. */
  readonly all: Readonly<Record<string, ReadonlyArray<string>>>
}

export type ParseResult =
  | { readonly _tag: "Help"; readonly text: string }
  | { readonly _tag: "Args"; readonly args: ParsedArgs }
  | { readonly _tag: "Error"; readonly message: string; readonly text: string }

export interface AgentMainOptions<R = never> {
  readonly info: AgentInfo
  /** One paragraph for `--help`. */
  readonly description: string
  readonly options?: Readonly<Record<string, OptionSpec>>
  /** The handlers, or a scoped Effect building them from the parsed arguments. */
  readonly handlers: AgentHandlers<R> | ((args: ParsedArgs) => Effect.Effect<AgentHandlers<R>, unknown, Scope.Scope>)
  /** Other `serveAgent` options (onError, limits, drain timeout, ...). */
  readonly serve?: Omit<ServeAgentOptions<R>, "socketPath" | "info" | "handlers">
}

/** The `--help` text. */
export const usage = (o: Pick<AgentMainOptions<any>, "info" | "description" | "options">): string => {
  const lines = [
    `${o.info.name} ${o.info.version} — Sentinel agent (${o.info.agentId})`,
    "",
    o.description,
    "",
    "Usage: node main.js (--socket PATH | --grpc HOST:PORT) [options]",
    "",
    "  --socket PATH        Unix socket to listen on (a stale socket file is replaced)",
    "  --grpc HOST:PORT     serve Sentinel's gRPC AgentServiceV2 there (plaintext unless --grpc-tls-*)",
    "  --grpc-tls-cert FILE PEM certificate of the gRPC port (with --grpc-tls-key)",
    "  --grpc-tls-key FILE  PEM key of the gRPC port",
    "  --grpc-tls-client-ca FILE  require client certificates signed by this CA (mTLS)",
    "  --help               Show this help"
  ]
  for (const [name, spec] of Object.entries(o.options ?? {})) {
    const head = `  --${name}${spec.flag ? "" : " VALUE"}`
    const def = spec.default !== undefined ? ` (default: ${spec.default})` : ""
    lines.push(`${head.padEnd(22)} ${spec.description}${def}`)
  }
  return lines.join("\n") + "\n"
}

/** Parses argv (without node and script). Pure; `--name=value` and `--name value` both work. */
export const parseAgentArgs = (
  argv: ReadonlyArray<string>,
  o: Pick<AgentMainOptions<any>, "info" | "description" | "options">
): ParseResult => {
  const specs: Record<string, OptionSpec> = {
    socket: { description: "" },
    grpc: { description: "" },
    "grpc-tls-cert": { description: "" },
    "grpc-tls-key": { description: "" },
    "grpc-tls-client-ca": { description: "" },
    ...(o.options ?? {})
  }
  const all: Record<string, Array<string>> = {}
  const text = usage(o)
  const error = (message: string): ParseResult => ({ _tag: "Error", message, text })
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === "--help" || arg === "-h") return { _tag: "Help", text }
    if (!arg.startsWith("--")) return error(`unexpected argument '${arg}'`)
    const eq = arg.indexOf("=")
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2)
    const spec = specs[name]
    if (spec === undefined) return error(`unknown option '--${name}'`)
    let value: string
    if (spec.flag) {
      if (eq >= 0) return error(`option '--${name}' takes no value`)
      value = "true"
    } else if (eq >= 0) {
      value = arg.slice(eq + 1)
    } else {
      if (i + 1 >= argv.length) return error(`option '--${name}' needs a value`)
      value = argv[++i]
    }
    if (all[name] !== undefined && !spec.repeatable && name !== "socket") return error(`option '--${name}' given twice`)
    ;(all[name] ??= []).push(value)
  }
  const socket = all.socket?.[0]
  const grpc = all.grpc?.[0]
  if ((socket === undefined || socket === "") && (grpc === undefined || grpc === "")) {
    return error("--socket PATH or --grpc HOST:PORT is required")
  }
  if (grpc !== undefined && !/^(\[[^\]]+\]|[^:\s]*):\d+$/.test(grpc)) return error(`--grpc must be HOST:PORT, got '${grpc}'`)
  const cert = all["grpc-tls-cert"]?.[0]
  const key = all["grpc-tls-key"]?.[0]
  const clientCa = all["grpc-tls-client-ca"]?.[0]
  if ((cert === undefined) !== (key === undefined)) return error("--grpc-tls-cert and --grpc-tls-key go together")
  if (clientCa !== undefined && cert === undefined) return error("--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key")
  if (cert !== undefined && grpc === undefined) return error("--grpc-tls-* need --grpc HOST:PORT")
  const grpcTls = cert !== undefined && key !== undefined ? { cert, key, ...(clientCa !== undefined ? { clientCa } : {}) } : undefined
  const values: Record<string, string> = {}
  for (const [name, spec] of Object.entries(specs)) {
    if (all[name] !== undefined) values[name] = spec.repeatable ? all[name].join("\n") : all[name][all[name].length - 1]
    else if (spec.default !== undefined) values[name] = spec.default
  }
  return {
    _tag: "Args",
    args: { socket: socket === "" ? undefined : socket, grpc: grpc === "" ? undefined : grpc, grpcTls, values, all }
  }
}

/** The agent program for parsed arguments (serves until interrupted). */
export const agentProgram = <R>(o: AgentMainOptions<R>, args: ParsedArgs): Effect.Effect<never, unknown, Scope.Scope | R> =>
  Effect.gen(function*() {
    const handlers = typeof o.handlers === "function" ? yield* o.handlers(args) : o.handlers
    if (args.socket !== undefined) {
      yield* serveAgent({ ...o.serve, socketPath: args.socket, info: o.info, handlers })
      yield* Effect.log(`${o.info.name} listening on ${args.socket}`)
    }
    if (args.grpc !== undefined) {
      const served = yield* serveGrpcAgent({ ...o.serve, address: args.grpc, info: o.info, handlers, ...(args.grpcTls ? { tls: args.grpcTls } : {}) })
      yield* Effect.log(`${o.info.name} serving gRPC on ${served.address}${args.grpcTls ? " (TLS)" : ""}`)
    }
    return yield* Effect.never
  })

/**
 * Runs an agent as this process's main: `--help` prints usage and exits 0,
 * bad arguments print the error and usage and exit 2, otherwise serves
 * until SIGTERM/SIGINT (exit 0 after a clean shutdown, 1 on failure).
 */
export const runAgentMain = (o: AgentMainOptions<never>, argv: ReadonlyArray<string> = process.argv.slice(2)): void => {
  const parsed = parseAgentArgs(argv, o)
  switch (parsed._tag) {
    case "Help":
      process.stdout.write(parsed.text)
      return
    case "Error":
      process.stderr.write(`error: ${parsed.message}\n\n${parsed.text}`)
      process.exitCode = 2
      return
    case "Args":
      runMain(Effect.scoped(agentProgram(o, parsed.args)))
  }
}
