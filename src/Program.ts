/**
 * The program behind `main.ts`: parse the command line, load the configuration, start the
 * proxy (one process, or a `node:cluster` primary with workers when
 * `system { worker-threads }` is not 1), and turn signals into operations:
 * SIGTERM/SIGINT drain, SIGHUP reloads the configuration, SIGUSR1 reopens the
 * log files.
 */
import cluster from "node:cluster"
import { Duration, Effect, Either, Exit, Layer, Runtime, Scope } from "effect"
import type { Registry } from "prom-client"
import { HELP, parseCommand, type Command } from "./Cli.js"
import { escapeText, formatIssue } from "./config/ConfigIssue.js"
import { formatLint, lintConfig } from "./config/Lint.js"
import { formatInvalid, loadConfigDetailed, summarize, type Loaded } from "./config/Load.js"
import { makeReloader } from "./config/Reload.js"
import { makeConfig, type SentinelConfig } from "./config/Schema.js"
import { formatFinding, validateConfig } from "./config/Validate.js"
import * as App from "./App.js"
import { PROXY_V8_FLAGS } from "./RuntimeFlags.js"
import { listenerTlsProblems } from "./tls/Certificates.js"
import { appLoggerLayer, makeErrorLog, type ErrorLogSettings } from "./observability/Logs.js"
import { formatErrorLine } from "./observability/ErrorLine.js"
import { makeMetrics } from "./observability/Metrics.js"
import { tracingLayerOptional } from "./observability/Tracing.js"
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

interface RunningProxy {
  /** Drain in-flight requests, close everything, flush the logs. */
  readonly shutdown: () => Promise<void>
  /** Reload the configuration file (no-op in quick mode). */
  readonly reload: () => Promise<void>
  /** Reopen every log file. */
  readonly reopenLogs: () => Promise<void>
  readonly registry: () => Registry
}

/** `observability { tracing }` with this build's version, or undefined when tracing is off. */
const tracingConfigOf = (config: SentinelConfig) => {
  const t = config.observability.tracing
  return t === undefined ? undefined : { serviceVersion: VERSION, ...t }
}

/** The error log: its file at its level, or stderr at `logging.level`. Reloads apply it. */
const errorLogSettings = (config: SentinelConfig): ErrorLogSettings => {
  const e = config.observability.logging.errorLog
  if (e.enabled && e.file !== undefined && e.file !== "-") return { file: e.file, level: e.level, bufferSize: e.bufferSize }
  return { level: config.observability.logging.level, bufferSize: e.bufferSize }
}

