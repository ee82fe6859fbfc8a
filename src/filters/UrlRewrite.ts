/**
 * `filter "<id>" { type "url-rewrite"; hostname "internal.example"; replace-full-path "/p" | replace-prefix-match "/p" }`.
 * Changes what is sent upstream (Host and path); the client sees nothing. Routing has already
 * happened, so a rewrite never re-routes.
 */
import type { FilterOutcome, FilterRequest } from "./FilterOutcome.js"
import { applyPathModifier, type PathModifier } from "./PathModifier.js"

export interface UrlRewriteConfig {
  /** KDL `hostname`: Host sent upstream. Default: unchanged. */
  readonly hostname: string | null
  /** KDL `replace-full-path` / `replace-prefix-match`. Default: unchanged. */
  readonly path: PathModifier | null
}

export const defaultUrlRewriteConfig: UrlRewriteConfig = { hostname: null, path: null }

export const urlRewrite = (c: UrlRewriteConfig, req: FilterRequest, matchedPrefix = "/"): FilterOutcome => {
  const rewrite: { host?: string; path?: string } = {}
  if (c.hostname !== null) rewrite.host = c.hostname
  if (c.path !== null) rewrite.path = applyPathModifier(c.path, req.path, matchedPrefix)
  return { _tag: "Continue", rewrite }
}
