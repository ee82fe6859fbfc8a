/** Cookie header syntax (RFC 6265 §5.4): reading one cookie's value. Pure. */

/** Value of cookie `name` in a `Cookie` header, or undefined. */
export const cookieValue = (header: string | undefined, name: string): string | undefined => {
  if (header === undefined) return undefined
  let at = 0
  while (at < header.length) {
    let end = header.indexOf(";", at)
    if (end === -1) end = header.length
    const eq = header.indexOf("=", at)
    if (eq !== -1 && eq < end && header.slice(at, eq).trim() === name) {
      const v = header.slice(eq + 1, end).trim()
      return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v
    }
    at = end + 1
  }
  return undefined
}
