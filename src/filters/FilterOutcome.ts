/**
 * What a filter sees and what it may decide. Filters are plain functions (hot path, DESIGN.md §2):
 * `(config/state, FilterRequest) => FilterOutcome`. The pipeline applies the outcome.
 *
 * `FilterRequest` is a structural subset of the pipeline's `RequestContext`, so a context can be
 * passed as is. Headers travel as flat `[name, value, name, value, ...]` arrays like the pipeline's.
 */

export interface FilterRequest {
  readonly method: string
  readonly scheme: "http" | "https"
  /** Lower-case host without port. */
  readonly host: string
  /** Normalised path without query. */
  readonly path: string
  /** Query without `?` ("" when none). */
  readonly query: string
  readonly clientIp: string
  readonly routeId: string
  /** First value of a request header by lower-case name. */
  header(lowerName: string): string | undefined
}

/** The request may proceed; the fields say what to change on the way. */
export interface Continue {
  readonly _tag: "Continue"
  /** Flat header list to append to the client response (rate-limit, CORS headers). */
  readonly responseHeaders?: ReadonlyArray<string>
  /** New upstream Host / path (url-rewrite). */
  readonly rewrite?: { readonly host?: string; readonly path?: string }
  /** Wait this long before proceeding (rate-limit `on-limit "delay"`); the stage owns the timer. */
  readonly delayMs?: number
  /** Something to audit-log / count although the request continues (e.g. "rate-limited-log-only"). */
  readonly note?: string
}

/** The proxy answers itself; nothing goes upstream. */
export interface Respond {
  readonly _tag: "Respond"
  readonly status: number
  /** Flat header list. */
  readonly headers: ReadonlyArray<string>
  readonly body: string
  /** Reason for the audit log / metrics ("rate-limited", "cors-preflight", "redirect", ...). */
  readonly reason: string
}

export type FilterOutcome = Continue | Respond

export const proceed: Continue = { _tag: "Continue" }

/** Filter phases (KDL `phase "request"|"response"|"both"`). */
export type FilterPhase = "request" | "response" | "both"

export const appliesTo = (phase: FilterPhase, at: "request" | "response"): boolean => phase === "both" || phase === at
