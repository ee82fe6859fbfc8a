/** Typed model of the `system { ... }` block: process, workers, reload, DNS cache. */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import { Count, defaulted, defaultedStruct, NonNegativeDuration, PositiveCount } from "./SchemaPrimitives.js"
import { DnsConfig } from "./UpstreamSchema.js"

export const SystemConfig = Schema.Struct({
  /** `worker-threads`: worker processes; 1 = single process, 0 = one per core. Default 1. */
  workerThreads: defaulted(Count, () => 1),
  /** `max-connections`: total downstream connections. Default 10000. */
  maxConnections: defaulted(PositiveCount, () => 10000),
  /** `graceful-shutdown-timeout-secs`: drain deadline on shutdown. Default 30s. */
  gracefulShutdownTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(30)),
  /** `trace-id-format`: `"tinyflake"` (default) or `"uuid"`. */
  traceIdFormat: defaulted(Schema.Literal("tinyflake", "uuid"), () => "tinyflake" as const),
  /** `auto-reload`: watch the config file and reload on change. Default `#false`. */
  autoReload: defaulted(Schema.Boolean, () => false),
  /** `route-cache-size`: entries in the route-match cache. Default 1000. */
  routeCacheSize: defaulted(Count, () => 1000),
  /** `pid-file`: path to write the primary's pid to. Default: none. */
  pidFile: Schema.optional(Schema.String),
  /**
   * `user`: user name (or numeric uid) the process switches to after binding its listeners,
   * as Sentinel's `system { user }`. Default: none (keep the user it was started as).
   */
  user: Schema.optional(Schema.NonEmptyString),
  /** `group`: group name (or numeric gid) switched to together with `user`. Default: none (the user's, or keep the current). */
  group: Schema.optional(Schema.NonEmptyString),
  /** `working-directory`: directory the process changes to at startup. Default: none (stay where started). */
  workingDirectory: Schema.optional(Schema.NonEmptyString),
  /** `dns { refresh-secs; timeout-secs; max-stale-secs; max-hosts }`: the resolver cache of upstream host names. */
  dns: defaultedStruct(DnsConfig)
})
export type SystemConfig = typeof SystemConfig.Type
