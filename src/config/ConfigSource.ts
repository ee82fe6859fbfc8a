/**
 * Where a proxy's configuration comes from, as a service: the configuration to start with,
 * and how to follow it afterwards. `App.layer` requires it; pick one:
 *
 *   ConfigSource.fromValue(config)  a `SentinelConfig` value (embedding, tests); reloads are
 *                                   the program's own (`Sentinel.reload(config)`)
 *   ConfigSource.fromFile(path)     a KDL file and its includes, loaded and validated when the
 *                                   layer is built (fails with `ConfigInvalid`, every problem
 *                                   with file:line:col); followed by the reloader (SIGHUP,
 *                                   `system { auto-reload }` file watches)
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { Metrics } from "../observability/Metrics.js"
import { formatIssue } from "./ConfigIssue.js"
import { makeCurrent } from "./Current.js"
import { type ConfigInvalid, loadConfigDetailed, type Loaded, type LoadOptions } from "./Load.js"
import { type ConfigReloader, makeReloader, type ReloaderOptions } from "./Reload.js"
import type { SentinelConfig } from "./Schema.js"

export interface ConfigSourceService {
  /** The configuration to start with (decoded and validated), its files and warnings. */
  readonly initial: Loaded
  /** The main file, or undefined for a value. */
  readonly file: string | undefined
  /**
   * Follows the source for as long as the scope: `apply` puts each new, validated
   * configuration in force (its failure keeps the running one). For a value, `reload` of the
   * returned reloader changes nothing ("Unchanged").
   */
  readonly follow: (
    apply: ReloaderOptions["apply"],
    metrics?: Metrics
  ) => Effect.Effect<ConfigReloader, never, Scope.Scope>
}

export class ConfigSource extends Context.Tag("sentinel/config/ConfigSource")<ConfigSource, ConfigSourceService>() {
  /** A configuration value: nothing to watch. */
  static readonly fromValue = (config: SentinelConfig): Layer.Layer<ConfigSource> => Layer.succeed(ConfigSource, valueSource(config))

  /** A KDL file: loaded now (warnings logged), followed by the reloader. */
  static readonly fromFile = (
    file: string,
    options: LoadOptions & Pick<ReloaderOptions, "debounceMs" | "pollMs" | "check"> = {}
  ): Layer.Layer<ConfigSource, ConfigInvalid> =>
    Layer.effect(
      ConfigSource,
      loadConfigDetailed(file, options).pipe(
        Effect.tap((loaded) => Effect.forEach(loaded.warnings, (w) => Effect.logWarning(formatIssue(w)), { discard: true })),
        Effect.map((loaded) => fileSource(file, loaded, options))
      )
    )

  /** An already loaded file (the command line loads it first to report problems its own way). */
  static readonly fromLoaded = (file: string | undefined, loaded: Loaded, options: LoadOptions = {}): Layer.Layer<ConfigSource> =>
    Layer.succeed(ConfigSource, file === undefined ? { ...valueSource(loaded.config), initial: loaded } : fileSource(file, loaded, options))
}

const valueSource = (config: SentinelConfig): ConfigSourceService => ({
  initial: { config, warnings: [], files: [] },
  file: undefined,
  follow: () =>
    Effect.succeed({
      reload: () => Effect.succeed({ _tag: "Unchanged" } as const),
      current: makeCurrent(config),
      files: () => [],
      watching: () => false
    })
})

const fileSource = (
  file: string,
  initial: Loaded,
  options: LoadOptions & Pick<ReloaderOptions, "debounceMs" | "pollMs" | "check">
): ConfigSourceService => ({
  initial,
  file,
  follow: (apply, metrics) =>
    makeReloader({
      file,
      initial,
      apply,
      metrics,
      check: options.check,
      debounceMs: options.debounceMs,
      pollMs: options.pollMs,
      env: options.env
    })
})
