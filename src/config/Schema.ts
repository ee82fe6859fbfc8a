/**
 * The typed configuration model the dataplane consumes: `SentinelConfig`, its
 * cross-field checks and the programmatic entry points. The blocks' schemas
 * live in one file per block (SystemSchema, ListenerSchema, UpstreamSchema,
 * RouteSchema, LimitsSchema, ObservabilitySchema, FilterSchema, AgentSchema,
 * CacheSchema) and are re-exported here, so importers need this module only.
 *
 * `Schema.Type` of each schema is exactly the contract in the brief's
 * `config-model.ts`. The `Encoded` side is the *input* shape: every field
 * with a default is optional there, so `makeConfig({...partial})` and the
 * KDL decoder both produce a full model by running the same schema (one
 * place for defaults). Durations are `Duration.Duration` on both sides;
 * sizes are plain numbers of bytes.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

import { AgentConfig } from "./AgentSchema.js"
import { CacheStoreConfig } from "./CacheSchema.js"
import { FilterConfig, RateLimitsConfig } from "./FilterSchema.js"
import { LimitsConfig } from "./LimitsSchema.js"
import { ListenerConfig } from "./ListenerSchema.js"
import { ObservabilityConfig } from "./ObservabilitySchema.js"
import { RouteConfig } from "./RouteSchema.js"
import { defaulted, defaultedStruct } from "./SchemaPrimitives.js"
import { SystemConfig } from "./SystemSchema.js"
import { UpstreamConfig } from "./UpstreamSchema.js"

export { Count, formatHostPort, NonNegativeDuration, parseHostPort, Port, PositiveCount, SocketAddress } from "./SchemaPrimitives.js"
export * from "./SystemSchema.js"
export * from "./ListenerSchema.js"
export * from "./UpstreamSchema.js"
export * from "./RouteSchema.js"
export * from "./LimitsSchema.js"
export * from "./ObservabilitySchema.js"
export * from "./FilterSchema.js"
export * from "./AgentSchema.js"
export * from "./CacheSchema.js"

// ---------------------------------------------------------------------------
// the whole config

/** The schema version this build implements. */
export const currentSchemaVersion = "1.0"

const duplicates = (ids: ReadonlyArray<string>): Array<string> => {
  const seen = new Set<string>()
  const dup = new Set<string>()
  for (const id of ids) (seen.has(id) ? dup : seen).add(id)
  return [...dup]
}

/** Cross-field checks (ids unique, references resolve); the KDL decoder reports the same with locations. */
const crossCheck = (c: {
  readonly listeners: ReadonlyArray<ListenerConfig>
  readonly upstreams: ReadonlyArray<UpstreamConfig>
  readonly routes: ReadonlyArray<RouteConfig>
  readonly filters: ReadonlyArray<FilterConfig>
  readonly agents: ReadonlyArray<AgentConfig>
}): Array<string> => {
  const problems: Array<string> = []
  for (const [kind, items] of [
    ["listener", c.listeners], ["upstream", c.upstreams], ["route", c.routes], ["filter", c.filters], ["agent", c.agents]
  ] as const) {
    for (const id of duplicates(items.map((i) => i.id))) problems.push(`duplicate ${kind} id "${id}"`)
  }
  const filterIds = new Set(c.filters.map((f) => f.id))
  const agentIds = new Set(c.agents.map((a) => a.id))
  for (const r of c.routes) {
    for (const f of r.filters) if (!filterIds.has(f)) problems.push(`route "${r.id}" references unknown filter "${f}"`)
    for (const f of duplicates(r.filters)) problems.push(`route "${r.id}" lists filter "${f}" twice`)
  }
  for (const f of c.filters) {
    if (f.type === "agent" && !agentIds.has(f.agent)) problems.push(`filter "${f.id}" references unknown agent "${f.agent}"`)
  }
  if (c.routes.some((r) => r.builtinHandler === "config") && !c.listeners.some((l) => l.admin)) {
    problems.push(`builtin-handler "config" needs a listener with admin #true (it is served only there)`)
  }
  const upstreamIds = new Set(c.upstreams.map((u) => u.id))
  const routeIds = new Set(c.routes.map((r) => r.id))
  for (const r of c.routes) {
    if (r.upstream !== undefined && !upstreamIds.has(r.upstream)) {
      problems.push(`route "${r.id}" references unknown upstream "${r.upstream}"`)
    }
  }
  for (const l of c.listeners) {
    if (l.defaultRoute !== undefined && !routeIds.has(l.defaultRoute)) {
      problems.push(`listener "${l.id}" default-route references unknown route "${l.defaultRoute}"`)
    }
  }
  return problems
}

export const SentinelConfig = Schema.Struct({
  /** `schema-version` (alias `version`). Default "1.0". */
  schemaVersion: defaulted(Schema.String, () => currentSchemaVersion),
  /** `system {…}`. */
  system: defaultedStruct(SystemConfig),
  /** `listeners { listener "id" {…} }`. At least one. */
  listeners: Schema.Array(ListenerConfig).pipe(Schema.minItems(1)),
  /** `upstreams { upstream "id" {…} }`. */
  upstreams: defaulted(Schema.Array(UpstreamConfig), () => []),
  /** `routes { route "id" {…} }`. */
  routes: defaulted(Schema.Array(RouteConfig), () => []),
  /** `limits {…}`. */
  limits: defaultedStruct(LimitsConfig),
  /** `observability {…}`. */
  observability: defaultedStruct(ObservabilityConfig),
  /** `filters { filter "id" { type "..."; ... } }`. */
  filters: defaulted(Schema.Array(FilterConfig), () => []),
  /** `agents { agent "id" { unix-socket "..."; ... } }`. */
  agents: defaulted(Schema.Array(AgentConfig), () => []),
  /** `rate-limits { default-rps; default-burst; key; global {…} }`. */
  rateLimits: defaultedStruct(RateLimitsConfig),
  /** `cache { enabled; backend "memory"; max-size; lock-timeout; status-header; status-header-name }`. */
  cache: defaultedStruct(CacheStoreConfig)
}).pipe(
  Schema.filter((c) => {
    const problems = crossCheck(c)
    return problems.length === 0 ? true : problems.join("; ")
  })
)
export type SentinelConfig = typeof SentinelConfig.Type
/** What a program passes in: every defaulted field optional, addresses may be strings. */
export type SentinelConfigInput = typeof SentinelConfig.Encoded

// ---------------------------------------------------------------------------
// programmatic entry points

/** Decodes a config value built in code (defaults filled, everything checked). */
export const decodeConfig = (value: unknown): Either.Either<SentinelConfig, ParseResult.ParseError> =>
  Schema.decodeUnknownEither(SentinelConfig, { errors: "all", onExcessProperty: "error" })(value)

/**
 * Builds a full config from a partial one, filling defaults; throws with a
 * readable message on invalid input. For tests and embedding.
 */
export const makeConfig = (input: SentinelConfigInput): SentinelConfig => {
  const result = decodeConfig(input)
  if (Either.isLeft(result)) {
    throw new Error(`invalid Sentinel config:\n${ParseResult.TreeFormatter.formatErrorSync(result.left)}`)
  }
  return result.right
}

/** Encodes a config back to its input shape (durations stay `Duration`). */
export const encodeConfig = (config: SentinelConfig): SentinelConfigInput =>
  Schema.encodeSync(SentinelConfig)(config)
