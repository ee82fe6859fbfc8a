/**
 * OCSP stapling (`tls { ocsp-stapling #true }`): for each served certificate that names an OCSP
 * responder (Authority Information Access) and whose issuer is in its `cert-file` chain, a "good"
 * response is fetched from the responder, cached, and stapled to handshakes that ask for it.
 * A handshake never waits: it gets the cached response or none. Responses are refreshed at the
 * middle of their validity (thisUpdate..nextUpdate; hourly when they name no nextUpdate), retried
 * with backoff when the responder fails, and dropped once past nextUpdate.
 *
 * The request and the parts of the response read here are a few DER structures (RFC 6960),
 * encoded and read by hand: CertID (SHA-1), the response status, the single response's
 * certStatus, thisUpdate and nextUpdate. The client verifies the response's signature.
 */
import { createHash, X509Certificate } from "node:crypto"
import * as fs from "node:fs"

// ---------------------------------------------------------------------------------------------
// DER

interface Tlv {
  readonly tag: number
  /** Start of the whole TLV, of its content, end of its content. */
  readonly at: number
  readonly start: number
  readonly end: number
}

const readTlv = (b: Buffer, at: number): Tlv => {
  if (at + 2 > b.length) throw new Error("truncated DER")
  const tag = b[at]
  let len = b[at + 1]
  let start = at + 2
  if (len & 0x80) {
    const n = len & 0x7f
    if (n === 0 || n > 4 || start + n > b.length) throw new Error("bad DER length")
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]
    start += n
  }
  const end = start + len
  if (end > b.length) throw new Error("truncated DER")
  return { tag, at, start, end }
}

const children = (b: Buffer, t: Tlv): Array<Tlv> => {
  const out: Array<Tlv> = []
  for (let at = t.start; at < t.end; ) {
    const c = readTlv(b, at)
    out.push(c)
    at = c.end
  }
  return out
}

const tlv = (tag: number, content: Buffer): Buffer => {
  const n = content.length
  const head =
    n < 0x80 ? Buffer.from([tag, n]) : n < 0x100 ? Buffer.from([tag, 0x81, n]) : n < 0x10000 ? Buffer.from([tag, 0x82, n >> 8, n & 0xff]) : Buffer.from([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff])
  return Buffer.concat([head, content])
}

const SHA1_ALGORITHM = Buffer.from("300906052b0e03021a0500", "hex")

/** GeneralizedTime "YYYYMMDDHHMMSS[.f]Z" as a Date. */
const generalizedTime = (s: string): Date => {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(s)
  if (m === null) throw new Error(`bad time ${s}`)
  return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]))
}

// ---------------------------------------------------------------------------------------------
// Request and response

/** The OCSP request (DER) for `leaf` issued by `issuer`, and the serial it asks about. */
export const ocspRequest = (leaf: X509Certificate, issuer: X509Certificate): { readonly der: Buffer; readonly serial: Buffer } => {
  const raw = leaf.raw
  const cert = readTlv(raw, 0)
  const tbs = children(raw, cert)[0]
  const fields = children(raw, tbs)
  const i = fields[0].tag === 0xa0 ? 1 : 0
  const serialTlv = fields[i]
  const issuerName = raw.subarray(fields[i + 2].at, fields[i + 2].end)
  const spki = issuer.publicKey.export({ type: "spki", format: "der" })
  const bitString = children(spki, readTlv(spki, 0))[1]
  // the key bits, without the BIT STRING's unused-bits byte
  const key = spki.subarray(bitString.start + 1, bitString.end)
  const serial = raw.subarray(serialTlv.at, serialTlv.end)
  const certId = tlv(
    0x30,
    Buffer.concat([
      SHA1_ALGORITHM,
      tlv(0x04, createHash("sha1").update(issuerName).digest()),
      tlv(0x04, createHash("sha1").update(key).digest()),
      serial
    ])
  )
  const request = tlv(0x30, certId)
  return { der: tlv(0x30, tlv(0x30, tlv(0x30, request))), serial }
}

export interface OcspStatus {
  readonly status: "good" | "revoked" | "unknown"
  readonly thisUpdate: Date
  readonly nextUpdate: Date | undefined
}

/** Reads a DER OCSP response: the status of the certificate with `serial` (its INTEGER TLV). */
export const readOcspResponse = (der: Buffer, serial: Buffer): OcspStatus => {
  const top = children(der, readTlv(der, 0))
  if (top[0].tag !== 0x0a || der[top[0].start] !== 0) throw new Error(`responder status ${der[top[0].start]}`)
  if (top[1]?.tag !== 0xa0) throw new Error("no response bytes")
  const responseBytes = children(der, children(der, top[1])[0])
  const basicDer = der.subarray(responseBytes[1].start, responseBytes[1].end)
  const basic = children(basicDer, readTlv(basicDer, 0))
  const data = children(basicDer, basic[0])
  let k = data[0].tag === 0xa0 ? 1 : 0
  k += 2 // responderID, producedAt
  for (const single of children(basicDer, data[k])) {
    const parts = children(basicDer, single)
    const certId = children(basicDer, parts[0])
    if (!basicDer.subarray(certId[3].at, certId[3].end).equals(serial)) continue
    const statusTag = parts[1].tag
    const status = statusTag === 0x80 ? "good" : statusTag === 0xa1 ? "revoked" : "unknown"
    const thisUpdate = generalizedTime(basicDer.subarray(parts[2].start, parts[2].end).toString("latin1"))
    let nextUpdate: Date | undefined
    const next = parts[3]
    if (next !== undefined && next.tag === 0xa0) {
      const t = children(basicDer, next)[0]
      nextUpdate = generalizedTime(basicDer.subarray(t.start, t.end).toString("latin1"))
    }
    return { status, thisUpdate, nextUpdate }
  }
  throw new Error("the response does not name this certificate")
}

