/**
 * Header handling on the hot path: hop-by-hop stripping (RFC 9110 §7.6.1,
 * plus whatever `Connection` names), and compiled header policies
 * (`policies { request-headers {...} response-headers {...} }`).
 * Headers travel as flat `[name, value, name, value, ...]` arrays: what
 * node:http gives (`rawHeaders`) and what undici and `writeHead` accept.
 */
import type { HeaderOps } from "../config/Schema.js"
import { connectionTokens, isHopByHop, nameMatcher } from "../http/HopByHop.js"

export { connectionTokens, HOP_BY_HOP, isHopByHop, nameMatcher } from "../http/HopByHop.js"

/** Flat list without hop-by-hop fields and without the names in `skip` (lower-case). */
export const stripHopByHop = (
  raw: ReadonlyArray<string>,
  skip?: ReadonlySet<string>
): Array<string> => {
  let connection: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toLowerCase() === "connection") {
      connection = connection === undefined ? raw[i + 1] : `${connection}, ${raw[i + 1]}`
    }
  }
  const named = connectionTokens(connection)
  const out: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    if (isHopByHop(raw[i])) continue
    if (named !== undefined || skip !== undefined) {
      const lower = raw[i].toLowerCase()
      if (named?.has(lower) || skip?.has(lower)) continue
    }
    out.push(raw[i], raw[i + 1])
  }
  return out
}

/** First value of a header in a flat list (case-insensitive). */
export const getHeader = (flat: ReadonlyArray<string>, lowerName: string): string | undefined => {
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i].toLowerCase() === lowerName) return flat[i + 1]
  }
  return undefined
}

/** Remove every occurrence of the given lower-case names (a set, or a `nameMatcher`), in place. */
export const removeHeaders = (flat: Array<string>, lowerNames: ReadonlySet<string> | ((name: string) => boolean)): void => {
  const matches = typeof lowerNames === "function" ? lowerNames : (name: string) => lowerNames.has(name.toLowerCase())
  let w = 0
  for (let r = 0; r < flat.length; r += 2) {
    if (matches(flat[r])) continue
    flat[w++] = flat[r]
    flat[w++] = flat[r + 1]
  }
  flat.length = w
}

export const setHeader = (flat: Array<string>, name: string, value: string): void => {
  removeHeaders(flat, new Set([name.toLowerCase()]))
  flat.push(name, value)
}

export type HeaderPolicy = (flat: Array<string>) => void

/** Compile a `HeaderOps` block: rename first (as Sentinel), then set, add, remove. */
export const compileHeaderOps = (ops: HeaderOps): HeaderPolicy | undefined => {
  if (ops.rename.length + ops.set.length + ops.add.length + ops.remove.length === 0) return undefined
  const renames = new Map(ops.rename.map(([from, to]) => [from.toLowerCase(), to] as const))
  const renamed = nameMatcher(renames.keys())
  const setNames = nameMatcher(ops.set.map(([name]) => name.toLowerCase()))
  const removeNames = nameMatcher(ops.remove.map((n) => n.toLowerCase()))
  // set + add, flattened once: pushed as they are on every message
  const appended = [...ops.set.flat(), ...ops.add.flat()]
  return (flat) => {
    if (renames.size > 0) {
      for (let i = 0; i < flat.length; i += 2) {
        if (renamed(flat[i])) flat[i] = renames.get(flat[i].toLowerCase())!
      }
    }
    if (ops.set.length > 0) removeHeaders(flat, setNames)
    for (let i = 0; i < appended.length; i++) flat.push(appended[i])
    if (ops.remove.length > 0) removeHeaders(flat, removeNames)
  }
}

/** A copy of `flat` framed for a body of exactly `length` bytes (Content-Length; no Transfer-Encoding). */
export const withContentLength = (flat: ReadonlyArray<string>, length: number): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const lower = flat[i].toLowerCase()
    if (lower === "content-length" || lower === "transfer-encoding") continue
    out.push(flat[i], flat[i + 1])
  }
  out.push("content-length", String(length))
  return out
}
