/** Byte tables for the parsers of `http/`: a 128-entry membership table per character class. */

export const table = (chars: string, ranges: ReadonlyArray<readonly [number, number]> = []): Uint8Array => {
  const t = new Uint8Array(128)
  for (const c of chars) t[c.charCodeAt(0)] = 1
  for (const [a, b] of ranges) for (let i = a; i <= b; i++) t[i] = 1
  return t
}
export const ALNUM: ReadonlyArray<readonly [number, number]> = [[48, 57], [65, 90], [97, 122]]
