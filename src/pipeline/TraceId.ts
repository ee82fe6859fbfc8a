/**
 * Trace ids: reuse the client's `X-Request-Id` / `X-Correlation-Id` /
 * `X-Trace-Id` when it is sane, else generate one (Sentinel's 11-character
 * TinyFlake or a UUID, `system { trace-id-format }`).
 */
import { randomBytes, randomUUID } from "node:crypto"

const INCOMING = ["x-request-id", "x-correlation-id", "x-trace-id"] as const
/** Accept only short, printable ids; anything else is replaced (log injection, header abuse). */
const SANE = /^[A-Za-z0-9._:@-]{1,128}$/

export const incomingTraceId = (header: (name: string) => string | undefined): string | undefined => {
  for (const name of INCOMING) {
    const value = header(name)
    if (value !== undefined && SANE.test(value)) return value
  }
  return undefined
}

const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
let pool = randomBytes(4096)
let offset = 0
let counter = 0

const base58 = (n: number, width: number): string => {
  let out = ""
  for (let i = 0; i < width; i++) {
    out = ALPHABET[n % 58] + out
    n = Math.floor(n / 58)
  }
  return out
}

let prefixMs = -1
let prefix = ""

/**
 * 11 base58 characters, sortable by time: 7 for the milliseconds (enough until
 * 2039), then 4 for a 10-bit counter and 13 random bits. Plain number
 * arithmetic: this runs once per request; the time part is encoded once per millisecond.
 */
export const tinyflake = (): string => {
  if (offset + 2 > pool.length) {
    pool = randomBytes(4096)
    offset = 0
  }
  const rnd = ((pool[offset++] << 5) | (pool[offset++] & 0x1f)) & 0x1fff
  counter = (counter + 1) & 0x3ff
  const now = Date.now()
  if (now !== prefixMs) {
    prefixMs = now
    prefix = base58(now, 7)
  }
  let n = counter * 8192 + rnd
  const d = ALPHABET[n % 58]
  n = Math.floor(n / 58)
  const c = ALPHABET[n % 58]
  n = Math.floor(n / 58)
  const b = ALPHABET[n % 58]
  n = Math.floor(n / 58)
  return prefix + ALPHABET[n % 58] + b + c + d
}

export const makeTraceIdGenerator = (format: "tinyflake" | "uuid"): (() => string) =>
  format === "uuid" ? randomUUID : tinyflake
