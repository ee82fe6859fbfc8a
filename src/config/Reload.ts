/**
 * The configuration source of a running proxy: holds the current config (`Current.ts`)
 * and reloads it on request (SIGHUP) or, with
 * `system { auto-reload #true }`, when one of the files it was loaded from
 * (the main file and every include) changes.
 *
 * A reload parses and validates the whole new configuration (includes,
 * references, certificates, agent socket directories) before anything is
 * touched, then hands it to `apply` (the proxy's atomic swap). Invalid => the
 * running configuration stays, the reason is logged with `file:line:col`, and
 * `sentinel_config_reload_total{result="error"}` counts it. Reloads are
 * serialized: a trigger that arrives during a reload runs after it, on the
 * newest files.
 *
 * File watching: `fs.watch` on the directories holding the files (editors
 * replace files by rename, which a watch on the file itself loses), debounced
 * (200 ms default), plus a cheap poll of each file's size/mtime/inode (1 s
 * default) for file systems where `fs.watch` says nothing (network mounts,
 * Kubernetes ConfigMap symlink swaps). A change whose content is identical
 * to what was last read is ignored.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type { Metrics } from "../observability/Metrics.js"
import { formatIssue, sortIssues } from "./ConfigIssue.js"
import { type Current, makeCurrent } from "./Current.js"
import { loadConfigDetailed, type Loaded } from "./Load.js"
import type { SentinelConfig } from "./Schema.js"
import { formatFinding, localChecks, type ValidationFinding } from "./Validate.js"

export type ReloadTrigger = "signal" | "file-change" | "manual"

export type ReloadOutcome =
  | { readonly _tag: "Applied"; readonly config: SentinelConfig; readonly files: ReadonlyArray<string> }
  | { readonly _tag: "Rejected"; readonly problems: ReadonlyArray<string> }
  | { readonly _tag: "Unchanged" }

export interface ReloaderOptions {
  /** The main config file (as given on the command line). */
  readonly file: string
  /** What the process started with (config and the files it came from). */
  readonly initial: Pick<Loaded, "config" | "files">
  /** Swaps the configuration in; a failure keeps the running one (it must roll back itself). */
  readonly apply: (config: SentinelConfig, previous: SentinelConfig) => Effect.Effect<void, { readonly message: string }>
  /** Where `sentinel_config_reload_total` is counted. */
  readonly metrics?: Metrics | undefined
  /** Checks run after parsing, before `apply`. Default `localChecks` (certificates, agent socket dirs). */
  readonly check?: ((config: SentinelConfig) => Promise<ReadonlyArray<ValidationFinding>>) | undefined
  /** Quiet time after the last file event before reloading. Default 200 ms. */
  readonly debounceMs?: number | undefined
  /** Poll interval of the fallback watcher. Default 1000 ms. */
  readonly pollMs?: number | undefined
  /** Variables for `${VAR}`. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
}

export interface ConfigReloader {
  /** Reload now (serialized with every other reload). Never fails: the outcome says what happened. */
  readonly reload: (trigger: ReloadTrigger) => Effect.Effect<ReloadOutcome>
  /** The configuration in force; its followers run after each applied reload. */
  readonly current: Current<SentinelConfig>
  /** Files the configuration in force was read from. */
  readonly files: () => ReadonlyArray<string>
  /** Whether files are being watched (auto-reload of the configuration in force). */
  readonly watching: () => boolean
}

/**
 * Settings a reload cannot apply to a running process; changing them logs a
 * warning that they take effect after a restart. (`observability { logging }`
 * is applied by a reload: access, audit and error logs switch sinks, format
 * and level in place.)
 */
