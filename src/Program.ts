/**
 * The program behind `Launch.ts` (the bundle's entry; `main.ts` runs it): parse the command line, load the configuration, start the
 * proxy (one process, or a `node:cluster` primary with workers when
 * `system { worker-threads }` is not 1), and turn signals into operations:
 * SIGTERM/SIGINT drain, SIGHUP reloads the configuration, SIGUSR1 reopens the
 * log files.
 */
import cluster from "node:cluster"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import type { Registry } from "prom-client"
import { HELP, parseCommand, type Command } from "./Cli.js"
import { escapeText, formatIssue } from "./config/ConfigIssue.js"
import { formatLint, lintConfig } from "./config/Lint.js"
import { formatInvalid, loadConfigDetailed, summarize, type Loaded } from "./config/Load.js"
import { makeConfig, type SentinelConfig } from "./config/Schema.js"
import { formatFinding, validateConfig } from "./config/Validate.js"
import * as App from "./App.js"
import { proxyV8Flags } from "./RuntimeFlags.js"
import { releaseStartupMemory } from "./StartupMemory.js"
import { listenerTlsProblems } from "./tls/Certificates.js"
import { formatErrorLine } from "./observability/ErrorLine.js"
import { type Metrics, MetricsService } from "./observability/Metrics.js"
import { ErrorLogService } from "./observability/ProxyLogs.js"
import { ConfigSource } from "./config/ConfigSource.js"
import { runCluster, type ClusterEvent } from "./server/Cluster.js"
import { startMetricsListenerUnscoped, type MetricsListenerHandle } from "./server/MetricsListener.js"
import { VERSION } from "./Version.js"
import { dropPrivileges, enterWorkingDirectory } from "./server/Privileges.js"

/**
 * `run --listen --upstream`: one listener, one upstream, and the proxy's own `/health` and
 * `/status` answered locally (as `config/sentinel.kdl` does, and as a user of a one-line
 * proxy expects), everything else forwarded.
 */
const quickConfig = (listen: string, upstream: string): SentinelConfig => {
  const url = new URL(upstream.includes("://") ? upstream : `http://${upstream}`)
  return makeConfig({
    listeners: [{ id: "quick", address: listen }],
    upstreams: [{ id: "upstream", targets: [{ address: url.host }] }],
    routes: [
      { id: "health", priority: 1000, matches: [{ _tag: "Path", path: "/health" }], builtinHandler: "health" },
      { id: "status", priority: 100, matches: [{ _tag: "Path", path: "/status" }], builtinHandler: "status" },
      { id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "upstream" }
    ]
  } as never)
}

/**
 * A line of the process's own (start, signals, stop, failures) on stderr, in the error log's
 * JSON format: in `run` every line the process writes is one JSON object. Written at once
 * (stderr is synchronous for files and pipes), so a line before `process.exit` is not lost.
 */
const stderrLine = (level: "info" | "warn" | "error", message: string, fields: Record<string, unknown> = {}) =>
  process.stderr.write(`${formatErrorLine(level, message, { pid: process.pid, ...fields })}\n`)

/** Each line of a multi-line report (config problems, TLS problems) as its own JSON line. */
const stderrLines = (level: "warn" | "error", text: string, fields: Record<string, unknown> = {}) => {
  for (const line of text.split("\n")) if (line.trim() !== "") stderrLine(level, line, fields)
}

/**
 * Node's own warnings (deprecations, MaxListeners, ...) as JSON lines instead of its
 * `(node:PID) Warning: ...` text: its default printer is replaced, for `run` only.
 */
const jsonWarnings = (): void => {
  process.removeAllListeners("warning")
  process.on("warning", (w: Error & { code?: string }) =>
    stderrLine("warn", w.message, { warning: w.name, ...(w.code !== undefined ? { code: w.code } : {}) })
  )
}

// ---------------------------------------------------------------------------
// One proxy process (single mode, or one cluster worker)

/** What signals (or the cluster primary's IPC) do to the running proxy. */
interface ProcessOps {
  /** Reload the configuration file (a warning in quick mode). */
  readonly reload: () => Promise<void>
  /** Reopen every log file. */
  readonly reopenLogs: () => Promise<void>
  readonly registry: () => Registry
}

/**
 * The command line's wiring of the proxy: the configuration as loaded (followed by the
 * reloader when it came from a file), the error log as Effect's logger, one registry with
 * the process metrics, tracing from `observability { tracing }`.
 */
const proxyLayer = (loaded: Loaded, file: string | undefined) =>
  App.layer().pipe(
    Layer.provide(App.tracingFromConfig),
    Layer.provideMerge(ErrorLogService.layer),
    Layer.provideMerge(App.metricsFromConfig({ defaultMetrics: true })),
    Layer.provideMerge(ConfigSource.fromLoaded(file, loaded))
  )

