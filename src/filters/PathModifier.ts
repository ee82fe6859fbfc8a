/**
 * Path rewriting shared by `redirect` and `url-rewrite` (Gateway API `HTTPPathModifier`):
 * `replace-full-path "/new"` or `replace-prefix-match "/new"` (the route's matched prefix is
 * replaced, at a segment boundary).
 */

export type PathModifier =
  | { readonly _tag: "ReplaceFullPath"; readonly path: string }
  | { readonly _tag: "ReplacePrefixMatch"; readonly prefix: string }

/**
 * Applies `modifier` to `path`. `matchedPrefix` is the route's `path-prefix` (when the route
 * matched otherwise, the prefix is "/" and the whole path is treated as matched).
 */
export const applyPathModifier = (modifier: PathModifier, path: string, matchedPrefix: string): string => {
  if (modifier._tag === "ReplaceFullPath") return modifier.path
  const prefix = matchedPrefix.endsWith("/") && matchedPrefix.length > 1 ? matchedPrefix.slice(0, -1) : matchedPrefix
  const matches = prefix === "/" || path === prefix || path.startsWith(prefix + "/")
  if (!matches) return path
  const rest = prefix === "/" ? path.slice(1) : path.slice(prefix.length + 1)
  const base = modifier.prefix.endsWith("/") ? modifier.prefix.slice(0, -1) : modifier.prefix
  const tail = path === prefix ? "" : "/" + rest
  const out = base + tail
  return out === "" ? "/" : out.startsWith("/") ? out : "/" + out
}