export const restartOnlyChanges = (prev: SentinelConfig, next: SentinelConfig): Array<string> => {
  const out: Array<string> = []
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)
  if (prev.system.workerThreads !== next.system.workerThreads) out.push("system.worker-threads")
  if (prev.system.user !== next.system.user) out.push("system.user")
  if (prev.system.group !== next.system.group) out.push("system.group")
  if (prev.system.workingDirectory !== next.system.workingDirectory) out.push("system.working-directory")
  if (!same(prev.observability.tracing, next.observability.tracing)) out.push("observability.tracing")
  if (prev.observability.metrics.maxSeriesPerMetric !== next.observability.metrics.maxSeriesPerMetric) {
    out.push("observability.metrics.max-series-per-metric")
  }
  return out
}

/** Content hash of the files (missing files hash as empty), to ignore no-op change events. */
const fingerprint = (files: ReadonlyArray<string>): string => {
  const h = createHash("sha256")
  for (const f of files) {
    h.update(f).update("\0")
    try {
      h.update(fs.readFileSync(f))
    } catch {
      h.update("<missing>")
    }
    h.update("\0")
  }
  return h.digest("hex")
}

/** Directory watches plus a stat poll over a set of files; calls `onChange` (debounced). */
class FileWatcher {
  private readonly dirs = new Map<string, fs.FSWatcher>()
  private names = new Set<string>()
  private stats = new Map<string, string>()
  private debounce: NodeJS.Timeout | undefined
  private poll: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly onChange: () => void,
    private readonly debounceMs: number,
    private readonly pollMs: number
  ) {}

  get active(): boolean {
    return this.names.size > 0
  }

  /** Watches exactly `files` (none when `enabled` is false). */
  sync(files: ReadonlyArray<string>, enabled: boolean): void {
    if (this.closed) return
    const abs = enabled ? files.map((f) => path.resolve(f)) : []
    this.names = new Set(abs)
    const wantDirs = new Set(abs.map((f) => path.dirname(f)))
    for (const [dir, w] of this.dirs) {
      if (!wantDirs.has(dir)) {
        w.close()
        this.dirs.delete(dir)
      }
    }
    for (const dir of wantDirs) {
      if (this.dirs.has(dir)) continue
      try {
        const w = fs.watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || this.names.has(path.join(dir, name.toString()))) this.schedule()
        })
        // A directory that goes away (or a watch error) leaves the poll to notice changes.
        w.on("error", () => {
          w.close()
          if (this.dirs.get(dir) === w) this.dirs.delete(dir)
        })
        this.dirs.set(dir, w)
      } catch {
        // fs.watch unsupported here: the poll covers it.
      }
    }
    this.stats = new Map(abs.map((f) => [f, this.statKey(f)]))
    if (abs.length === 0) {
      if (this.poll) clearInterval(this.poll)
      this.poll = undefined
    } else if (this.poll === undefined) {
      this.poll = setInterval(() => this.checkStats(), this.pollMs)
      this.poll.unref()
    }
  }

  close(): void {
    this.closed = true
    for (const w of this.dirs.values()) w.close()
    this.dirs.clear()
    if (this.poll) clearInterval(this.poll)
    if (this.debounce) clearTimeout(this.debounce)
  }

  private statKey(file: string): string {
    try {
      const s = fs.statSync(file)
      return `${s.size}:${s.mtimeMs}:${s.ino}`
    } catch {
      return "missing"
    }
  }

  private checkStats(): void {
    let changed = false
    for (const [file, key] of this.stats) {
      const now = this.statKey(file)
      if (now !== key) {
        this.stats.set(file, now)
        changed = true
      }
    }
    if (changed) this.schedule()
  }

  private schedule(): void {
    if (this.closed) return
    if (this.debounce) clearTimeout(this.debounce)
    this.debounce = setTimeout(() => {
      this.debounce = undefined
      this.onChange()
    }, this.debounceMs)
    this.debounce.unref()
  }
}

/**
 * What auto-reload watches: the config files, and the certificate, key and CA files of TLS
 * listeners (a renewed certificate written over the old one is a change like an edited config).
 */
export const watchedFiles = (files: ReadonlyArray<string>, config: SentinelConfig): Array<string> => {
  const out = [...files]
  for (const l of config.listeners) {
    const t = l.tls
    if (t === undefined) continue
    out.push(t.certFile, t.keyFile)
    if (t.caFile !== undefined) out.push(t.caFile)
    for (const s of t.sni) out.push(s.certFile, s.keyFile)
  }
  return [...new Set(out)]
}