/** The OCSP responder URL of a certificate (Authority Information Access), if any. */
export const ocspUrlOf = (cert: X509Certificate): string | undefined => {
  const m = /OCSP - URI:(\S+)/.exec(cert.infoAccess ?? "")
  return m === null ? undefined : m[1]
}

// ---------------------------------------------------------------------------------------------
// Stapler

export interface OcspStapler {
  /** The cached response for the served certificate `der` (as the handshake gives it), or undefined. */
  readonly responseFor: (der: Buffer) => Buffer | undefined
  /** The cached response and until when it is valid (epoch ms), for a stapler that takes over. */
  readonly cached: (der: Buffer) => { readonly der: Buffer; readonly until: number } | undefined
  /** Stops refreshing. */
  readonly stop: () => void
}

export interface OcspOptions {
  /** Something went wrong fetching or reading a response (logged by the caller). */
  readonly onProblem: (certFile: string, message: string) => void
  /** A fresh "good" response is cached. */
  readonly onStapled?: (certFile: string, nextUpdate: Date | undefined) => void
  /** Per fetch. Default 5000. */
  readonly timeoutMs?: number
  /** Responses of a previous stapler (a reload), kept while the new one fetches. */
  readonly previous?: OcspStapler
}

const MAX_RESPONSE_BYTES = 64 * 1024
const RETRY_MIN_MS = 5_000
const RETRY_MAX_MS = 10 * 60_000
const REFRESH_WITHOUT_NEXT_UPDATE_MS = 60 * 60_000

/** PEM blocks of a certificate file (leaf first, then its chain). */
const pemCertificates = (file: string): Array<X509Certificate> =>
  [...fs.readFileSync(file, "latin1").matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]))

/**
 * Starts stapling for the certificate files given. A certificate without a responder URL or
 * without its issuer in the file's chain is reported once and served without a staple.
 */
export const startOcspStapler = (certFiles: ReadonlyArray<string>, options: OcspOptions): OcspStapler => {
  const timeoutMs = options.timeoutMs ?? 5000
  /** sha256 of the leaf's DER (hex) -> the response and when it stops being valid */
  const cache = new Map<string, { readonly der: Buffer; readonly until: number }>()
  const timers = new Set<NodeJS.Timeout>()
  let stopped = false
  const keyOf = (der: Buffer) => createHash("sha256").update(der).digest("hex")

  const schedule = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t)
      if (!stopped) fn()
    }, Math.max(1, ms))
    t.unref()
    timers.add(t)
  }

  for (const file of new Set(certFiles)) {
    let chain: Array<X509Certificate>
    try {
      chain = pemCertificates(file)
    } catch (e) {
      options.onProblem(file, `cannot read the certificate chain: ${(e as Error).message}`)
      continue
    }
    const leaf = chain[0]
    if (leaf === undefined) continue
    const url = ocspUrlOf(leaf)
    const issuer = chain.slice(1).find((c) => leaf.checkIssued(c))
    if (url === undefined) {
      options.onProblem(file, "the certificate names no OCSP responder: served without a staple")
      continue
    }
    if (issuer === undefined) {
      options.onProblem(file, "the issuer certificate is not in cert-file after the leaf: served without a staple")
      continue
    }
    const key = keyOf(leaf.raw)
    const kept = options.previous?.cached(leaf.raw)
    if (kept !== undefined) cache.set(key, kept)
    const { der: request, serial } = ocspRequest(leaf, issuer)
    let failures = 0
    const fetchOnce = async (): Promise<void> => {
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/ocsp-request", accept: "application/ocsp-response" },
          body: request,
          signal: AbortSignal.timeout(timeoutMs)
        })
        if (res.status !== 200) throw new Error(`responder answered ${res.status}`)
        const body = Buffer.from(await res.arrayBuffer())
        if (body.length > MAX_RESPONSE_BYTES) throw new Error(`response of ${body.length} bytes`)
        const s = readOcspResponse(body, serial)
        if (s.status !== "good") throw new Error(`the responder says the certificate is ${s.status}`)
        const now = Date.now()
        const until = s.nextUpdate?.getTime() ?? now + 2 * REFRESH_WITHOUT_NEXT_UPDATE_MS
        if (until <= now) throw new Error("the response is already past its nextUpdate")
        cache.set(key, { der: body, until })
        failures = 0
        options.onStapled?.(file, s.nextUpdate)
        const refreshAt = s.nextUpdate === undefined ? now + REFRESH_WITHOUT_NEXT_UPDATE_MS : s.thisUpdate.getTime() + (until - s.thisUpdate.getTime()) / 2
        schedule(Math.max(RETRY_MIN_MS, refreshAt - now), () => void fetchOnce())
      } catch (e) {
        failures++
        options.onProblem(file, `OCSP fetch from ${url} failed: ${(e as Error).message}`)
        schedule(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures - 1, 7)), () => void fetchOnce())
      }
    }
    void fetchOnce()
  }

  const cached = (der: Buffer) => {
    const hit = cache.get(keyOf(der))
    return hit === undefined || hit.until <= Date.now() ? undefined : hit
  }
  return {
    responseFor: (der) => cached(der)?.der,
    cached,
    stop: () => {
      stopped = true
      for (const t of timers) clearTimeout(t)
      timers.clear()
    }
  }
}