/**
 * The metrics listener of a single process, following reloads (moved, re-pathed, started or
 * stopped). At start a bind failure stops the process; after a reload it is logged.
 */
const followMetricsListener = (sentinel: App.SentinelService, metrics: Metrics) =>
  Effect.gen(function* () {
    let listener: MetricsListenerHandle | undefined
    let served: string | undefined
    const render = async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() })
    const sync = (next: SentinelConfig) =>
      Effect.promise(async () => {
        const m = next.observability.metrics
        const want = m.enabled ? `${m.address.host}:${m.address.port}${m.path}` : undefined
        if (want === served) return undefined
        await listener?.close()
        listener = undefined
        served = undefined
        if (!m.enabled) return undefined
        try {
          listener = await startMetricsListenerUnscoped({ host: m.address.host, port: m.address.port, path: m.path }, render)
          served = want
          return listener
        } catch (e) {
          return e as Error
        }
      })
    yield* Effect.addFinalizer(() => Effect.promise(async () => listener?.close()))
    const first = yield* sync(yield* sentinel.config.current.get)
    if (first instanceof Error) return yield* Effect.dieMessage(`metrics listener cannot bind: ${first.message}`)
    if (first !== undefined) yield* Effect.logInfo("metrics listening").pipe(Effect.annotateLogs({ address: `${first.host}:${first.port}`, path: first.path }))
    yield* sentinel.config.current.follow((next) =>
      Effect.flatMap(sync(next), (r) =>
        r instanceof Error
          ? Effect.logError(`metrics listener failed to bind: ${r.message}`)
          : r === undefined
            ? Effect.void
            : Effect.logInfo("metrics listening").pipe(Effect.annotateLogs({ address: `${r.host}:${r.port}`, path: r.path }))
      )
    )
  })

/**
 * The process around the proxy: the metrics listener (single mode), then the user and group
 * it runs as from now on (everything it serves is bound), then the operations signals map to,
 * then the memory start-up leaves behind given back (StartupMemory.ts).
 */
const processLayer = (loaded: Loaded, file: string | undefined, options: { readonly serveMetrics: boolean; readonly ready: (ops: ProcessOps) => void }) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const sentinel = yield* App.Sentinel
      const metrics = yield* MetricsService
      for (const w of loaded.warnings) yield* Effect.logWarning(formatIssue(w))
      if (options.serveMetrics) yield* followMetricsListener(sentinel, metrics)
      const dropped = dropPrivileges(loaded.config.system)
      if (dropped._tag === "Dropped") yield* Effect.logInfo("running as user").pipe(Effect.annotateLogs({ user: dropped.user, group: dropped.group }))
      else if (dropped._tag === "NotRoot") {
        yield* Effect.logWarning("system user/group ignored: only a process started as root can switch user").pipe(
          Effect.annotateLogs({ uid: dropped.uid })
        )
      }
      // operations run on this runtime: its logger is the error log
      const run = Runtime.runPromise(yield* Effect.runtime<never>())
      options.ready({
        reload: () =>
          run(file === undefined ? Effect.logWarning("SIGHUP ignored: no configuration file (quick mode)") : Effect.asVoid(sentinel.config.reload("signal"))),
        reopenLogs: () => run(Effect.zipRight(sentinel.reopenLogs(), Effect.logInfo("log files reopened"))),
        registry: () => metrics.registry
      })
      // start-up's garbage and the young generation it grew, given back once the proxy is up (one
      // collection, ~100 ms: connections that come meanwhile wait for it; signals find the
      // operations above in place)
      yield* Effect.promise(releaseStartupMemory)
    })
  ).pipe(Layer.provide(proxyLayer(loaded, file)))

/** Why the proxy did not start (or stopped), as the process's exit code and last line: the one place failures become exit codes. */
const exitOf = (exit: Exit.Exit<unknown, unknown>): { readonly code: number; readonly message?: string } => {
  if (Exit.isSuccess(exit) || Cause.isInterruptedOnly(exit.cause)) return { code: 0 }
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    const e = failure.value as { _tag?: string; listener?: string; address?: string; message?: string }
    if (e._tag === "ListenerBindFailed") return { code: 1, message: `not started: listener "${e.listener}" cannot bind ${e.address}: ${e.message}` }
    if (e._tag === "ConfigInvalid") return { code: 1, message: `not started: configuration invalid: ${formatInvalid(e as never)}` }
    return { code: 1, message: `not started: ${String(e.message ?? e._tag ?? e)}` }
  }
  const defect = Cause.squash(exit.cause)
  return { code: 1, message: `not started: ${defect instanceof Error ? defect.message : String(defect)}` }
}

