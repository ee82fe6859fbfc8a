/**
 * The running configuration as `builtin-handler "config"` shows it (admin listeners only): the
 * decoded config as JSON, durations in milliseconds, with what may be a secret masked — the
 * password of any URL with user info (`redis://:pw@host`), agents' `config` blocks (free-form,
 * often keys), and values of headers a filter or policy sets or adds when their name says
 * credentials (Authorization, Cookie, API keys, tokens, secrets).
 */
import * as Duration from "effect/Duration"
import type { SentinelConfig } from "./Schema.js"

export const REDACTED = "[redacted]"

const SENSITIVE_HEADER = /^(authorization|proxy-authorization|cookie|set-cookie)$|api[-_]?key|token|secret|password|session|credential/i

/** `scheme://user:password@host` with the password masked (the user kept: it names the account). */
export const maskUrlPassword = (s: string): string => s.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/@:\s]*):([^/@\s]*)@/i, `$1$2:${REDACTED}@`)

/** Header pairs (`set`/`add` lists: `[name, value]`) with credential values masked. */
const maskPairs = (pairs: ReadonlyArray<unknown>): ReadonlyArray<unknown> =>
  pairs.map((p) =>
    Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && SENSITIVE_HEADER.test(p[0]) ? [p[0], REDACTED] : p
  )

const replacer = function (this: unknown, key: string, value: unknown): unknown {
  if (Duration.isDuration(value)) return Duration.toMillis(value)
  if (value instanceof Map) return Object.fromEntries(value)
  if (value instanceof Set) return [...value]
  if (typeof value === "bigint") return value.toString()
  if (typeof value === "string") return maskUrlPassword(value)
  if ((key === "set" || key === "add") && Array.isArray(value)) return maskPairs(value)
  return value
}

/** A JSON-ready copy of the configuration with secrets masked. */
export const configView = (config: SentinelConfig): unknown => {
  const view = JSON.parse(JSON.stringify(config, replacer)) as Record<string, unknown>
  const agents = view["agents"]
  if (Array.isArray(agents)) {
    for (const a of agents as Array<Record<string, unknown>>) if (a["config"] !== null && a["config"] !== undefined) a["config"] = REDACTED
  }
  return view
}
