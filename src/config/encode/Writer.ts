/** Writing KDL text: indented lines and blocks, and the value syntax (strings, booleans, seconds). */
import * as Duration from "effect/Duration"

/** A KDL v2 quoted string. */
export const kdlString = (s: string): string => {
  let out = "\""
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (ch === "\"") out += "\\\""
    else if (ch === "\\") out += "\\\\"
    else if (ch === "\n") out += "\\n"
    else if (ch === "\t") out += "\\t"
    else if (ch === "\r") out += "\\r"
    // control, direction-override and other characters KDL v2 forbids literally
    else if (c < 0x20 || c === 0x7f || (c >= 0x200e && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
      (c >= 0x2066 && c <= 0x2069) || c === 0xfeff || c === 0x2028 || c === 0x2029 || c === 0x85) {
      out += `\\u{${c.toString(16)}}`
    } else out += ch
  }
  return out + "\""
}

export const secs = (d: Duration.Duration): string => String(Duration.toMillis(d) / 1000)
export const bool = (b: boolean): string => (b ? "#true" : "#false")
/** Milliseconds written as (decimal) seconds. */
export const msSecs = (ms: number): string => String(ms / 1000)
export const nullableStr = (s: string | null): string => (s === null ? "#null" : kdlString(s))

export const strings = (xs: ReadonlyArray<string>): string => xs.map(kdlString).join(" ")

export class Writer {
  readonly lines: Array<string> = []
  private depth = 0
  line(text: string): void {
    this.lines.push("    ".repeat(this.depth) + text)
  }
  block(head: string, body: () => void): void {
    this.line(`${head} {`)
    this.depth++
    body()
    this.depth--
    this.line("}")
  }
}