/** Single-process mode: the proxy launched as one layer, and this process's signal handling. */
const runSingle = (loaded: Loaded, file: string | undefined): void => {
  file = enterWorkingDirectory(loaded.config.system, file)
  let ops: ProcessOps | undefined
  const fiber = Effect.runFork(Layer.launch(processLayer(loaded, file, { serveMetrics: true, ready: (o) => void (ops = o) })))
  fiber.addObserver((exit) => {
    const { code, message } = exitOf(exit)
    if (message !== undefined) stderrLine("error", message)
    process.exit(code)
  })
  // Handlers go in before the proxy is up: a signal during start-up stops it (draining what
  // started) instead of taking Node's default action (SIGHUP would terminate the process).
  let signals = 0
  let lastSignal = 0
  const onStop = (sig: NodeJS.Signals) => {
    // Ctrl-C reaches both the re-exec parent (which forwards it) and this process:
    // one keystroke must not count as two signals.
    const now = Date.now()
    if (signals > 0 && now - lastSignal < 500) return
    lastSignal = now
    signals++
    if (signals > 1) {
      stderrLine("warn", `second ${sig}, exiting now`, { signal: sig })
      process.exit(1)
    }
    stderrLine("info", `${sig} received, draining (up to the graceful shutdown timeout)`, { signal: sig })
    Effect.runFork(Fiber.interrupt(fiber))
  }
  process.on("SIGTERM", onStop)
  process.on("SIGINT", onStop)
  if (process.env["SENTINEL_LIFELINE"] === "1" && process.connected) {
    // Started by the re-exec parent: when it goes away, drain and exit like on SIGTERM.
    process.once("disconnect", () => onStop("SIGTERM"))
    // The channel must not keep the process alive on its own.
    ;(process.channel as { unref?: () => void } | undefined)?.unref?.()
  }
  // Reloads are serialized by the reloader; a failure is logged there and never ends the process.
  process.on("SIGHUP", () => {
    if (signals === 0) void ops?.reload().catch((e: unknown) => stderrLine("error", `reload failed: ${String(e)}`))
  })
  process.on("SIGUSR1", () => {
    void ops?.reopenLogs().catch((e: unknown) => stderrLine("error", `reopen failed: ${String(e)}`))
  })
}

/** The primary's supervision events as error-log lines. */
const logClusterEvent = (e: ClusterEvent): void => {
  const { type, ...fields } = e
  const level = e.type === "worker-exited" && !e.expected ? "warn" : e.type === "metrics-error" || e.type === "shutdown-forced" ? "error" : "info"
  stderrLine(level, `cluster ${type}`, fields)
}

/** Cluster primary: supervises workers, serves the aggregated metrics, forwards signals. */
const runPrimary = (config: SentinelConfig): void => {
  const m = config.observability.metrics
  // the workers run with the primary's V8 flags (Launch.ts has already refused an invalid value)
  const flags = proxyV8Flags(process.env)
  if (flags instanceof Error) {
    stderrLine("error", flags.message, {})
    return process.exit(2)
  }
  runCluster({
    workers: config.system.workerThreads,
    gracefulTimeoutMs: Duration.toMillis(config.system.gracefulShutdownTimeout),
    // Workers do not bind the metrics listener: the primary serves them aggregated.
    metrics: m.enabled ? { host: m.address.host, port: m.address.port, path: m.path } : undefined,
    execArgv: flags,
    onEvent: logClusterEvent,
    workerMain: () => Promise.reject(new Error("unreachable: workerMain runs in workers"))
  }).then((code) => process.exit(code))
  if (process.env["SENTINEL_LIFELINE"] === "1" && process.connected) {
    // Started by the re-exec parent: when it goes away (even killed), drain the workers and exit
    // as on SIGTERM, instead of living on as an orphaned cluster.
    process.once("disconnect", () => process.kill(process.pid, "SIGTERM"))
    ;(process.channel as { unref?: () => void } | undefined)?.unref?.()
  }
}

/**
 * Cluster worker: loads the file itself (a restarted worker reads the current
 * one) and serves; the primary's IPC drives shutdown, reload and reopen.
 */
const runWorker = (file: string): void => {
  runCluster({
    workers: 1,
    gracefulTimeoutMs: 0,
    workerMain: async () => {
      const loaded = await Effect.runPromise(Effect.either(loadConfigDetailed(file)))
      if (Either.isLeft(loaded)) throw new Error(formatInvalid(loaded.left))
      const dir = enterWorkingDirectory(loaded.right.config.system, file)
      let ops: ProcessOps | undefined
      const scope = Effect.runSync(Scope.make())
      const built = await Effect.runPromiseExit(
        Layer.buildWithScope(processLayer(loaded.right, dir, { serveMetrics: false, ready: (o) => void (ops = o) }), scope)
      )
      if (Exit.isFailure(built)) throw new Error(exitOf(built).message ?? "not started")
      const started = ops!
      return {
        shutdown: () => Effect.runPromise(Scope.close(scope, Exit.void)),
        reload: started.reload,
        reopenLogs: started.reopenLogs,
        metricsRegistry: started.registry
      }
    }
  }).then((code) => process.exit(code))
}

