/**
 * The access log's line formats: Sentinel's JSON record (hand-built, property-tested against
 * `JSON.stringify`) and the combined log format.
 */

/** One access log record (Sentinel's field names). */
export interface AccessLogEntry {
  /** Epoch milliseconds when the request head was received. */
  readonly timestamp: number
  readonly trace_id: string
  /** Undefined (JSON null, combined "-") for a refusal made before the request line was read. */
  readonly method: string | undefined
  /** Path without the query string (undefined as `method`). */
  readonly path: string | undefined
  /** Query string without the leading "?", or undefined. */
  readonly query?: string | undefined
  /** "HTTP/1.0", "HTTP/1.1", "HTTP/2" (undefined as `method`). */
  readonly protocol: string | undefined
  readonly status: number
  /** Request body bytes received from the client. */
  readonly body_bytes: number
  /** Wall time from request head to response end, in milliseconds. */
  readonly duration_ms: number
  readonly client_ip: string
  readonly user_agent?: string | undefined
  readonly referer?: string | undefined
  readonly host?: string | undefined
  readonly route_id?: string | undefined
  readonly upstream?: string | undefined
  /** Attempts made upstream (0 when answered by the proxy). */
  readonly upstream_attempts: number
  /** Address of the upstream target that answered (last attempt). */
  readonly upstream_addr?: string | undefined
  /** Identifies the proxy process (host + worker). */
  readonly instance_id: string
  /** Response body bytes sent to the client. */
  readonly body_bytes_sent: number
  /** Tag of the typed error that ended the request, if any. */
  readonly error?: string | undefined
  /**
   * Listener id; set on refusals made by the listener before the pipeline (JSON only,
   * and only when set: request lines keep their keys).
   */
  readonly listener?: string | undefined
  /**
   * What the response cache did (JSON only, and only on caching routes): "hit", "stale",
   * "stale-if-error", "revalidated", "miss" or "bypass".
   */
  readonly cache?: string | undefined
  /** The verified mTLS client certificate (JSON only, and only when there is one). */
  readonly client_cert_subject?: string | undefined
  readonly client_cert_issuer?: string | undefined
  readonly client_cert_serial?: string | undefined
  readonly client_cert_fingerprint?: string | undefined
  /**
   * A WebSocket handshake's tunnel, when it had one (JSON only): the line is written when the
   * tunnel ends, `duration_ms` is the whole tunnel and `body_bytes_sent` what went to the client.
   */
  readonly websocket?: AccessWebSocket | undefined
  /**
   * The body re-encoded by a `compress` filter (JSON only, and only then): the coding, the
   * upstream's body bytes that went in and the encoded bytes that came out.
   */
  readonly compression?: { readonly encoding: string; readonly bytes_in: number; readonly bytes_out: number } | undefined
}

/** The `websocket` object of an access line. */
export interface AccessWebSocket {
  readonly bytes_from_client: number
  readonly bytes_to_client: number
  readonly bytes_from_upstream: number
  readonly bytes_to_upstream: number
  readonly frames_from_client: number
  readonly frames_from_upstream: number
  readonly frames_dropped: number
  /** The first close frame's code (null: none was sent). */
  readonly close_code: number | null
  readonly close_reason: string
  /** "client" | "upstream" | "proxy" */
  readonly closed_by: string
  /** Why the tunnel ended (`sentinel_websocket_closes_total{reason}`). */
  readonly end_reason: string
}

/** Access log formats, as in `access-log { format "json" | "combined" }`. */
export type AccessLogFormat = "json" | "combined"

/** Milliseconds rounded to microseconds, so float noise never reaches the log. */
const ZEROS = ["", "0", "00"]
/**
 * Milliseconds rounded to the microsecond, as JSON: the same text as
 * `String(Math.round(n * 1000) / 1000)` without converting a double to text (which costs more
 * than the rest of a field); only small integers are converted, and V8 caches those.
 */
export const msText = (n: number): string => {
  const us = Math.round(n * 1000)
  if (!(us >= 0 && us < 2 ** 31)) return String(us / 1000)
  const whole = (us / 1000) | 0
  let frac = us - whole * 1000
  if (frac === 0) return String(whole)
  let digits = 3
  while (frac % 10 === 0) {
    frac /= 10
    digits--
  }
  const f = String(frac)
  return `${whole}.${ZEROS[digits - f.length]}${f}`
}

/** Printable ASCII without `"` and `\\`: safe inside JSON quotes as is (the common case). */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/
/** A JSON string (or null), without JSON.stringify for the plain strings every line is made of. */
const jstr = (v: string | undefined): string => (v === undefined ? "null" : PLAIN.test(v) ? `"${v}"` : JSON.stringify(v))

/** Distinct values `jstrKnown` keeps; past it values are quoted each time (nothing is evicted). */
const KNOWN_VALUES_MAX = 512
const knownValues = new Map<string, string>()
/**
 * `jstr` for values drawn from a small set that repeat on every line (route and upstream
 * ids, target addresses, methods, error reasons): quoted once and remembered. Client-chosen
 * values can fill the table, which only makes later new values take the `jstr` path.
 */
const jstrKnown = (v: string | undefined): string => {
  if (v === undefined) return "null"
  let quoted = knownValues.get(v)
  if (quoted === undefined) {
    quoted = jstr(v)
    if (knownValues.size < KNOWN_VALUES_MAX) knownValues.set(v, quoted)
  }
  return quoted
}

