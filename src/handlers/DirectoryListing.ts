/**
 * HTML directory listing for `directory-listing #true`. Every name is HTML-escaped and every link
 * percent-encoded, so a file called `<script>` or `a"onmouseover=` is shown, never executed.
 */
import type { Dirent } from "node:fs"

/** Entries shown at most; the listing says how many were left out (bounded work per request). */
export const MAX_LISTING_ENTRIES = 5000

export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&#39;"))

/**
 * Renders the listing of `urlPath` (decoded, starts and ends with "/"). `visible` decides which
 * entries appear (dotfiles are hidden unless allowed).
 */
export const renderDirectoryListing = (
  urlPath: string,
  entries: ReadonlyArray<Dirent>,
  visible: (name: string) => boolean
): string => {
  const shown = entries
    .filter((e) => visible(e.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const rows: Array<string> = []
  if (urlPath !== "/") rows.push(`<li><a href="../">../</a></li>`)
  for (const e of shown.slice(0, MAX_LISTING_ENTRIES)) {
    const name = e.isDirectory() ? e.name + "/" : e.name
    const href = encodeURIComponent(e.name) + (e.isDirectory() ? "/" : "")
    rows.push(`<li><a href="./${escapeHtml(href)}">${escapeHtml(name)}</a></li>`)
  }
  if (shown.length > MAX_LISTING_ENTRIES) rows.push(`<li>… ${shown.length - MAX_LISTING_ENTRIES} more</li>`)
  const title = escapeHtml(`Index of ${urlPath}`)
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n<body><h1>${title}</h1>\n<ul>\n${rows.join("\n")}\n</ul></body></html>\n`
}
