/**
 * Auth decision logic: JWT verification (HS*, RS*, PS*, ES*, EdDSA via
 * `jose`) and API keys. No sockets; keys and options come in as values so
 * tests call it directly. Async only where `jose` is.
 */
import { createHash, createPublicKey, createSecretKey } from "node:crypto"
import type { KeyObject } from "node:crypto"
import * as jose from "jose"

/** HMAC algorithms, accepted only with a shared secret. */
export const HMAC_ALGS = ["HS256", "HS384", "HS512"] as const
/** Asymmetric algorithms, accepted only with a public key or a JWKS. */
export const ASYMMETRIC_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const

export interface JwtKeys {
  /** Shared secret for HS* (never used for other algorithms: no algorithm confusion). */
  readonly secret?: KeyObject
  /** PEM public key (SPKI or certificate) for RSxxx, PSxxx, ESxxx and EdDSA. */
  readonly publicKey?: KeyObject
  /** Local JWKS (kid-selected keys). */
  readonly jwks?: ReturnType<typeof jose.createLocalJWKSet>
}

export interface JwtOptions {
  /** Required `iss` when set. */
  readonly issuer?: string
  /** Required `aud` (one of) when set. */
  readonly audience?: ReadonlyArray<string>
  /** Clock skew tolerated on exp/nbf/iat, seconds. */
  readonly leewaySeconds: number
  /** Verification time, seconds since the epoch (tests); default now. */
  readonly now?: number
}

export const secretKey = (secret: string): KeyObject => createSecretKey(Buffer.from(secret, "utf8"))
export const publicKeyFromPem = (pem: string): KeyObject => createPublicKey(pem)
export const localJwks = (json: string) => jose.createLocalJWKSet(JSON.parse(json) as jose.JSONWebKeySet)

export type AuthResult =
  | { readonly _tag: "Authenticated"; readonly method: "jwt" | "api-key"; readonly subject: string; readonly claims?: jose.JWTPayload }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Invalid"; readonly method: "jwt" | "api-key"; readonly reason: string; readonly code: string }

/** `jose` error codes turned into our audit reason codes. */
const reasonCode = (e: unknown): string => {
  const code = (e as { code?: string }).code
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return "TOKEN_EXPIRED"
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "BAD_SIGNATURE"
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return "CLAIM_INVALID"
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return "ALG_NOT_ALLOWED"
    case "ERR_JWKS_NO_MATCHING_KEY":
    case "ERR_JWKS_MULTIPLE_MATCHING_KEYS":
      return "NO_MATCHING_KEY"
    default:
      return "TOKEN_INVALID"
  }
}

/** The algorithms these keys can verify. */
export const allowedAlgorithms = (keys: JwtKeys): Array<string> => [
  ...(keys.secret ? HMAC_ALGS : []),
  ...(keys.publicKey || keys.jwks ? ASYMMETRIC_ALGS : [])
]

/**
 * Verifies a compact JWT. The key is chosen by the token's `alg`: HS* only
 * with the secret, others with the public key, else the JWKS. A token
 * without `sub` is accepted with subject "" (the header then is empty).
 */
export const verifyJwt = async (token: string, keys: JwtKeys, options: JwtOptions): Promise<AuthResult> => {
  const algorithms = allowedAlgorithms(keys)
  const getKey: jose.JWTVerifyGetKey = async (header, input) => {
    const alg = header.alg ?? ""
    if (alg.startsWith("HS")) {
      if (keys.secret) return keys.secret
    } else if (keys.publicKey) {
      return keys.publicKey
    } else if (keys.jwks) {
      return keys.jwks(header, input)
    }
    throw new jose.errors.JOSEAlgNotAllowed(`no key configured for alg ${alg}`)
  }
  try {
    const { payload } = await jose.jwtVerify(token, getKey, {
      algorithms,
      ...(options.issuer !== undefined ? { issuer: options.issuer } : {}),
      ...(options.audience !== undefined && options.audience.length > 0 ? { audience: [...options.audience] } : {}),
      clockTolerance: options.leewaySeconds,
      ...(options.now !== undefined ? { currentDate: new Date(options.now * 1000) } : {})
    })
    return { _tag: "Authenticated", method: "jwt", subject: typeof payload.sub === "string" ? payload.sub : "", claims: payload }
  } catch (e) {
    return { _tag: "Invalid", method: "jwt", reason: (e as Error).message, code: reasonCode(e) }
  }
}