let isoSecond = Number.NaN
let isoPrefix = ""
/** `Date#toISOString`, with the part up to the second computed once per second. */
export const isoTimestamp = (epochMs: number): string => {
  const second = Math.floor(epochMs / 1000)
  if (second !== isoSecond) {
    isoSecond = second
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20)
  }
  const milli = Math.floor(epochMs) - second * 1000
  return `${isoPrefix}${milli < 10 ? "00" : milli < 100 ? "0" : ""}${milli}Z`
}

/**
 * One JSON line; absent optional fields are null so every line has the same keys.
 * Built by hand rather than with JSON.stringify of an object: this runs once per
 * request and was the largest single cost of the access log.
 */
export const formatAccessJson = (e: AccessLogEntry): string =>
  `{"timestamp":"${isoTimestamp(e.timestamp)}","trace_id":${jstr(e.trace_id)},"method":${jstrKnown(e.method)}` +
  `,"path":${jstr(e.path)},"query":${jstr(e.query)},"protocol":${jstrKnown(e.protocol)},"status":${e.status}` +
  `,"body_bytes":${e.body_bytes},"duration_ms":${msText(e.duration_ms)},"client_ip":${jstr(e.client_ip)}` +
  `,"user_agent":${jstr(e.user_agent)},"referer":${jstr(e.referer)},"host":${jstr(e.host)}` +
  `,"route_id":${jstrKnown(e.route_id)},"upstream":${jstrKnown(e.upstream)},"upstream_attempts":${e.upstream_attempts}` +
  `,"upstream_addr":${jstrKnown(e.upstream_addr)},"instance_id":${jstrKnown(e.instance_id)},"body_bytes_sent":${e.body_bytes_sent}` +
  (e.listener !== undefined ? `,"listener":${jstrKnown(e.listener)}` : "") +
  (e.cache !== undefined ? `,"cache":${jstrKnown(e.cache)}` : "") +
  (e.client_cert_fingerprint !== undefined
    ? `,"client_cert_subject":${jstr(e.client_cert_subject)},"client_cert_issuer":${jstr(e.client_cert_issuer)}` +
      `,"client_cert_serial":${jstr(e.client_cert_serial)},"client_cert_fingerprint":${jstr(e.client_cert_fingerprint)}`
    : "") +
  (e.websocket !== undefined ? `,"websocket":${JSON.stringify(e.websocket)}` : "") +
  (e.compression !== undefined
    ? `,"compression":{"encoding":${jstrKnown(e.compression.encoding)},"bytes_in":${e.compression.bytes_in},"bytes_out":${e.compression.bytes_out}}`
    : "") +
  (e.error !== undefined ? `,"error":${jstrKnown(e.error)}}` : "}")

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const pad2 = (n: number) => (n < 10 ? "0" + n : String(n))

/** `[10/Oct/2000:13:55:36 +0000]` (always UTC). */
export const clfDate = (epochMs: number): string => {
  const d = new Date(epochMs)
  return (
    `${pad2(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000`
  )
}

// Everything outside printable ASCII, plus the quote and the backslash: a client
// must not be able to forge a log line or break the field structure.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x1f"\\\x7f-\uffff]/g
const escapeChar = (c: string): string => {
  if (c === '"') return '\\"'
  if (c === "\\") return "\\\\"
  const code = c.charCodeAt(0)
  if (code <= 0xff) return "\\x" + code.toString(16).toUpperCase().padStart(2, "0")
  return Array.from(Buffer.from(c, "utf8"), (b) => "\\x" + b.toString(16).toUpperCase().padStart(2, "0")).join("")
}
/** Escapes a value for the combined format (nginx style `\xHH`); empty/absent -> "-". */
export const clfEscape = (s: string | undefined): string =>
  s === undefined || s === "" ? "-" : UNSAFE.test(s) ? ((UNSAFE.lastIndex = 0), s.replace(UNSAFE, escapeChar)) : s

/**
 * Apache combined log format plus Sentinel's suffix:
 * `%h - - [%t] "%r" %>s %b "%{Referer}i" "%{User-Agent}i" trace_id duration_ms`
 * (`%b` is "-" for an empty body, as in Apache).
 */
export const formatAccessCombined = (e: AccessLogEntry): string => {
  const target = e.query !== undefined && e.query !== "" ? `${e.path}?${e.query}` : e.path
  // no request line read (a refusal at the parser or a header deadline): `"-"`, as nginx writes
  const request = e.method === undefined ? "-" : `${clfEscape(e.method)} ${clfEscape(target)} ${clfEscape(e.protocol)}`
  return (
    `${clfEscape(e.client_ip)} - - [${clfDate(e.timestamp)}] ` +
    `"${request}" ` +
    `${e.status} ${e.body_bytes_sent > 0 ? e.body_bytes_sent : "-"} ` +
    `"${clfEscape(e.referer)}" "${clfEscape(e.user_agent)}" ` +
    `${clfEscape(e.trace_id)} ${Math.round(e.duration_ms)}`
  )
}

/** The formatter for a configured format. */
export const accessFormatter = (format: AccessLogFormat): ((e: AccessLogEntry) => string) =>
  format === "combined" ? formatAccessCombined : formatAccessJson
