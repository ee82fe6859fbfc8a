/**
 * Decoders of single KDL values (`Val`): strings, ids, booleans, numbers,
 * durations, sizes, enumerations, addresses. Each reports into the `Cx` and
 * returns `undefined` for a value that does not fit; none throws.
 */
import type { Entry, Primitive } from "@bgotink/kdl"
import * as Duration from "effect/Duration"
import { escapeChar, escapeText, firstUnprintable, hint } from "./ConfigIssue.js"
import type { Cx } from "./KdlContext.js"
import { parseHostPort } from "./SchemaPrimitives.js"

const describe = (v: Primitive): string =>
  v === null ? "#null" : typeof v === "string" ? JSON.stringify(v) : typeof v === "boolean" ? `#${v}` : String(v)

/** Decodes one KDL value; reports and returns undefined when it does not fit. */
export type Val<A> = (v: Primitive, at: Entry, cx: Cx, what: string) => A | undefined

export const str: Val<string> = (v, at, cx, what) =>
  typeof v === "string" ? v : cx.error(at, `${what} must be a string, got ${describe(v)}`)

export const nonEmpty: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  return s === "" ? cx.error(at, `${what} must not be empty`) : s
}

/**
 * An id (of a listener, upstream, route, filter or agent, defined or referenced): not empty, and
 * printable, since ids are printed by `sentinel test`, written into logs and used as metric labels.
 */
export const ident: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  const bad = firstUnprintable(s)
  return bad === undefined
    ? s
    : cx.error(at, `${what} "${escapeText(s)}" contains ${escapeChar(bad)}: ids must be printable (no control or format characters)`)
}

export const bool: Val<boolean> = (v, at, cx, what) =>
  typeof v === "boolean" ? v : cx.error(at, `${what} must be #true or #false, got ${describe(v)}`)

export const int = (opts: { min?: number; max?: number } = {}): Val<number> => (v, at, cx, what) => {
  if (typeof v !== "number" || !Number.isInteger(v)) return cx.error(at, `${what} must be an integer, got ${describe(v)}`)
  // the parser rounds integers beyond 2^53 silently; refuse them rather than use a wrong value
  if (!Number.isSafeInteger(v)) return cx.error(at, `${what} is too large (integers must be below 2^53)`)
  if (opts.min !== undefined && v < opts.min) {
    return cx.error(at, opts.min === 0 ? `${what} must not be negative, got ${v}` : `${what} must be at least ${opts.min}, got ${v}`)
  }
  if (opts.max !== undefined && v > opts.max) return cx.error(at, `${what} must be at most ${opts.max}, got ${v}`)
  return v
}
export const count = int({ min: 0 })
export const positive = int({ min: 1 })

/** Seconds (integer or decimal, not negative) or a string with a unit ("250ms", "1m"), as a Duration. */
export const secs: Val<Duration.Duration> = (v, at, cx, what) => {
  const ms = durationMs(1000)(v, at, cx, what)
  return ms === undefined ? undefined : Duration.millis(ms)
}

const timeUnits: Record<string, number> = { ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * A duration as whole milliseconds: a number in `unitMs` (1000 for `-secs` keys, 1 for `-ms`
 * keys), or a string with a unit ("250ms", "1.5s", "30m", "1h", "1d"). Not negative, at most
 * one year.
 */
export const durationMs = (unitMs: number): Val<number> => (v, at, cx, what) => {
  let ms: number
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$/.exec(v)
    const unit = timeUnits[(m?.[2] ?? "").toLowerCase()]
    if (m === null || unit === undefined) {
      return cx.error(at, `${what} must be a number or a duration like "500ms", "30s", "5m", "1h", got ${describe(v)}`)
    }
    ms = Number(m[1]) * unit
  } else if (typeof v === "number" && Number.isFinite(v)) {
    ms = v * unitMs
  } else {
    return cx.error(at, `${what} must be a number${unitMs === 1000 ? " of seconds" : unitMs === 1 ? " of milliseconds" : ""} or a duration like "30s", got ${describe(v)}`)
  }
  if (ms < 0) return cx.error(at, `${what} must not be negative, got ${describe(v)}`)
  if (ms > 365 * 86_400_000) return cx.error(at, `${what} is too large (at most one year)`)
  return Math.round(ms)
}
/** Seconds (or a string with a unit) as whole milliseconds. */
export const secsMs = durationMs(1000)
/** Milliseconds (or a string with a unit) as whole milliseconds. */
export const millis = durationMs(1)

/** A duration (see `durationMs`) that must be at least 1 ms. */
export const positiveMs = (unitMs: number): Val<number> => (v, at, cx, what) => {
  const ms = durationMs(unitMs)(v, at, cx, what)
  return ms === 0 ? cx.error(at, `${what} must be greater than 0`) : ms
}

/** A finite number within bounds (decimals allowed). */
export const num = (opts: { min?: number; max?: number; exclusiveMin?: boolean } = {}): Val<number> => (v, at, cx, what) => {
  if (typeof v !== "number" || !Number.isFinite(v)) return cx.error(at, `${what} must be a number, got ${describe(v)}`)
  if (opts.min !== undefined && (opts.exclusiveMin ? v <= opts.min : v < opts.min)) {
    return cx.error(at, `${what} must be ${opts.exclusiveMin ? "greater than" : "at least"} ${opts.min}, got ${v}`)
  }
  if (opts.max !== undefined && v > opts.max) return cx.error(at, `${what} must be at most ${opts.max}, got ${v}`)
  return v
}

/** `#null`, or a value decoded by `val`. */
export const nullable = <A>(val: Val<A>): Val<A | null> => (v, at, cx, what) => (v === null ? null : val(v, at, cx, what))

/** An HTTP status code (100-599). */
export const status = int({ min: 100, max: 599 })

const units: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 }

/** Bytes: an integer, or a string with a unit (`"10MiB"`, `"512KB"`). */
export const bytes: Val<number> = (v, at, cx, what) => {
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$/.exec(v)
    const unit = units[(m?.[2] ?? "b").toLowerCase()]
    if (m === null || unit === undefined) {
      return cx.error(at, `${what} must be a number of bytes or a size like "10MiB", got ${describe(v)}`)
    }
    return count(Math.round(Number(m[1]) * unit), at, cx, what)
  }
  return count(v, at, cx, what)
}

/** One of a fixed set of strings, with aliases and a hint for near misses. */
export const oneOf = <const L extends string>(
  allowed: ReadonlyArray<L>,
  opts: { aliases?: Record<string, L>; notSupported?: ReadonlyArray<string> } = {}
): Val<L> => (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  if ((allowed as ReadonlyArray<string>).includes(s)) return s as L
  const alias = opts.aliases?.[s]
  if (alias !== undefined) return alias
  if (opts.notSupported?.includes(s)) return cx.error(at, `${what} "${s}" is not supported yet`)
  const all = [...allowed, ...Object.keys(opts.aliases ?? {})]
  return cx.error(at, `${what} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${describe(v)}${hint(s, all)}`)
}

export const hostPort: Val<{ host: string; port: number }> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return parseHostPort(s) ?? cx.error(at, `${what} must be "host:port" (IPv6 as "[::1]:80"), got ${describe(v)}`)
}
