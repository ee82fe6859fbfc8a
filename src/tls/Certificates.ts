/**
 * A listener's TLS material, loaded once from its `tls { }` config: the
 * options for `tls.createServer` / `http2.createSecureServer`, one secure
 * context per certificate (built at load, never per handshake), and the SNI
 * lookup that picks one for a server name.
 *
 * Selection (`contextFor`): the name is lower-cased and a trailing dot dropped;
 * an exact name wins, then a one-label wildcard (`*.example.com` covers
 * `a.example.com`, not `a.b.example.com` nor `example.com`: RFC 6125; Sentinel's
 * wildcards match any depth), then the default certificate (no SNI, unknown
 * name). `sni { hostnames ... }` serves exactly those names;
 * `sni { priority-hostnames ... }` serves every DNS name of the certificate's
 * SANs (CN when it has none) and wins the listed ones over other `sni` blocks;
 * a block with neither serves its SANs. A name claimed by two blocks is an
 * error unless exactly one of them lists it in `priority-hostnames`
 * (Sentinel's rule).
 *
 * Everything that can be wrong with the files is found here, as one message
 * each: unreadable or not a regular file, not PEM, a key that does not match
 * its certificate, an empty CA file, a priority name the certificate does not
 * have, a name two blocks claim. Callers: startup and reload (refuse to serve
 * half-configured), `sentinel test`, `sentinel validate` (via Validate.ts).
 */
import { constants as cryptoConstants, createPrivateKey, type KeyObject, X509Certificate } from "node:crypto"
import * as fs from "node:fs"
import * as tls from "node:tls"
import * as Either from "effect/Either"
import type { ListenerTlsConfig, SentinelConfig } from "../config/Schema.js"
import { nodeCiphers, nodeTlsVersion, normalizeServerName, serverNamePatternProblem } from "../config/TlsNames.js"

export {
  type CipherSuite, cipherSuiteNames, cipherSuites, mapCipherSuite, matchServerName, nodeCiphers, nodeTlsVersion,
  normalizeServerName, parseTlsVersion, serverNamePatternProblem, suitesWithoutForwardSecrecy, tlsVersionRank
} from "../config/TlsNames.js"

export interface TlsCertificateInfo {
  /** Names this certificate is chosen for (SNI), normalized; for the default certificate, its SAN DNS names (CN when none). */
  readonly hostnames: ReadonlyArray<string>
  readonly subject: string
  readonly issuer: string
  readonly serial: string
  readonly fingerprint256: string
  readonly notBefore: Date
  readonly notAfter: Date
  readonly certFile: string
  readonly source: "default" | `sni #${number}`
}

export interface ListenerTls {
  /**
   * Options for `tls.createServer` / `http2.createSecureServer` / `https.createServer`: the default
   * certificate (cert, key), ca, requestCert / rejectUnauthorized (client-auth), minVersion,
   * maxVersion, ciphers + honorCipherOrder (when cipher suites are configured), secureOptions
   * (SSL_OP_NO_TICKET without session resumption) and, with `sni` blocks, SNICallback. ALPN is
   * the caller's (http2.createSecureServer with allowHTTP1 offers h2 and http/1.1).
   */
  readonly serverOptions: tls.TlsOptions
  /** The secure context for a server name (exact, then one-label wildcard, then default). Never throws. */
  readonly contextFor: (servername: string | undefined) => tls.SecureContext
  /** Every certificate loaded, default first. */
  readonly certificates: ReadonlyArray<TlsCertificateInfo>
}

/** Certificate, key and CA files larger than this are refused before reading (a wrong path). */
export const maxTlsFileBytes = 1024 * 1024

const errorText = (e: unknown): string => {
  const err = e as NodeJS.ErrnoException
  const msg = String(err?.message ?? e)
  return err?.code !== undefined && !msg.startsWith(err.code) ? `${err.code} (${msg})` : msg
}

/**
 * A PEM file's text; non-regular files (a directory, a FIFO, /dev/zero) and oversized files are
 * refused on the open descriptor before a byte is read (opened non-blocking: a FIFO cannot stall).
 */
export const readPemFile = (file: string): Either.Either<string, string> => {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0))
  } catch (e) {
    return Either.left(`cannot read ${file}: ${errorText(e)}`)
  }
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) return Either.left(`${file} is not a regular file`)
    if (st.size > maxTlsFileBytes) return Either.left(`${file} is larger than 1 MiB (${st.size} bytes): not a PEM file`)
    return Either.right(fs.readFileSync(fd, "utf8"))
  } catch (e) {
    return Either.left(`cannot read ${file}: ${errorText(e)}`)
  } finally {
    fs.closeSync(fd)
  }
}