// ---------------------------------------------------------------------------
// Commands

const load = (file: string): Promise<Either.Either<Loaded, string>> =>
  Effect.runPromise(Effect.either(loadConfigDetailed(file))).then((r) =>
    Either.isLeft(r) ? Either.left(formatInvalid(r.left)) : Either.right(r.right)
  )

const runCommand = (command: Extract<Command, { _tag: "Run" }>): void => {
  jsonWarnings()
  if (command.quick !== undefined) {
    let config: SentinelConfig
    try {
      config = quickConfig(command.quick.listen, command.quick.upstream)
    } catch (err) {
      stderrLine("error", `not started: ${(err as Error).message}`)
      process.exit(2)
    }
    return runSingle({ config, files: [], warnings: [] }, undefined)
  }
  if (cluster.isWorker) return runWorker(command.config)
  load(command.config).then((result) => {
    if (Either.isLeft(result)) {
      stderrLines("error", result.left, { config: command.config })
      stderrLine("error", "not started: configuration invalid", { config: command.config })
      process.exit(1)
    }
    const loaded = result.right
    // Certificates that do not load (or a key that does not match) never start a listener half-configured.
    const tlsProblems = listenerTlsProblems(loaded.config)
    if (tlsProblems.length > 0) {
      for (const problem of tlsProblems) stderrLine("error", escapeText(problem), { config: command.config })
      stderrLine("error", "not started: TLS certificates invalid", { config: command.config })
      process.exit(1)
    }
    // Workers get the heap flag through execArgv: no re-exec needed for the primary.
    if (loaded.config.system.workerThreads !== 1) {
      for (const w of loaded.warnings) stderrLine("warn", formatIssue(w))
      return runPrimary(loaded.config)
    }
    runSingle(loaded, command.config)
  })
}

/** The command line (`Launch.ts` calls it; importing this module does nothing). */
export const main = (): void => {
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
    case "Test":
      load(command.config).then((result) => {
        if (Either.isLeft(result)) {
          process.stderr.write(`${result.left}\nconfiguration test failed: ${command.config}\n`)
          process.exit(1)
        }
        for (const w of result.right.warnings) process.stderr.write(`warning: ${formatIssue(w)}\n`)
        // the listener TLS material is part of the configuration: load it as startup would
        const tlsProblems = listenerTlsProblems(result.right.config)
        if (tlsProblems.length > 0) {
          process.stderr.write(`${tlsProblems.map(escapeText).join("\n")}\nconfiguration test failed: ${command.config}\n`)
          process.exit(1)
        }
        process.stdout.write(`${summarize(result.right.config)}\nconfiguration ok: ${command.config}\n`)
        process.exit(0)
      })
      return
    case "Validate":
      load(command.config).then(async (result) => {
        if (Either.isLeft(result)) {
          process.stderr.write(`${result.left}\nconfiguration validation failed: ${command.config}\n`)
          process.exit(1)
        }
        for (const w of result.right.warnings) process.stderr.write(`warning: ${formatIssue(w)}\n`)
        const findings = await validateConfig(result.right.config, command)
        for (const f of findings) process.stderr.write(`${formatFinding(f)}\n`)
        const errors = findings.filter((f) => f.level === "error").length
        const skipped = [command.skipNetwork && "network", command.skipCerts && "certs", command.skipAgents && "agents"].filter(Boolean)
        if (errors > 0) {
          process.stderr.write(`configuration validation failed (${errors} problem${errors === 1 ? "" : "s"}): ${command.config}\n`)
          process.exit(1)
        }
        process.stdout.write(
          `${summarize(result.right.config)}\nconfiguration valid: ${command.config}${skipped.length > 0 ? ` (skipped: ${skipped.join(", ")})` : ""}\n`
        )
        process.exit(0)
      })
      return
    case "Lint":
      load(command.config).then((result) => {
        if (Either.isLeft(result)) {
          process.stderr.write(`${result.left}\nnothing linted, configuration invalid: ${command.config}\n`)
          process.exit(1)
        }
        const lines = [
          ...result.right.warnings.map((w) => `warning[config]: ${formatIssue(w)}`),
          ...lintConfig(result.right.config).map(formatLint)
        ]
        for (const l of lines) process.stdout.write(`${l}\n`)
        process.stdout.write(`${lines.length} warning${lines.length === 1 ? "" : "s"}: ${command.config}\n`)
        process.exit(0)
      })
      return
    case "Run":
      return runCommand(command)
  }
}

