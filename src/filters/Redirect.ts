/**
 * `filter "<id>" { type "redirect"; status-code 302; scheme "https"; hostname "x"; port 443; replace-full-path "/p" | replace-prefix-match "/p" }`.
 * Answers with a redirect built from the request and the configured parts (Sentinel answers 500
 * for agent redirects; this filter is the documented way). The query string is kept.
 */
import type { FilterOutcome, FilterRequest } from "./FilterOutcome.js"
import { applyPathModifier, type PathModifier } from "./PathModifier.js"

export interface RedirectConfig {
  /** KDL `status-code`: 301, 302, 303, 307 or 308. Default 302. */
  readonly statusCode: 301 | 302 | 303 | 307 | 308
  /** KDL `scheme`. Default: the request's. */
  readonly scheme: "http" | "https" | null
  /** KDL `hostname`. Default: the request's. */
  readonly hostname: string | null
  /** KDL `port`. Default: the request's when neither scheme nor port changes, else the scheme's default (omitted). */
  readonly port: number | null
  /** KDL `replace-full-path` / `replace-prefix-match`. Default: path unchanged. */
  readonly path: PathModifier | null
}

export const defaultRedirectConfig: RedirectConfig = { statusCode: 302, scheme: null, hostname: null, port: null, path: null }

/**
 * `requestPort` is the port the client addressed (from Host), null when it used the default.
 * `matchedPrefix` is the route's path-prefix (for replace-prefix-match), "/" otherwise.
 */
export const redirect = (
  c: RedirectConfig,
  req: FilterRequest,
  requestPort: number | null = null,
  matchedPrefix = "/"
): FilterOutcome => {
  const scheme = c.scheme ?? req.scheme
  const host = c.hostname ?? req.host
  const port = c.port ?? (c.scheme === null || c.scheme === req.scheme ? requestPort : null)
  const defaultPort = scheme === "https" ? 443 : 80
  const authority = port === null || port === defaultPort ? host : `${host}:${port}`
  // the request path is protocol-relative-safe: validated origin-form; a modifier path is validated config
  const path = c.path === null ? req.path : applyPathModifier(c.path, req.path, matchedPrefix)
  const location = `${scheme}://${authority}${path}${req.query === "" ? "" : "?" + req.query}`
  return {
    _tag: "Respond",
    status: c.statusCode,
    headers: ["Location", location, "Content-Length", "0"],
    body: "",
    reason: "redirect"
  }
}
