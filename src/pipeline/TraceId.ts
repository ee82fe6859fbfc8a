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

/** 11 base58 characters: 42 bits of milliseconds, 10 bits of counter, 12 random bits. */
export const tinyflake = (): string => {
  if (offset + 2 > pool.length) {
    pool = randomBytes(4096)
    offset = 0
  }
  const rnd = (pool[offset++] << 4) | (pool[offset++] & 0x0f)
  counter = (counter + 1) & 0x3ff
  let n = (BigInt(Date.now()) << 22n) | (BigInt(counter) << 12n) | BigInt(rnd)
  let out = ""
  for (let i = 0; i < 11; i++) {
    out = ALPHABET[Number(n % 58n)] + out
    n /= 58n
  }
  return out
}

export const makeTraceIdGenerator = (format: "tinyflake" | "uuid"): (() => string) =>
  format === "uuid" ? randomUUID : tinyflake