/** The DNS names of a certificate: subjectAltName DNS entries, else the subject CN (lower case). */
export const certificateNames = (x509: X509Certificate): Array<string> => {
  const sans = (x509.subjectAltName ?? "")
    .split(/,\s*/)
    .flatMap((e) => (e.startsWith("DNS:") ? [normalizeServerName(e.slice(4).replace(/^"|"$/g, ""))] : []))
  if (sans.length > 0) return [...new Set(sans)]
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x509.subject)?.[1]
  return cn === undefined || cn === "" ? [] : [normalizeServerName(cn)]
}

interface Loaded {
  readonly pem: string
  readonly keyPem: string
  readonly x509: X509Certificate
}

const loadPair = (certFile: string, keyFile: string, problems: Array<string>, where: string): Loaded | undefined => {
  const cert = readPemFile(certFile)
  const key = readPemFile(keyFile)
  if (Either.isLeft(cert)) problems.push(`${where} cert-file: ${cert.left}`)
  if (Either.isLeft(key)) problems.push(`${where} key-file: ${key.left}`)
  if (Either.isLeft(cert) || Either.isLeft(key)) return undefined
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert.right)
  } catch (e) {
    problems.push(`${where} cert-file: ${certFile} is not a PEM certificate: ${errorText(e)}`)
    return undefined
  }
  let keyObject: KeyObject
  try {
    keyObject = createPrivateKey(key.right)
  } catch (e) {
    problems.push(`${where} key-file: ${keyFile} is not a PEM private key (or it is encrypted): ${errorText(e)}`)
    return undefined
  }
  if (!x509.checkPrivateKey(keyObject)) {
    problems.push(`${where}: key-file ${keyFile} does not match cert-file ${certFile} (hint: the key the certificate was issued for)`)
    return undefined
  }
  return { pem: cert.right, keyPem: key.right, x509 }
}

const info = (l: Loaded, hostnames: ReadonlyArray<string>, certFile: string, source: TlsCertificateInfo["source"]): TlsCertificateInfo => ({
  hostnames,
  subject: l.x509.subject.replace(/\n/g, ", "),
  issuer: l.x509.issuer.replace(/\n/g, ", "),
  serial: l.x509.serialNumber,
  fingerprint256: l.x509.fingerprint256,
  notBefore: new Date(l.x509.validFrom),
  notAfter: new Date(l.x509.validTo),
  certFile,
  source
})

/**
 * Loads a listener's certificates and builds its TLS options and SNI lookup. Left: every problem
 * found, one message each (`listener "id" tls sni #2 cert-file: cannot read /x: ENOENT (...)`).
 */
