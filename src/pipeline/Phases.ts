/**
 * The named phases a route's plan is built from, and how an embedder edits them.
 *
 * A request runs: validate -> trace -> route -> (the route's phases) -> upstream or handler ->
 * response -> log. The route's phases are `RouteExtension`s, in this order:
 *
 *   filters       the route's `filters "a" "b" ...` list (headers, rate limits, CORS, ...)
 *     agents      the route's agent calls, run at the place of its first agent filter
 *                 (after the other filters when it has none)
 *   static-files  a route's `static-files { }` handler
 *   cache         a route's `cache { }` (src/cache/): after the filters and agents, so that auth
 *                 and WAF decide before anything is served from the cache; a hit is answered
 *                 here, a miss goes on to the upstream and fills the cache
 *   (extensions)  `SentinelOptions.extensions`, appended
 *
 * An embedder puts a stage `before` or `after` a phase, or `replace`s one:
 * `replace("agents", myAuth)` runs `myAuth` where the agents would have run, and no agent is
 * called. Replacing `filters` drops the route's filters; the agents slot stays in its place
 * after the replacement.
 */
import type { RouteConfig, SentinelConfig } from "../config/Schema.js"
import type { RouteContribution, RouteExtension } from "./Stage.js"

export type PhaseName = "filters" | "agents" | "static-files" | "cache"

export const PHASE_NAMES: ReadonlyArray<PhaseName> = ["filters", "agents", "static-files", "cache"]

export interface PhaseEdit<R = never> {
  readonly at: "before" | "after" | "replace"
  readonly phase: PhaseName
  readonly extension: RouteExtension<R>
}

export const before = <R>(phase: PhaseName, extension: RouteExtension<R>): PhaseEdit<R> => ({ at: "before", phase, extension })
export const after = <R>(phase: PhaseName, extension: RouteExtension<R>): PhaseEdit<R> => ({ at: "after", phase, extension })
export const replace = <R>(phase: PhaseName, extension: RouteExtension<R>): PhaseEdit<R> => ({ at: "replace", phase, extension })

type MutableContribution = { -readonly [K in keyof RouteContribution]: RouteContribution[K] }

/**
 * Contributions merged in order: stages are concatenated; the handler, the deadlines and the
 * response hook, the upgrade policy and the response encoding of a later contribution replace an earlier one's.
 */
export const mergeContributions = (contributions: ReadonlyArray<RouteContribution | undefined>): RouteContribution | undefined => {
  let out: MutableContribution | undefined
  for (const c of contributions) {
    if (c === undefined) continue
    out ??= {}
    if (c.request) out.request = [...(out.request ?? []), ...c.request]
    if (c.response) out.response = [...(out.response ?? []), ...c.response]
    if (c.complete) out.complete = [...(out.complete ?? []), ...c.complete]
    if (c.handler) out.handler = c.handler
    if (c.timeoutMs !== undefined) out.timeoutMs = c.timeoutMs
    if (c.upstreamTimeoutMs !== undefined) out.upstreamTimeoutMs = c.upstreamTimeoutMs
    if (c.connectTimeoutMs !== undefined) out.connectTimeoutMs = c.connectTimeoutMs
    if (c.responseHook) out.responseHook = c.responseHook
    if (c.upgrade) out.upgrade = c.upgrade
    if (c.encoding) out.encoding = c.encoding
  }
  return out
}

/** Several extensions as one (their contributions merged in order), or the one itself. */
export const combineExtensions = (name: string, extensions: ReadonlyArray<RouteExtension>): RouteExtension | undefined =>
  extensions.length === 0
    ? undefined
    : extensions.length === 1
      ? extensions[0]
      : {
          name,
          compile: (route: RouteConfig, config: SentinelConfig) => mergeContributions(extensions.map((e) => e.compile(route, config)))
        }

/** An edit naming a phase that does not exist, or two replacements of one phase. */
export const phaseEditProblems = (edits: ReadonlyArray<PhaseEdit<unknown>>): Array<string> => {
  const problems: Array<string> = []
  const replaced = new Set<string>()
  for (const e of edits) {
    if (!PHASE_NAMES.includes(e.phase)) problems.push(`unknown phase "${e.phase}" (phases: ${PHASE_NAMES.join(", ")})`)
    if (e.at === "replace") {
      if (replaced.has(e.phase)) problems.push(`phase "${e.phase}" replaced twice`)
      replaced.add(e.phase)
    }
  }
  return problems
}

/**
 * What runs in a phase's place after the edits: the `before` extensions, the replacement or
 * the built-in one, the `after` extensions; combined into one extension (undefined: nothing).
 */
export const editedPhase = (
  phase: PhaseName,
  builtin: RouteExtension | undefined,
  edits: ReadonlyArray<PhaseEdit>
): RouteExtension | undefined => {
  const at = (where: PhaseEdit["at"]) => edits.filter((e) => e.phase === phase && e.at === where).map((e) => e.extension)
  const replacement = at("replace")
  const core = replacement.length > 0 ? replacement : builtin === undefined ? [] : [builtin]
  return combineExtensions(phase, [...at("before"), ...core, ...at("after")])
}