/** Builds the reloader; file watches live as long as the scope. */
export const makeReloader = (options: ReloaderOptions): Effect.Effect<ConfigReloader, never, Scope.Scope> =>
  Effect.gen(function* () {
    const current = makeCurrent(options.initial.config)
    const lock = yield* Effect.makeSemaphore(1)
    const runtime = yield* Effect.runtime<never>()
    const check = options.check ?? localChecks
    let files: ReadonlyArray<string> = options.initial.files
    let watched = watchedFiles(files, options.initial.config)
    let lastSeen = fingerprint(watched)
    const metrics = options.metrics
    // Both series exist from the start, so dashboards and alerts see 0 rather than nothing.
    metrics?.configReloads.add(0, "success")
    metrics?.configReloads.add(0, "error")

    const watcher = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new FileWatcher(
            () => Runtime.runFork(runtime)(reload("file-change")),
            options.debounceMs ?? 200,
            options.pollMs ?? 1000
          )
      ),
      (w) => Effect.sync(() => w.close())
    )

    const reject = (trigger: ReloadTrigger, problems: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        metrics?.configReloads.inc("error")
        yield* Effect.logError(
          `configuration reload failed; keeping the running configuration:\n${problems.join("\n")}`
        ).pipe(Effect.annotateLogs({ trigger, file: options.file }))
        return { _tag: "Rejected", problems } as ReloadOutcome
      })

    const attempt = (trigger: ReloadTrigger): Effect.Effect<ReloadOutcome> =>
      Effect.gen(function* () {
        // Editors write in several steps and the poll re-fires on touch: skip content already seen.
        if (trigger === "file-change") {
          const fp = fingerprint(watched)
          if (fp === lastSeen) return { _tag: "Unchanged" } as const
        }
        const loaded = yield* Effect.either(loadConfigDetailed(options.file, { env: options.env ?? process.env }))
        if (Either.isLeft(loaded)) {
          lastSeen = fingerprint(watched)
          return yield* reject(trigger, sortIssues(loaded.left.issues).map(formatIssue))
        }
        const next = loaded.right
        const findings = yield* Effect.promise(() => check(next.config))
        const errors = findings.filter((f) => f.level === "error")
        if (errors.length > 0) {
          lastSeen = fingerprint(watchedFiles(next.files, next.config))
          return yield* reject(trigger, errors.map(formatFinding))
        }
        for (const w of next.warnings) yield* Effect.logWarning(formatIssue(w))
        const previous = yield* current.get
        const applied = yield* Effect.either(options.apply(next.config, previous))
        if (Either.isLeft(applied)) {
          lastSeen = fingerprint(watchedFiles(next.files, next.config))
          return yield* reject(trigger, [applied.left.message])
        }
        files = next.files
        watched = watchedFiles(files, next.config)
        lastSeen = fingerprint(watched)
        yield* current.set(next.config)
        watcher.sync(watched, next.config.system.autoReload)
        metrics?.configReloads.inc("success")
        const restart = restartOnlyChanges(previous, next.config)
        if (restart.length > 0) {
          yield* Effect.logWarning(`changed settings take effect after a restart: ${restart.join(", ")}`)
        }
        yield* Effect.logInfo("configuration reloaded").pipe(
          Effect.annotateLogs({ trigger, file: options.file, files: files.length })
        )
        return { _tag: "Applied", config: next.config, files } as const
      }).pipe(Effect.withSpan("Config.reload", { attributes: { trigger } }))

    const reload = (trigger: ReloadTrigger): Effect.Effect<ReloadOutcome> => lock.withPermits(1)(attempt(trigger))

    watcher.sync(watched, options.initial.config.system.autoReload)
    return {
      reload,
      current,
      files: () => files,
      watching: () => watcher.active
    }
  })