/** API keys, stored by SHA-256 so lookups do not compare secrets byte by byte. */
export class ApiKeys {
  private constructor(private readonly bySha: ReadonlyMap<string, string>) {}

  get size(): number {
    return this.bySha.size
  }

  /**
   * File format: JSON `{"<key>": "<subject>", ...}`, or text lines
   * `<key> [subject]` (subject defaults to `api-key-<n>`), `#` comments.
   */
  static parse(text: string): ApiKeys {
    const m = new Map<string, string>()
    const t = text.trim()
    if (t.startsWith("{")) {
      const o = JSON.parse(t) as Record<string, unknown>
      for (const [k, v] of Object.entries(o)) {
        if (typeof v !== "string") throw new Error(`api key subject for an entry is not a string`)
        m.set(sha(k), v)
      }
    } else {
      let n = 0
      for (const raw of text.split(/\r?\n/)) {
        const line = raw.replace(/#.*/, "").trim()
        if (line === "") continue
        const [key, subject] = line.split(/\s+/, 2)
        m.set(sha(key), subject ?? `api-key-${++n}`)
      }
    }
    return new ApiKeys(m)
  }

  /** The subject of `key`, if it is known. */
  lookup(key: string): string | undefined {
    return this.bySha.get(sha(key))
  }
}

const sha = (s: string) => createHash("sha256").update(s, "utf8").digest("hex")

export interface Credentials {
  readonly bearer?: string
  readonly apiKey?: string
}

/** Reads `Authorization: Bearer <token>` and `X-API-Key` (first values) from lower-case headers. */
export const credentials = (headers: Readonly<Record<string, ReadonlyArray<string>>>): Credentials => {
  const auth = headers["authorization"]?.[0]
  const m = auth === undefined ? null : /^bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i.exec(auth)
  const apiKey = headers["x-api-key"]?.[0]
  return {
    ...(m !== null ? { bearer: m[1] } : {}),
    ...(apiKey !== undefined && apiKey !== "" ? { apiKey } : {})
  }
}

/**
 * Authenticates a request: an API key is checked when one is sent and API
 * keys are configured; otherwise the bearer token. Nothing usable: Missing.
 */
export const authenticate = async (
  creds: Credentials,
  apiKeys: ApiKeys | undefined,
  keys: JwtKeys,
  options: JwtOptions
): Promise<AuthResult> => {
  if (creds.apiKey !== undefined && apiKeys !== undefined) {
    const subject = apiKeys.lookup(creds.apiKey)
    return subject !== undefined
      ? { _tag: "Authenticated", method: "api-key", subject }
      : { _tag: "Invalid", method: "api-key", reason: "unknown API key", code: "API_KEY_INVALID" }
  }
  if (creds.bearer !== undefined && allowedAlgorithms(keys).length > 0) return verifyJwt(creds.bearer, keys, options)
  return { _tag: "Missing" }
}

/** RFC 6750 challenge: no error code when credentials were missing. */
export const wwwAuthenticate = (realm: string, result: AuthResult): string => {
  const r = `Bearer realm="${realm.replace(/["\\]/g, "")}"`
  if (result._tag !== "Invalid") return r
  const desc = result.reason.replace(/["\\\r\n]/g, "").slice(0, 200)
  return `${r}, error="invalid_token", error_description="${desc}"`
}