export const loadListenerTls = (listenerId: string, config: ListenerTlsConfig): Either.Either<ListenerTls, ReadonlyArray<string>> => {
  const problems: Array<string> = []
  const where = `listener "${listenerId}" tls`
  const def = loadPair(config.certFile, config.keyFile, problems, where)
  let ca: string | undefined
  if (config.caFile !== undefined) {
    const text = readPemFile(config.caFile)
    if (Either.isLeft(text)) problems.push(`${where} ca-file: ${text.left}`)
    else {
      try {
        if (!text.right.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no certificate in it")
        new X509Certificate(text.right)
        ca = text.right
      } catch (e) {
        problems.push(`${where} ca-file: ${config.caFile} is not a PEM certificate file: ${errorText(e)}`)
      }
    }
  }
  const sni = config.sni.map((s, i) => ({ s, i: i + 1, loaded: loadPair(s.certFile, s.keyFile, problems, `${where} sni #${i + 1}`) }))

  // Which names each sni block claims, and who wins a name claimed twice.
  type Claim = { readonly block: number; readonly priority: boolean }
  const claims = new Map<string, Claim>()
  const claimedBy = new Map<number, ReadonlyArray<string>>()
  for (const { s, i, loaded } of sni) {
    if (loaded === undefined) continue
    const names = certificateNames(loaded.x509)
    let claimed: Array<string>
    let priority = new Set<string>()
    if (s.hostnames.length > 0 && !s.priority) {
      claimed = [...s.hostnames]
    } else {
      claimed = names.filter((n) => serverNamePatternProblem(n) === undefined)
      if (claimed.length === 0) {
        problems.push(`${where} sni #${i}: ${s.certFile} has no DNS name in its subjectAltName or CN: write \`hostnames\``)
      }
      if (s.priority) {
        priority = new Set(s.hostnames)
        for (const p of s.hostnames) {
          if (!claimed.includes(p)) {
            problems.push(`${where} sni #${i}: priority-hostnames "${p}" is not a name of ${s.certFile} (its names: ${claimed.join(", ") || "none"})`)
          }
        }
      }
    }
    claimedBy.set(i, claimed)
    for (const name of claimed) {
      const mine: Claim = { block: i, priority: priority.has(name) }
      const first = claims.get(name)
      if (first === undefined || first.block === i) claims.set(name, mine)
      else if (first.priority && mine.priority) {
        problems.push(`${where}: "${name}" is a priority-hostname of both sni #${first.block} and sni #${i}: only one certificate can win a name`)
      } else if (!first.priority && !mine.priority) {
        problems.push(
          `${where}: "${name}" is claimed by sni #${first.block} and sni #${i} (${config.sni[first.block - 1].certFile}, ${s.certFile}): ` +
          `a name goes to one certificate (hint: priority-hostnames "${name}" in the block that should win)`
        )
      } else if (mine.priority) claims.set(name, mine)
    }
  }
  if (problems.length > 0 || def === undefined) return Either.left(problems)

  const common: tls.SecureContextOptions = {
    minVersion: nodeTlsVersion[config.minVersion],
    maxVersion: nodeTlsVersion[config.maxVersion],
    ...(nodeCiphers(config.cipherSuites) !== undefined ? { ciphers: nodeCiphers(config.cipherSuites), honorCipherOrder: true } : {}),
    ...(config.sessionResumption ? {} : { secureOptions: cryptoConstants.SSL_OP_NO_TICKET }),
    ...(ca !== undefined ? { ca } : {})
  }
  const context = (l: Loaded, where: string): tls.SecureContext | undefined => {
    try {
      return tls.createSecureContext({ ...common, cert: l.pem, key: l.keyPem })
    } catch (e) {
      problems.push(`${where}: ${errorText(e)}`)
      return undefined
    }
  }
  const defaultContext = context(def, where)
  const contexts = new Map<number, tls.SecureContext>()
  for (const { i, loaded } of sni) {
    const c = context(loaded!, `${where} sni #${i}`)
    if (c !== undefined) contexts.set(i, c)
  }
  if (problems.length > 0 || defaultContext === undefined) return Either.left(problems)

  const exact = new Map<string, tls.SecureContext>()
  const wildcard = new Map<string, tls.SecureContext>()
  for (const [name, claim] of claims) {
    const c = contexts.get(claim.block)!
    if (name.startsWith("*.")) wildcard.set(name.slice(2), c)
    else exact.set(name, c)
  }
  const contextFor = (servername: string | undefined): tls.SecureContext => {
    if (typeof servername !== "string" || servername === "") return defaultContext
    const n = normalizeServerName(servername)
    const hit = exact.get(n)
    if (hit !== undefined) return hit
    const dot = n.indexOf(".")
    return (dot > 0 ? wildcard.get(n.slice(dot + 1)) : undefined) ?? defaultContext
  }
  const serverOptions: tls.TlsOptions = {
    ...common,
    cert: def.pem,
    key: def.keyPem,
    requestCert: config.clientAuth,
    rejectUnauthorized: config.clientAuth,
    ...(config.sni.length > 0 ? { SNICallback: (name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => cb(null, contextFor(name)) } : {})
  }
  const certificates = [
    info(def, certificateNames(def.x509), config.certFile, "default"),
    ...sni.map(({ s, i, loaded }) =>
      info(loaded!, (claimedBy.get(i) ?? []).filter((n) => claims.get(n)?.block === i), s.certFile, `sni #${i}` as const)
    )
  ]
  return Either.right({ serverOptions, contextFor, certificates })
}

/** Every listener's TLS problems (loads and discards the material): for `sentinel test` and startup checks. */
export const listenerTlsProblems = (config: SentinelConfig): Array<string> =>
  config.listeners.flatMap((l) => (l.tls === undefined ? [] : Either.match(loadListenerTls(l.id, l.tls), { onLeft: (p) => [...p], onRight: () => [] })))
