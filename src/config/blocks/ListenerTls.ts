/**
 * `listener "id" { tls { ... } }`: Sentinel's listener TLS keys, decoded and
 * checked without reading a file (the decoder stays pure). Everything that
 * needs the files (readable, key matches certificate, the SANs of
 * `priority-hostnames` blocks, names claimed twice once SANs are known) is
 * checked by `loadListenerTls` (src/tls/Certificates.ts), which `sentinel test`,
 * `sentinel validate`, a reload and startup run.
 */
import type { Node, Primitive } from "@bgotink/kdl"
import { hint } from "../ConfigIssue.js"
import type { ListenerTlsConfig, SniCertificateConfig, TlsVersion } from "../Schema.js"
import {
  cipherSuiteNames, mapCipherSuite, normalizeServerName, parseTlsVersion, serverNamePatternProblem, tlsVersionRank
} from "../TlsNames.js"
import { type BlockSpec, children, compact, custom, decodeBlock, list, many, scalar, shape } from "../KdlDecoder.js"
import { type Cx, nodeName } from "../KdlContext.js"
import { bool, nonEmpty, str, type Val } from "../KdlValues.js"

const shown = (v: Primitive): string =>
  v === null ? "#null" : typeof v === "string" ? JSON.stringify(v) : typeof v === "boolean" ? `#${v}` : String(v)

const tlsVersion: Val<TlsVersion> = (v, at, cx, what) => {
  if (typeof v !== "string") return cx.error(at, `${what} must be a string like "1.2" (Sentinel ignores a number here), got ${shown(v)}`)
  return parseTlsVersion(v) ?? cx.error(
    at,
    `${what} ${JSON.stringify(v)} is not a TLS version: use "1.2" or "1.3" ("1.0" and "1.1" are accepted but weak); Sentinel would silently use 1.2`
  )
}

/** An IANA cipher suite name, returned in its canonical spelling. */
const cipherSuite: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return mapCipherSuite(s)?.iana ?? cx.error(
    at,
    `${what} ${JSON.stringify(s)} is not a known cipher suite (IANA names like "TLS_AES_128_GCM_SHA256" or "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")${hint(s, cipherSuiteNames)}`
  )
}

/** A server name or one-label wildcard, normalized (lower case, no trailing dot). */
const serverName: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  const problem = serverNamePatternProblem(s)
  return problem === undefined ? normalizeServerName(s) : cx.error(at, `${what} entry ${JSON.stringify(s)} ${problem}`)
}

interface SniFields {
  readonly hostnames: ReadonlyArray<ReadonlyArray<string>>
  readonly priorityHostnames: ReadonlyArray<ReadonlyArray<string>>
  readonly certFile: string
  readonly keyFile: string
}

export const sniSpec: BlockSpec<SniFields> = {
  path: "listeners.listener.tls.sni",
  fields: {
    // Sentinel reads every `hostnames` line of the block: so does this
    hostnames: many(list("hostnames", serverName)),
    priorityHostnames: many(list("priority-hostnames", serverName)),
    certFile: scalar("cert-file", nonEmpty),
    keyFile: scalar("key-file", nonEmpty)
  }
}

const has = (node: Node, name: string): boolean => children(node).some((n) => nodeName(n) === name)
const child = (node: Node, name: string): Node | undefined => children(node).find((n) => nodeName(n) === name)

const sniField = custom("sni", (node, cx): SniCertificateConfig | undefined => {
  if (!shape(node, cx, { args: [0, 0], children: true })) return undefined
  const f = decodeBlock(node, cx, sniSpec).fields
  let ok = true
  if (has(node, "hostnames") && has(node, "priority-hostnames")) {
    ok = cx.error(
      child(node, "priority-hostnames"),
      "`sni` takes `hostnames` (exactly these names) or `priority-hostnames` (the certificate's SANs, winning these names), not both"
    ) ?? false
  }
  for (const k of ["cert-file", "key-file"]) {
    if (!has(node, k)) ok = cx.error(node, `\`sni\` needs \`cert-file\` and \`key-file\` (missing \`${k}\`)`) ?? false
  }
  if (!ok || f.certFile === undefined || f.keyFile === undefined) return undefined
  const priority = (f.priorityHostnames ?? []).length > 0
  const hostnames = (priority ? f.priorityHostnames : f.hostnames) ?? []
  return { hostnames: hostnames.flat(), priority, certFile: f.certFile, keyFile: f.keyFile }
}, { many: true, nested: sniSpec })

interface TlsFields {
  readonly certFile: string
  readonly keyFile: string
  readonly caFile: string
  readonly clientAuth: boolean
  readonly minVersion: TlsVersion
  readonly maxVersion: TlsVersion
  readonly cipherSuites: ReadonlyArray<string>
  readonly sessionResumption: boolean
  readonly ocspStapling: boolean
  readonly sni: ReadonlyArray<SniCertificateConfig>
}

export const listenerTlsSpec: BlockSpec<TlsFields> = {
  path: "listeners.listener.tls",
  fields: {
    certFile: scalar("cert-file", nonEmpty),
    keyFile: scalar("key-file", nonEmpty),
    caFile: scalar("ca-file", nonEmpty),
    clientAuth: scalar("client-auth", bool),
    minVersion: scalar("min-version", tlsVersion),
    maxVersion: scalar("max-version", tlsVersion),
    cipherSuites: many(scalar("cipher-suite", cipherSuite)),
    sessionResumption: scalar("session-resumption", bool),
    ocspStapling: scalar("ocsp-stapling", bool),
    sni: sniField
  }
}

