/**
 * Checks of filter settings that the KDL decoder (`blocks/Filters.ts`) reports with positions:
 * header names and values a headers filter writes, a redirect's Location parts, timeout
 * values. Over the decoded values only, so the decoder needs no filter's runtime module.
 */

/** The edits of a `type "headers"` filter (`filters/Headers.ts` `HeadersFilterConfig`). */
export interface HeaderEditsCheck {
  readonly rename: ReadonlyArray<readonly [string, string]>
  readonly set: ReadonlyArray<readonly [string, string]>
  readonly add: ReadonlyArray<readonly [string, string]>
  readonly remove: ReadonlyArray<string>
}

/** The Location parts of a `type "redirect"` filter (`filters/Redirect.ts` `RedirectConfig`). */
export interface RedirectCheck {
  readonly hostname: string | null
  readonly port: number | null
  readonly path: { readonly _tag: "ReplaceFullPath"; readonly path: string } | { readonly _tag: "ReplacePrefixMatch"; readonly prefix: string } | null
}

/** A `type "timeout"` filter (`filters/Timeout.ts` `TimeoutFilterConfig`). */
export interface TimeoutCheck {
  readonly requestTimeoutSecs: number | null
  readonly upstreamTimeoutSecs: number | null
  readonly connectTimeoutSecs: number | null
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// eslint-disable-next-line no-control-regex
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/
/** Headers a filter must not write: they frame the message or belong to one connection. */
const FORBIDDEN = new Set(["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "proxy-connection"])

/** Problems with a config, as messages for the config decoder (empty = valid). */
export const validateHeadersFilter = (c: HeaderEditsCheck): Array<string> => {
  const errors: Array<string> = []
  const checkName = (n: string, what: string, writes: boolean) => {
    if (!TOKEN.test(n)) errors.push(`${what}: invalid header name ${JSON.stringify(n)}`)
    else if (writes && FORBIDDEN.has(n.toLowerCase())) errors.push(`${what}: header ${n} cannot be written by a filter`)
  }
  for (const [from, to] of c.rename) {
    checkName(from, "rename", true)
    checkName(to, "rename", true)
  }
  for (const [n, v] of [...c.set, ...c.add]) {
    checkName(n, "set/add", true)
    if (BAD_VALUE.test(v)) errors.push(`set/add: header ${n} has a control character in its value`)
  }
  for (const n of c.remove) checkName(n, "remove", false)
  return errors
}

const HOST = /^(?:[a-z0-9._~-]+|\[[0-9a-f:.]+\])$/i

/** Problems for the config decoder (empty = valid): the Location header must never carry junk. */
export const validateRedirect = (c: RedirectCheck): Array<string> => {
  const errors: Array<string> = []
  if (c.hostname !== null && !HOST.test(c.hostname)) errors.push(`hostname ${JSON.stringify(c.hostname)} is not a valid host name`)
  if (c.port !== null && (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535)) errors.push(`port ${c.port} is out of range`)
  const p = c.path === null ? null : c.path._tag === "ReplaceFullPath" ? c.path.path : c.path.prefix
  // eslint-disable-next-line no-control-regex
  if (p !== null && (!p.startsWith("/") || /[\x00-\x20\x7f#?]/.test(p))) errors.push(`path ${JSON.stringify(p)} must start with "/" and contain no spaces, controls, "?" or "#"`)
  return errors
}

/** Problems for the config decoder: every value positive and finite. */
export const validateTimeoutFilter = (c: TimeoutCheck): Array<string> =>
  (
    [
      ["request-timeout-secs", c.requestTimeoutSecs],
      ["upstream-timeout-secs", c.upstreamTimeoutSecs],
      ["connect-timeout-secs", c.connectTimeoutSecs]
    ] as const
  )
    .filter(([, v]) => v !== null && !(Number.isFinite(v) && v > 0))
    .map(([k, v]) => `${k} must be a positive number of seconds (got ${v})`)
