/**
 * `filter "<id>" { type "security-headers"; … }`: the response headers every site should send,
 * as one preset (Sentinel injects none by default and needs a `headers` filter for each).
 * Upstream values win unless `override #true`, so an application can relax a header on purpose.
 */

export interface SecurityHeadersConfig {
  /** KDL `hsts`: Strict-Transport-Security, sent on HTTPS responses only (RFC 6797 §7.2). `#null` disables. Default "max-age=31536000; includeSubDomains". */
  readonly hsts: string | null
  /** KDL `content-type-options`: X-Content-Type-Options "nosniff". Default #true. */
  readonly contentTypeOptions: boolean
  /** KDL `frame-options`: X-Frame-Options. `#null` disables. Default "DENY". */
  readonly frameOptions: "DENY" | "SAMEORIGIN" | null
  /** KDL `referrer-policy`: Referrer-Policy. `#null` disables. Default "strict-origin-when-cross-origin". */
  readonly referrerPolicy: string | null
  /** KDL `content-security-policy`: Content-Security-Policy. Default none (application-specific). */
  readonly contentSecurityPolicy: string | null
  /** KDL `permissions-policy`: Permissions-Policy. Default none. */
  readonly permissionsPolicy: string | null
  /** KDL `cross-origin-opener-policy`: Cross-Origin-Opener-Policy. Default none. */
  readonly crossOriginOpenerPolicy: string | null
  /** KDL `override`: replace values the upstream already set. Default #false. */
  readonly override: boolean
}

export const defaultSecurityHeadersConfig: SecurityHeadersConfig = {
  hsts: "max-age=31536000; includeSubDomains",
  contentTypeOptions: true,
  frameOptions: "DENY",
  referrerPolicy: "strict-origin-when-cross-origin",
  contentSecurityPolicy: null,
  permissionsPolicy: null,
  crossOriginOpenerPolicy: null,
  override: false
}

/** The (lower-case name, value) pairs the preset writes for a given client scheme. */
export const securityHeaderPairs = (c: SecurityHeadersConfig, scheme: "http" | "https"): Array<readonly [string, string]> => {
  const out: Array<readonly [string, string]> = []
  if (c.hsts !== null && scheme === "https") out.push(["strict-transport-security", c.hsts])
  if (c.contentTypeOptions) out.push(["x-content-type-options", "nosniff"])
  if (c.frameOptions !== null) out.push(["x-frame-options", c.frameOptions])
  if (c.referrerPolicy !== null) out.push(["referrer-policy", c.referrerPolicy])
  if (c.contentSecurityPolicy !== null) out.push(["content-security-policy", c.contentSecurityPolicy])
  if (c.permissionsPolicy !== null) out.push(["permissions-policy", c.permissionsPolicy])
  if (c.crossOriginOpenerPolicy !== null) out.push(["cross-origin-opener-policy", c.crossOriginOpenerPolicy])
  return out
}

/** Applies the preset to a flat response header list in place. */
export const applySecurityHeaders = (c: SecurityHeadersConfig, flat: Array<string>, scheme: "http" | "https"): void => {
  for (const [name, value] of securityHeaderPairs(c, scheme)) {
    let found = false
    let w = 0
    for (let r = 0; r < flat.length; r += 2) {
      if (flat[r].toLowerCase() === name) {
        found = true
        if (c.override) continue // dropped, re-added once below
      }
      flat[w++] = flat[r]
      flat[w++] = flat[r + 1]
    }
    flat.length = w
    if (!found || c.override) flat.push(name, value)
  }
}