const at = (p: { line: number; col: number }) => `${p.line}:${p.col}`

/** Names claimed by two `sni` blocks (as far as they are written: SANs are checked at load). */
const checkSniNames = (tlsNode: Node, cx: Cx): boolean => {
  let ok = true
  const claimed = new Map<string, { node: Node; priority: boolean }>()
  for (const sni of children(tlsNode).filter((n) => nodeName(n) === "sni")) {
    const inBlock = new Set<string>()
    for (const line of children(sni)) {
      const priority = nodeName(line) === "priority-hostnames"
      if (!priority && nodeName(line) !== "hostnames") continue
      for (const e of line.getArgumentEntries()) {
        const v = e.getValue()
        if (typeof v !== "string" || serverNamePatternProblem(v) !== undefined) continue
        const name = normalizeServerName(v)
        if (inBlock.has(name)) {
          ok = cx.error(e, `\`${nodeName(line)}\` lists ${JSON.stringify(name)} twice`) ?? false
          continue
        }
        inBlock.add(name)
        const first = claimed.get(name)
        if (first === undefined) {
          claimed.set(name, { node: sni, priority })
        } else if (first.priority && priority) {
          ok = cx.error(e, `${JSON.stringify(name)} is already a priority-hostname of the \`sni\` block at ${at(cx.pos(first.node))}: only one certificate can win a name`) ?? false
        } else if (!first.priority && !priority) {
          ok = cx.error(
            e,
            `${JSON.stringify(name)} is already served by the \`sni\` block at ${at(cx.pos(first.node))}: a name goes to one certificate (list it in one block, or use priority-hostnames to choose)`
          ) ?? false
        } else if (priority) claimed.set(name, { node: sni, priority })
      }
    }
  }
  return ok
}

export const listenerTlsField = custom("tls", (node, cx): ListenerTlsConfig | undefined => {
  if (!shape(node, cx, { args: [0, 0], children: true })) return undefined
  const { fields: f, seq } = decodeBlock(node, cx, listenerTlsSpec)
  let ok = checkSniNames(node, cx)
  const missing = ["cert-file", "key-file"].filter((k) => !has(node, k))
  if (missing.length > 0) {
    ok = cx.error(node, `\`tls\` needs \`cert-file\` and \`key-file\` (the default certificate; missing ${missing.map((k) => `\`${k}\``).join(" and ")})`) ?? false
  }
  if (f.clientAuth === true && !has(node, "ca-file")) {
    ok = cx.error(child(node, "client-auth"), "`client-auth` #true needs `ca-file` (the CAs client certificates are verified against)") ?? false
  }
  const min = f.minVersion ?? "1.2"
  const max = f.maxVersion ?? "1.3"
  if (tlsVersionRank(min) > tlsVersionRank(max)) {
    ok = cx.error(child(node, "min-version"), `\`min-version\` "${min}" is above \`max-version\` "${max}"`) ?? false
  } else if (f.cipherSuites !== undefined && f.cipherSuites.length > 0) {
    const suiteNodes = seq.filter((s) => s.key === "cipherSuites")
    const seen = new Set<string>()
    for (const { value, node: n } of suiteNodes) {
      const suite = mapCipherSuite(value as string)!
      if (seen.has(suite.iana)) ok = cx.error(n, `\`cipher-suite\` "${suite.iana}" is listed twice`) ?? false
      seen.add(suite.iana)
      if (suite.version === "1.2" && min === "1.3") {
        ok = cx.error(n, `\`cipher-suite\` "${suite.iana}" is a TLS 1.2 suite: it is never used with min-version "1.3"`) ?? false
      }
      if (suite.version === "1.3" && max !== "1.3") {
        ok = cx.error(n, `\`cipher-suite\` "${suite.iana}" is a TLS 1.3 suite: it is never used with max-version "${max}"`) ?? false
      }
    }
    const versions = new Set(f.cipherSuites.map((s) => mapCipherSuite(s)!.version))
    const first = suiteNodes[0]?.node
    // only when every line decoded: a misspelled suite is its own error, not also a missing version
    const complete = suiteNodes.length === children(node).filter((n) => nodeName(n) === "cipher-suite").length
    if (complete && max === "1.3" && !versions.has("1.3")) {
      ok = cx.error(
        first,
        `\`cipher-suite\` lists no TLS 1.3 suite but max-version is "1.3" (TLS 1.3 would silently use node's default suites): add the TLS 1.3 suites to allow (e.g. "TLS_AES_128_GCM_SHA256") or set max-version "1.2"`
      ) ?? false
    }
    if (complete && min !== "1.3" && !versions.has("1.2")) {
      ok = cx.error(
        first,
        `\`cipher-suite\` lists no TLS 1.2 suite but min-version is "${min}" (TLS 1.2 clients could not connect): add TLS 1.2 suites or set min-version "1.3"`
      ) ?? false
    }
  }
  if (!ok || f.certFile === undefined || f.keyFile === undefined) return undefined
  return compact({ ...f }) as ListenerTlsConfig
}, { nested: listenerTlsSpec })
