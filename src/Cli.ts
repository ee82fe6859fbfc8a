/**
 * Command-line parsing (pure): `sentinel [run|test|validate|lint] [-c FILE] ...`.
 * Kept apart from `main.ts` so it can be tested without starting anything.
 */
import { parseArgs } from "node:util"

export type Command =
  | { readonly _tag: "Run"; readonly config: string; readonly quick?: { readonly listen: string; readonly upstream: string } }
  | { readonly _tag: "Test"; readonly config: string }
  | {
      readonly _tag: "Validate"
      readonly config: string
      readonly skipNetwork: boolean
      readonly skipCerts: boolean
      readonly skipAgents: boolean
    }
  | { readonly _tag: "Lint"; readonly config: string }
  | { readonly _tag: "Version" }
  | { readonly _tag: "Help" }
  | { readonly _tag: "Usage"; readonly message: string }

export const DEFAULT_CONFIG = "config/sentinel.kdl"

export const HELP = `Sentinel — a security-first reverse proxy (Node.js, Effect)

Usage:
  sentinel [run] [-c FILE]          run the proxy (default config: ${DEFAULT_CONFIG})
  sentinel test -c FILE             parse and validate a config, print a summary (exit 0 or 1)
  sentinel validate -c FILE [--skip-network] [--skip-certs] [--skip-agents]
                                    'test' plus checks against this machine: upstream targets
                                    resolve and accept TCP, certificates load, agent sockets answer
  sentinel lint -c FILE             best-practice warnings (always exit 0 if the config parses)
  sentinel run --listen HOST:PORT --upstream URL
                                    proxy everything on one listener to one upstream (no config
                                    file); /health and /status are answered by the proxy itself
  sentinel --version | --help

Options:
  -c, --config FILE   configuration file (KDL); also SENTINEL_CONFIG
  -t, --test          same as the 'test' command
      --listen ADDR   quick mode: listener address
      --upstream URL  quick mode: upstream (http://host:port)
      --skip-network  validate: do not connect to upstream targets
      --skip-certs    validate: do not load certificates
      --skip-agents   validate: do not connect to agent sockets
  -v, --version       print the version
  -h, --help          print this help

Signals: SIGTERM/SIGINT drain in-flight requests and exit (a second one exits at once);
SIGHUP reloads the configuration (an invalid one is logged and the running one kept);
SIGUSR1 reopens log files (after logrotate).
`

export const parseCommand = (argv: ReadonlyArray<string>, env: Readonly<Record<string, string | undefined>>): Command => {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string", short: "c" },
        test: { type: "boolean", short: "t" },
        listen: { type: "string" },
        upstream: { type: "string" },
        "skip-network": { type: "boolean" },
        "skip-certs": { type: "boolean" },
        "skip-agents": { type: "boolean" },
        version: { type: "boolean", short: "v" },
        help: { type: "boolean", short: "h" }
      }
    })
  } catch (err) {
    return { _tag: "Usage", message: (err as Error).message }
  }
  const { values, positionals } = parsed
  if (values.help) return { _tag: "Help" }
  if (values.version) return { _tag: "Version" }
  if (positionals.length > 1) return { _tag: "Usage", message: `unexpected argument '${positionals[1]}'` }
  const verb = positionals[0] ?? (values.test ? "test" : "run")
  const config = values.config ?? env["SENTINEL_CONFIG"] ?? DEFAULT_CONFIG
  switch (verb) {
    case "run":
      if (values.test) return { _tag: "Test", config }
      if (values.listen !== undefined || values.upstream !== undefined) {
        if (values.listen === undefined || values.upstream === undefined) {
          return { _tag: "Usage", message: "--listen and --upstream go together" }
        }
        return { _tag: "Run", config, quick: { listen: values.listen, upstream: values.upstream } }
      }
      return { _tag: "Run", config }
    case "test":
      return { _tag: "Test", config }
    case "validate":
      return {
        _tag: "Validate",
        config,
        skipNetwork: values["skip-network"] === true,
        skipCerts: values["skip-certs"] === true,
        skipAgents: values["skip-agents"] === true
      }
    case "lint":
      return { _tag: "Lint", config }
    default:
      return { _tag: "Usage", message: `unknown command '${verb}' (expected 'run', 'test', 'validate' or 'lint')` }
  }
}
