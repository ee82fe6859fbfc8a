/** Byte tables for the parsers of `http/` (a 128-entry membership table per character class), tokens and field values. */

export const table = (chars: string, ranges: ReadonlyArray<readonly [number, number]> = []): Uint8Array => {
  const t = new Uint8Array(128)
  for (const c of chars) t[c.charCodeAt(0)] = 1
  for (const [a, b] of ranges) for (let i = a; i <= b; i++) t[i] = 1
  return t
}
export const ALNUM: ReadonlyArray<readonly [number, number]> = [[48, 57], [65, 90], [97, 122]]

/** RFC 9110 tchar. */
const TCHAR = table("!#$%&'*+-.^_`|~", ALNUM)

/** An RFC 9110 token (method, header name). */
export const isToken = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 127 || TCHAR[c] === 0) return false
  }
  return true
}

/** Field value: HTAB, SP..~, obs-text. Never strip obs-text (http-garden #12/#41), only CTLs are fatal. */
export const isBadFieldValue = (v: string): boolean => {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if ((c < 32 && c !== 9) || c === 127 || c > 255) return true
  }
  return false
}
