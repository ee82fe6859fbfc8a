/**
 * WAF decision logic: a small rule set for SQL injection, XSS, path
 * traversal and command injection, with anomaly scoring.
 *
 * Every regex here is written to run in linear time: no nested quantifiers,
 * no alternations whose branches can match the same text under a
 * quantifier, and bounded repetitions. Inputs are truncated before matching
 * (see the MAX_* limits), so the work per request is bounded.
 */

export type Category = "sqli" | "xss" | "path-traversal" | "command-injection"
export type Target = "path" | "query" | "header" | "body"

export interface Rule {
  /** Stable id, reported in audit `rule_ids`. */
  readonly id: string
  readonly category: Category
  /** Anomaly score added when the rule matches (critical 5, error 4, warning 3, notice 2). */
  readonly score: number
  readonly description: string
  readonly pattern: RegExp
}

const SHELL_CMDS = "cat|ls|id|whoami|uname|wget|curl|nc|ncat|bash|sh|zsh|python|perl|ping|rm|chmod|echo|nslookup|powershell"

export const RULES: ReadonlyArray<Rule> = [
  // SQL injection
  { id: "942100", category: "sqli", score: 5, description: "UNION-based SQL injection", pattern: /\bunion\s+(?:all\s+|distinct\s+)?select\b/i },
  { id: "942110", category: "sqli", score: 5, description: "SQL tautology (' or 1=1)", pattern: /['"`]\s*(?:\bor\b|\band\b|\|\||&&)\s*['"`]?[\w-]{1,40}['"`]?\s*(?:=|<>|!=|\blike\b)\s*['"`]?[\w-]{1,40}/i },
  { id: "942120", category: "sqli", score: 5, description: "stacked query", pattern: /;\s*(?:drop|delete|insert|update|alter|truncate|shutdown|exec(?:ute)?)\s+(?:table\s+|from\s+|into\s+|database\s+)?[\w[]/i },
  { id: "942130", category: "sqli", score: 5, description: "quote followed by SQL comment", pattern: /\w['"`]\s*(?:--|#|\/\*)/ },
  { id: "942140", category: "sqli", score: 5, description: "SQL time/benchmark function", pattern: /\b(?:sleep|benchmark|pg_sleep)\s*\(\s*\d|\bwaitfor\s+delay\s+'/i },
  { id: "942150", category: "sqli", score: 5, description: "SQL catalogue or system procedure", pattern: /\b(?:information_schema|sysobjects|syscolumns|pg_catalog|xp_cmdshell|sqlite_master)\b/i },
  { id: "942160", category: "sqli", score: 3, description: "SQL keyword after quote", pattern: /['"`]\s*;?\s*(?:select|union|insert|drop|delete|update)\s/i },
  // XSS
  { id: "941100", category: "xss", score: 5, description: "script tag", pattern: /<\s*\/?\s*script\b/i },
  { id: "941110", category: "xss", score: 5, description: "HTML event handler attribute", pattern: /[\s"'\/<]on(?:error|load|click|mouseover|mouseenter|focus|blur|submit|toggle|begin|animationstart|pointerover|input|change)\s*=/i },
  { id: "941120", category: "xss", score: 5, description: "javascript:/vbscript: URI", pattern: /\b(?:java|vb)script\s*:/i },
  { id: "941130", category: "xss", score: 5, description: "embedding HTML element", pattern: /<\s*(?:iframe|frame|object|embed|applet)\b/i },
  { id: "941135", category: "xss", score: 3, description: "HTML element often used in XSS", pattern: /<\s*(?:meta|base|svg|math|form|link)\b/i },
  { id: "941140", category: "xss", score: 3, description: "document.cookie / eval access", pattern: /\bdocument\s*\.\s*(?:cookie|domain|write)\b|\beval\s*\(|\balert\s*\(/i },
  // Path traversal
  { id: "930100", category: "path-traversal", score: 5, description: "directory traversal (../)", pattern: /(?:^|[\/\\])\.\.(?:[\/\\]|$)/ },
  { id: "930110", category: "path-traversal", score: 5, description: "overlong / double-encoded dot", pattern: /%c0%ae|%c1%9c|%c0%af|%25(?:2e|2f|5c)/i },
  { id: "930120", category: "path-traversal", score: 5, description: "access to a sensitive OS file", pattern: /(?:\/etc\/(?:passwd|shadow|group|hosts)\b|\/proc\/self\/|\bwin\.ini\b|\bboot\.ini\b|\\windows\\system32\\)/i },
  // Command injection
  { id: "932100", category: "command-injection", score: 5, description: "shell command after separator", pattern: new RegExp(`(?:[;|\`\\n]|&&|\\|\\|)\\s*(?:${SHELL_CMDS})(?:\\s|$|;|\\|)`, "i") },
  { id: "932110", category: "command-injection", score: 5, description: "command substitution", pattern: new RegExp(`\\$\\(\\s*(?:${SHELL_CMDS})\\b|\`\\s*(?:${SHELL_CMDS})\\b`, "i") },
  { id: "932120", category: "command-injection", score: 5, description: "shell path", pattern: /\/bin\/(?:ba|z|da|k|tc|c)?sh\b|\bcmd(?:\.exe)?\s+\/c\b/i },
  { id: "932130", category: "command-injection", score: 3, description: "shell variable expansion", pattern: /\$\{?IFS\}?|\$\{[A-Za-z_]{1,30}\}/ }
]

/** Longest path, query or header value inspected, in characters. */
export const MAX_FIELD_LENGTH = 8192
/** Most query parameters / headers inspected; the rest are skipped (still bounded). */
export const MAX_FIELDS = 256

/**
 * Repeated percent-decoding (up to 2 rounds) so `%252e%252e%252f` is seen as
 * `../`; malformed escapes are left as they are rather than failing.
 */
export const decodeValue = (raw: string, plusIsSpace: boolean): string => {
  let s = plusIsSpace ? raw.replace(/\+/g, " ") : raw
  for (let i = 0; i < 2 && s.includes("%"); i++) {
    let next: string
    try {
      next = decodeURIComponent(s)
    } catch {
      next = s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
    }
    if (next === s) break
    s = next
  }
  return s
}

export interface Match {
  readonly ruleId: string
  readonly category: Category
  readonly target: Target
  /** Where inside the target: the parameter or header name. */
  readonly location: string
  readonly score: number
}

/** Runs every rule on one (already decoded and truncated) value. */
export const scanValue = (value: string, target: Target, location: string, rules: ReadonlyArray<Rule> = RULES): Array<Match> => {
  const out: Array<Match> = []
  for (const r of rules) {
    if (r.pattern.test(value)) out.push({ ruleId: r.id, category: r.category, target, location, score: r.score })
  }
  return out
}

/** Headers never scanned: they carry opaque credentials or are set by the proxy. */
const SKIPPED_HEADERS = new Set(["authorization", "proxy-authorization", "content-length", "host", "traceparent", "tracestate"])

export interface RequestInput {
  /** Path and query as received (still percent-encoded). */
  readonly uri: string
  readonly headers: Readonly<Record<string, ReadonlyArray<string>>>
}

/** Scans path, query parameters (names and values) and header values. */
export const scanRequest = (input: RequestInput, rules: ReadonlyArray<Rule> = RULES): Array<Match> => {
  const matches: Array<Match> = []
  const uri = input.uri.slice(0, MAX_FIELD_LENGTH)
  const q = uri.indexOf("?")
  const rawPath = q >= 0 ? uri.slice(0, q) : uri
  // The raw form catches double-encoding signatures; the decoded form the payload.
  matches.push(...scanValue(rawPath, "path", "raw", rules.filter((r) => r.id === "930110")))
  matches.push(...scanValue(decodeValue(rawPath, false), "path", "path", rules))
  if (q >= 0) {
    const pairs = uri.slice(q + 1).split("&").slice(0, MAX_FIELDS)
    for (const pair of pairs) {
      if (pair === "") continue
      const eq = pair.indexOf("=")
      const name = decodeValue(eq >= 0 ? pair.slice(0, eq) : pair, true)
      const value = eq >= 0 ? decodeValue(pair.slice(eq + 1), true) : ""
      matches.push(...scanValue(name, "query", name, rules))
      if (value !== "") matches.push(...scanValue(value, "query", name, rules))
    }
  }
  let fields = 0
  for (const [name, values] of Object.entries(input.headers)) {
    if (SKIPPED_HEADERS.has(name.toLowerCase())) continue
    for (const v of values) {
      if (++fields > MAX_FIELDS) break
      matches.push(...scanValue(decodeValue(v.slice(0, MAX_FIELD_LENGTH), false), "header", name, rules))
    }
  }
  return dedupe(matches)
}

/**
 * Scans a request body. Form bodies are split into decoded fields; other
 * bodies (JSON, text) are scanned as text, with JSON string escapes left in
 * place (the payload patterns do not depend on them).
 */
export const scanBody = (body: string, contentType: string | undefined, rules: ReadonlyArray<Rule> = RULES): Array<Match> => {
  const matches: Array<Match> = []
  if (contentType !== undefined && contentType.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
    for (const pair of body.split("&").slice(0, MAX_FIELDS * 4)) {
      const eq = pair.indexOf("=")
      const name = decodeValue(eq >= 0 ? pair.slice(0, eq) : pair, true)
      const value = eq >= 0 ? decodeValue(pair.slice(eq + 1).slice(0, MAX_FIELD_LENGTH), true) : ""
      matches.push(...scanValue(name.slice(0, MAX_FIELD_LENGTH), "body", name, rules))
      if (value !== "") matches.push(...scanValue(value, "body", name, rules))
    }
  } else {
    matches.push(...scanValue(body, "body", "body", rules))
  }
  return dedupe(matches)
}

/** One score per rule: a rule matching in five places counts once. */
const dedupe = (matches: Array<Match>): Array<Match> => {
  const seen = new Set<string>()
  return matches.filter((m) => {
    if (seen.has(m.ruleId)) return false
    seen.add(m.ruleId)
    return true
  })
}

export interface Assessment {
  readonly score: number
  readonly matches: ReadonlyArray<Match>
  /** True when score >= threshold. */
  readonly exceeded: boolean
  readonly ruleIds: ReadonlyArray<string>
  /** `waf`, `attack-<category>` per matched category. */
  readonly tags: ReadonlyArray<string>
}

export const assess = (matches: ReadonlyArray<Match>, threshold: number): Assessment => {
  const score = matches.reduce((s, m) => s + m.score, 0)
  const cats = [...new Set(matches.map((m) => m.category))]
  return {
    score,
    matches,
    exceeded: matches.length > 0 && score >= threshold,
    ruleIds: matches.map((m) => m.ruleId),
    tags: matches.length === 0 ? [] : ["waf", ...cats.map((c) => `attack-${c}`)]
  }
}

/** Bytes of the previous chunk kept and scanned again with the next one, so a payload split across chunks is still seen. */
export const CHUNK_OVERLAP = 1024

interface BodyState {
  tail: string
  inspected: number
  matches: Array<Match>
}

export interface BodyChunkResult {
  readonly assessment: Assessment
  /** Inspection stopped at `maxBodyBytes`; later bytes were not scanned. */
  readonly truncated: boolean
}

/**
 * Per-request body scanning over chunks: each chunk is scanned together
 * with the tail of the previous one; matches accumulate until the last
 * chunk. At most `maxBodyBytes` are inspected per request and at most
 * `maxRequests` bodies are tracked (the oldest is forgotten first), so
 * memory is bounded whatever the proxy sends.
 */
export class BodyScanner {
  private readonly states = new Map<string, BodyState>()

  constructor(
    readonly threshold: number,
    readonly maxBodyBytes: number,
    readonly maxRequests: number,
    readonly rules: ReadonlyArray<Rule> = RULES
  ) {}

  get tracked(): number {
    return this.states.size
  }

  chunk(correlationId: string, data: Buffer, isLast: boolean): BodyChunkResult {
    let s = this.states.get(correlationId)
    if (s === undefined) {
      if (this.states.size >= this.maxRequests) {
        const oldest = this.states.keys().next().value
        if (oldest !== undefined) this.states.delete(oldest)
      }
      s = { tail: "", inspected: 0, matches: [] }
      this.states.set(correlationId, s)
    }
    const room = Math.max(0, this.maxBodyBytes - s.inspected)
    const truncated = data.length > room
    if (room > 0) {
      const part = data.subarray(0, Math.min(room, data.length)).toString("utf8")
      s.inspected += Math.min(room, data.length)
      const text = s.tail + part
      const found = scanBody(text, undefined, this.rules)
      // Form-encoded or percent-encoded bodies: scan the decoded form too.
      if (/[%+]/.test(text)) found.push(...scanBody(decodeValue(text, true), undefined, this.rules))
      s.matches = dedupe([...s.matches, ...found])
      s.tail = text.slice(-CHUNK_OVERLAP)
    }
    const assessment = assess(s.matches, this.threshold)
    if (isLast || assessment.exceeded) this.states.delete(correlationId)
    return { assessment, truncated }
  }

  /** Forget a request (cancelled, or finished without a last chunk). */
  forget(correlationId: string): void {
    this.states.delete(correlationId)
  }
}

/**
 * Which WebSocket frames carry text, and the text to scan: a text frame, or a continuation of
 * a text message (the proxy sends frames, not reassembled messages). Per tunnel (correlation
 * id) and direction, a fragmented text message in progress keeps its last `CHUNK_OVERLAP`
 * characters, scanned again with the next fragment, so a payload split across fragments is
 * still seen. At most `maxTracked` messages are tracked (the oldest is forgotten first).
 */
export class WebSocketTextScanner {
  /** key -> tail of the text message in progress */
  private readonly open = new Map<string, string>()

  constructor(readonly maxTracked: number) {}

  get tracked(): number {
    return this.open.size
  }

  /** The text to scan for this frame, or undefined (binary and control frames). */
  frame(correlationId: string, clientToServer: boolean, opcode: string, fin: boolean, payload: Buffer): string | undefined {
    const key = `${correlationId}\u0000${clientToServer ? "c" : "s"}`
    let prefix: string
    if (opcode === "text") prefix = ""
    else if (opcode === "continuation") {
      const tail = this.open.get(key)
      if (tail === undefined) return undefined
      prefix = tail
    } else return undefined
    const text = prefix + payload.toString("utf8")
    this.open.delete(key)
    if (!fin) {
      if (this.open.size >= this.maxTracked) {
        const oldest = this.open.keys().next().value
        if (oldest !== undefined) this.open.delete(oldest)
      }
      this.open.set(key, text.slice(-CHUNK_OVERLAP))
    }
    return text
  }

  /** The tunnel ended (request_complete): its messages are forgotten. */
  forget(correlationId: string): void {
    this.open.delete(`${correlationId}\u0000c`)
    this.open.delete(`${correlationId}\u0000s`)
  }
}