const startProxy = async (
  loaded: Pick<Loaded, "config" | "files" | "warnings">,
  file: string | undefined,
  options: { readonly serveMetrics: boolean }
): Promise<RunningProxy> => {
  const config = loaded.config
  // relative paths of the configuration resolve against working-directory from here on
  file = enterWorkingDirectory(config.system, file)
  // One registry per process, with the default process metrics (they install process-wide observers).
  const metrics = makeMetrics({
    version: VERSION,
    defaultMetrics: true,
    maxSeriesPerMetric: config.observability.metrics.maxSeriesPerMetric
  })
  const errorLog = makeErrorLog(errorLogSettings(config), { onDrop: (n: number) => metrics.logDropped.add(n, "error") })
  const runtime = await Effect.runPromise(Effect.scoped(Layer.toRuntime(appLoggerLayer({ errorLog }))))
  const run = Runtime.runPromise(runtime)
  const scope = await run(Scope.make())

  // The metrics listener follows reloads: moved, re-pathed, started or stopped.
  let metricsListener: MetricsListenerHandle | undefined
  let metricsServed: string | undefined
  const render = async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() })
  const syncMetricsListener = (next: SentinelConfig, atStart = false) =>
    Effect.promise(async () => {
      if (!options.serveMetrics) return undefined
      const m = next.observability.metrics
      const want = m.enabled ? `${m.address.host}:${m.address.port}${m.path}` : undefined
      if (want === metricsServed) return undefined
      await metricsListener?.close()
      metricsListener = undefined
      metricsServed = undefined
      if (!m.enabled) return undefined
      try {
        const h = await startMetricsListenerUnscoped({ host: m.address.host, port: m.address.port, path: m.path }, render)
        metricsListener = h
        metricsServed = want
        return h
      } catch (e) {
        return e as Error
      }
    }).pipe(
      Effect.flatMap((r) =>
        r instanceof Error
          ? atStart
            ? Effect.die(new Error(`metrics listener cannot bind: ${r.message}`))
            : Effect.logError(`metrics listener failed to bind: ${r.message}`)
          : r === undefined
            ? Effect.void
            : Effect.logInfo("metrics listening").pipe(Effect.annotateLogs({ address: `${r.host}:${r.port}`, path: r.path }))
      )
    )

  const program = Effect.gen(function* () {
    for (const w of loaded.warnings) yield* Effect.logWarning(formatIssue(w))
    // Tracing lives as long as the proxy (closed, spans flushed, after it); restart-only.
    const tracing = yield* Layer.build(tracingLayerOptional(tracingConfigOf(config)))
    const service = yield* App.make(config, { metrics }).pipe(Effect.provide(tracing))
    yield* syncMetricsListener(config, true)
    // everything this process serves is bound: the user and group it runs as from now on
    const dropped = dropPrivileges(config.system)
    if (dropped._tag === "Dropped") yield* Effect.logInfo("running as user").pipe(Effect.annotateLogs({ user: dropped.user, group: dropped.group }))
    else if (dropped._tag === "NotRoot") {
      yield* Effect.logWarning("system user/group ignored: only a process started as root can switch user").pipe(
        Effect.annotateLogs({ uid: dropped.uid })
      )
    }
    yield* Effect.addFinalizer(() => Effect.promise(async () => metricsListener?.close()))
    const reloader =
      file === undefined
        ? undefined
        : yield* makeReloader({
            file,
            initial: loaded,
            metrics,
            apply: (next) =>
              Effect.gen(function* () {
                // The error log opens first (nginx: a log it cannot open fails the reload), switches last.
                const errorSwap = errorLog.prepare(errorLogSettings(next))
                if (Either.isLeft(errorSwap)) {
                  const e = errorSwap.left
                  return yield* Effect.fail({ message: `${e.log} log cannot be opened: ${e.file}: ${e.message}` })
                }
                const summary = yield* service.reload(next).pipe(
                  Effect.mapError((e) => ({
                    message:
                      e._tag === "LogOpenFailed"
                        ? `${e.log} log cannot be opened: ${e.file}: ${e.message}`
                        : `listener "${e.listener}" cannot bind ${e.address}: ${e.message}`
                  })),
                  Effect.onExit((exit) => Effect.sync(() => (Exit.isSuccess(exit) ? errorSwap.right.commit() : errorSwap.right.abort())))
                )
                yield* Effect.logInfo("configuration applied").pipe(Effect.annotateLogs({ ...summary }))
                yield* syncMetricsListener(next)
              })
          })
    return { service, reloader }
  })
  const { service, reloader } = await run(Scope.extend(program, scope))
  return {
    shutdown: async () => {
      await run(Scope.close(scope, Exit.void))
      await errorLog.close()
    },
    reload: async () => {
      if (reloader === undefined) {
        await run(Effect.logWarning("SIGHUP ignored: no configuration file (quick mode)"))
        return
      }
      await run(reloader.reload("signal"))
    },
    reopenLogs: async () => {
      await run(service.reopenLogs())
      await errorLog.writer.reopen()
      await run(Effect.logInfo("log files reopened"))
    },
    registry: () => metrics.registry
  }
}

/** Single-process mode: the proxy plus this process's signal handling. */
const runSingle = (loaded: Pick<Loaded, "config" | "files" | "warnings">, file: string | undefined): void => {
  const started = startProxy(loaded, file, { serveMetrics: true })
  started.catch((e: unknown) => {
    stderrLine("error", `not started: ${e instanceof Error ? e.message : String(e)}`)
    process.exit(1)
  })
  // Handlers go in before the proxy is up: a signal during start-up waits for it instead of
  // taking Node's default action (SIGHUP would terminate the process).
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
    started
      .then((proxy) => proxy.shutdown())
      .then(
        () => process.exit(0),
        (e: unknown) => {
          stderrLine("error", `shutdown failed: ${String(e)}`)
          process.exit(1)
        }
      )
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
    if (signals === 0) void started.then((p) => p.reload()).catch((e: unknown) => stderrLine("error", `reload failed: ${String(e)}`))
  })
  process.on("SIGUSR1", () => {
    void started.then((p) => p.reopenLogs()).catch((e: unknown) => stderrLine("error", `reopen failed: ${String(e)}`))
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
  runCluster({
    workers: config.system.workerThreads,
    gracefulTimeoutMs: Duration.toMillis(config.system.gracefulShutdownTimeout),
    // Workers do not bind the metrics listener: the primary serves them aggregated.
    metrics: m.enabled ? { host: m.address.host, port: m.address.port, path: m.path } : undefined,
    execArgv: PROXY_V8_FLAGS,
    onEvent: logClusterEvent,
    workerMain: () => Promise.reject(new Error("unreachable: workerMain runs in workers"))
  }).then((code) => process.exit(code))
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
      const proxy = await startProxy(loaded.right, file, { serveMetrics: false })
      return {
        shutdown: proxy.shutdown,
        reload: proxy.reload,
        reopenLogs: proxy.reopenLogs,
        metricsRegistry: proxy.registry
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

main()
