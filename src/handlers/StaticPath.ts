/**
 * Maps a request path onto a file under a root without ever leaving it (edge-security.md §5):
 * decode once, reject rather than repair, normalise, then verify the `realpath` is inside the
 * realpath of the root. A symlink inside the root that points outside is refused like a missing file.
 */
import { promises as fsp, type Stats } from "node:fs"
import * as nodePath from "node:path"

export type PathRejection =
  /** NUL, bad %-escape, invalid UTF-8 (overlong `%c0%ae`), backslash, `..` segment, not origin-form. */
  | { readonly _tag: "BadPath"; readonly status: 400; readonly reason: string }
  /** Dotfile (unless allowed) or a real path outside the root. Answered 404 so nothing is revealed. */
  | { readonly _tag: "Denied"; readonly status: 404; readonly reason: string }
  | { readonly _tag: "NotFound"; readonly status: 404; readonly reason: string }
  | { readonly _tag: "Forbidden"; readonly status: 403; readonly reason: string }

export interface ResolvedPath {
  readonly _tag: "Resolved"
  /** The real (symlink-free) absolute path, inside the root. */
  readonly realPath: string
  readonly stats: Stats
  /** Decoded, normalised request path (always starts with "/"). */
  readonly urlPath: string
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true })

const hexValue = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1

/**
 * Percent-decodes exactly once to UTF-8. Returns null on a bad escape or invalid UTF-8
 * (overlong encodings such as `%c0%ae` are invalid UTF-8 and never become `.`).
 * `%252e` decodes to the literal text `%2e`, never to `.`.
 */
export const decodePathOnce = (raw: string): string | null => {
  if (!raw.includes("%")) return raw
  const bytes: Array<number> = []
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c === 37) {
      const h1 = hexValue(raw.charCodeAt(i + 1))
      const h2 = hexValue(raw.charCodeAt(i + 2))
      if (h1 < 0 || h2 < 0) return null
      bytes.push(h1 * 16 + h2)
      i += 2
    } else if (c < 128) bytes.push(c)
    else {
      for (const b of Buffer.from(raw[i], "utf8")) bytes.push(b)
    }
  }
  try {
    return fatalUtf8.decode(Uint8Array.from(bytes))
  } catch {
    return null
  }
}

/** Dot-names that stay reachable when dotfiles are denied (ACME http-01, security.txt). */
const ALLOWED_DOT_NAMES = new Set([".well-known"])

const isDenied = (segment: string, allowDotfiles: boolean): boolean =>
  !allowDotfiles && segment.startsWith(".") && !ALLOWED_DOT_NAMES.has(segment)

/**
 * Validates and splits a request path (query already removed) into safe segments.
 * Encoded slashes (`foo%2fbar`) become separators, like Caddy; `..` anywhere is rejected.
 */
export const splitRequestPath = (
  rawPath: string,
  allowDotfiles: boolean
): { readonly segments: ReadonlyArray<string>; readonly urlPath: string } | PathRejection => {
  if (rawPath.charCodeAt(0) !== 47) return { _tag: "BadPath", status: 400, reason: "not-origin-form" }
  const decoded = decodePathOnce(rawPath)
  if (decoded === null) return { _tag: "BadPath", status: 400, reason: "bad-encoding" }
  if (decoded.includes("\0")) return { _tag: "BadPath", status: 400, reason: "nul" }
  // Backslash is never a separator on Linux, but it is elsewhere; refuse it instead of guessing.
  if (decoded.includes("\\")) return { _tag: "BadPath", status: 400, reason: "backslash" }
  const segments: Array<string> = []
  for (const s of decoded.split("/")) {
    if (s === "" || s === ".") continue
    if (s === "..") return { _tag: "BadPath", status: 400, reason: "dot-dot" }
    if (isDenied(s, allowDotfiles)) return { _tag: "Denied", status: 404, reason: "dotfile" }
    segments.push(s)
  }
  const trailing = decoded.endsWith("/") && segments.length > 0 ? "/" : ""
  return { segments, urlPath: "/" + segments.join("/") + trailing }
}

const inside = (root: string, p: string): boolean => p === root || p.startsWith(root.endsWith(nodePath.sep) ? root : root + nodePath.sep)

const fsRejection = (err: unknown): PathRejection => {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === "EACCES" || code === "EPERM") return { _tag: "Forbidden", status: 403, reason: "permission" }
  if (code === "ERR_INVALID_ARG_VALUE" || code === "ERR_INVALID_ARG_TYPE") return { _tag: "BadPath", status: 400, reason: "invalid" }
  // ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, ...: not servable, say nothing more
  return { _tag: "NotFound", status: 404, reason: code ?? "not-found" }
}

/**
 * Resolves `segments` under `rootReal` (which must itself be a realpath). Follows symlinks with
 * `realpath` and refuses a result outside the root or whose real path contains a denied dot-name.
 */
export const resolveUnderRoot = async (
  rootReal: string,
  segments: ReadonlyArray<string>,
  allowDotfiles: boolean
): Promise<{ readonly realPath: string; readonly stats: Stats } | PathRejection> => {
  const candidate = nodePath.join(rootReal, ...segments)
  if (!inside(rootReal, candidate)) return { _tag: "Denied", status: 404, reason: "outside-root" }
  let realPath: string
  try {
    realPath = await fsp.realpath(candidate)
  } catch (err) {
    return fsRejection(err)
  }
  if (!inside(rootReal, realPath)) return { _tag: "Denied", status: 404, reason: "symlink-outside-root" }
  const rel = nodePath.relative(rootReal, realPath)
  if (rel !== "" && rel.split(nodePath.sep).some((s) => isDenied(s, allowDotfiles))) {
    return { _tag: "Denied", status: 404, reason: "dotfile-target" }
  }
  try {
    return { realPath, stats: await fsp.stat(realPath) }
  } catch (err) {
    return fsRejection(err)
  }
}

/** `splitRequestPath` + `resolveUnderRoot`. */
export const resolveStaticPath = async (
  rootReal: string,
  rawPath: string,
  allowDotfiles: boolean
): Promise<ResolvedPath | PathRejection> => {
  const split = splitRequestPath(rawPath, allowDotfiles)
  if ("_tag" in split) return split
  const r = await resolveUnderRoot(rootReal, split.segments, allowDotfiles)
  if ("_tag" in r) return r
  return { _tag: "Resolved", realPath: r.realPath, stats: r.stats, urlPath: split.urlPath }
}

/**
 * After opening, re-checks where the descriptor really points (Linux `/proc/self/fd`): closes the
 * window between `realpath` and `open` in which a directory could be swapped for a symlink.
 * Returns true when the check is unavailable (no /proc).
 */
export const fdInsideRoot = async (rootReal: string, fd: number): Promise<boolean> => {
  try {
    return inside(rootReal, await fsp.readlink(`/proc/self/fd/${fd}`))
  } catch {
    return true
  }
}
