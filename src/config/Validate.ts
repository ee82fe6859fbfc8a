/**
 * Checks beyond parsing (`sentinel validate -c FILE`): the things a config
 * can only be wrong about against the machine it runs on. Certificates and
 * keys load and match; agent sockets exist and accept a connection; upstream
 * targets resolve and accept TCP. Each family can be skipped
 * (`--skip-certs`, `--skip-agents`, `--skip-network`).
 *
 * A reload runs the local part (`localChecks`: certificates, agent socket
 * directories) before swapping: a certificate that does not load must keep
 * the running configuration, not break TLS after the swap. Network checks are
 * for the operator's command only: an upstream that is down at reload time is
 * the health checker's business, not a reason to refuse a config.
 */
import { X509Certificate, createPrivateKey } from "node:crypto"
import * as dns from "node:dns/promises"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import { probeAgent } from "../agents/AgentProbe.js"
import * as path from "node:path"
import * as tls from "node:tls"
import * as Either from "effect/Either"
import { loadListenerTls, readPemFile } from "../tls/Certificates.js"
import { escapeText } from "./ConfigIssue.js"
import type { SentinelConfig } from "./Schema.js"

export interface ValidationFinding {
  readonly level: "error" | "warning"
  /** What the finding is about, e.g. `upstream "api" target 10.0.0.1:80`. */
  readonly subject: string
  readonly message: string
}

export interface ValidateOptions {
  /** Skip the upstream DNS + TCP checks. Default false. */
  readonly skipNetwork?: boolean
  /** Skip certificate and key checks. Default false. */
  readonly skipCerts?: boolean
  /** Skip the agent socket checks. Default false. */
  readonly skipAgents?: boolean
  /** Deadline of one DNS lookup / connect. Default 3000 ms. */
  readonly timeoutMs?: number
  /** Certificates expiring within this are warned about. Default 30 days. */
  readonly expiryWarningMs?: number
}

export const formatFinding = (f: ValidationFinding): string => escapeText(`${f.level}: ${f.subject}: ${f.message}`)

const errorText = (e: unknown): string => {
  const err = e as NodeJS.ErrnoException
  return err.code !== undefined ? `${err.code}${err.message && !err.message.startsWith(err.code) ? ` (${err.message})` : ""}` : String(err.message ?? e)
}

// ---------------------------------------------------------------------------
// Certificates

interface CertRef {
  readonly subject: string
  readonly cert?: string | undefined
  readonly key?: string | undefined
  readonly ca?: string | undefined
}

/**
 * Every certificate/key file named in the config: listener `tls` (default certificate, `ca-file`,
 * each `sni` block) and upstream `tls`.
 */
export const certificateRefs = (config: SentinelConfig): Array<CertRef> => {
  const refs: Array<CertRef> = []
  for (const l of config.listeners) {
    const t = l.tls
    if (t === undefined) continue
    refs.push({ subject: `listener "${l.id}" tls`, cert: t.certFile, key: t.keyFile, ca: t.caFile })
    t.sni.forEach((entry, i) => refs.push({ subject: `listener "${l.id}" tls sni #${i + 1}`, cert: entry.certFile, key: entry.keyFile }))
  }
  for (const u of config.upstreams) {
    if (u.tls === undefined) continue
    refs.push({ subject: `upstream "${u.id}" tls`, cert: u.tls.clientCert, key: u.tls.clientKey, ca: u.tls.caCert })
  }
  return refs.filter((r) => r.cert !== undefined || r.key !== undefined || r.ca !== undefined)
}

const readPem = async (file: string): Promise<string> => fs.readFile(file, "utf8")

const dayMs = 24 * 3600_000

export const checkCertificates = async (config: SentinelConfig, options: ValidateOptions = {}): Promise<Array<ValidationFinding>> => {
  const out: Array<ValidationFinding> = []
  const warnWithin = options.expiryWarningMs ?? 30 * dayMs
  const checkDates = (subject: string, file: string, validFrom: string, validTo: string) => {
    const notAfter = Date.parse(validTo)
    const notBefore = Date.parse(validFrom)
    const now = Date.now()
    if (now > notAfter) out.push({ level: "error", subject, message: `${file} expired on ${validTo}` })
    else if (now < notBefore) out.push({ level: "error", subject, message: `${file} is not valid before ${validFrom}` })
    else if (notAfter - now < warnWithin) {
      const days = Math.floor((notAfter - now) / dayMs)
      out.push({ level: "warning", subject, message: `${file} expires on ${validTo} (in ${days} day${days === 1 ? "" : "s"}; renew it)` })
    }
  }
  const checkCert = (subject: string, file: string, pem: string) => {
    let x509: X509Certificate
    try {
      x509 = new X509Certificate(pem)
    } catch (e) {
      out.push({ level: "error", subject, message: `${file} is not a PEM certificate: ${errorText(e)}` })
      return false
    }
    checkDates(subject, file, x509.validFrom, x509.validTo)
    return true
  }
  // Listener TLS: loaded exactly as the listener loads it (files, key match, SNI names), then dated.
  for (const l of config.listeners) {
    if (l.tls === undefined) continue
    const subject = `listener "${l.id}" tls`
    const loaded = loadListenerTls(l.id, l.tls)
    if (Either.isLeft(loaded)) {
      for (const p of loaded.left) {
        out.push({ level: "error", subject, message: p.startsWith(subject) ? p.slice(subject.length).replace(/^[ :]+/, "") : p })
      }
      continue
    }
    for (const c of loaded.right.certificates) {
      checkDates(c.source === "default" ? subject : `${subject} ${c.source}`, c.certFile, c.notBefore.toUTCString(), c.notAfter.toUTCString())
    }
    if (l.tls.caFile !== undefined) {
      const ca = readPemFile(l.tls.caFile)
      if (Either.isRight(ca)) checkCert(subject, l.tls.caFile, ca.right)
    }
  }
  for (const ref of certificateRefs(config).filter((r) => !r.subject.startsWith("listener "))) {
    const texts: Record<string, string | undefined> = {}
    for (const [kind, file] of [["cert", ref.cert], ["key", ref.key], ["ca", ref.ca]] as const) {
      if (file === undefined) continue
      try {
        texts[kind] = await readPem(file)
      } catch (e) {
        out.push({ level: "error", subject: ref.subject, message: `cannot read ${kind} file ${file}: ${errorText(e)}` })
      }
    }
    let ok = true
    if (texts.cert !== undefined) ok = checkCert(ref.subject, ref.cert!, texts.cert) && ok
    if (texts.ca !== undefined) ok = checkCert(ref.subject, ref.ca!, texts.ca) && ok
    if (texts.key !== undefined) {
      try {
        createPrivateKey(texts.key)
      } catch (e) {
        out.push({ level: "error", subject: ref.subject, message: `${ref.key} is not a PEM private key: ${errorText(e)}` })
        ok = false
      }
    }
    if (ok && texts.cert !== undefined && texts.key !== undefined) {
      try {
        tls.createSecureContext({ cert: texts.cert, key: texts.key })
      } catch (e) {
        out.push({ level: "error", subject: ref.subject, message: `${ref.cert} and ${ref.key} do not match: ${errorText(e)}` })
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------
// Agents

/**
 * The directory of every agent socket exists, and a gRPC agent's TLS files can be read (a typo
 * in a path would otherwise only show at the first call).
 */
export const checkAgentSocketDirs = async (config: SentinelConfig): Promise<Array<ValidationFinding>> => {
  const out: Array<ValidationFinding> = []
  for (const a of config.agents) {
    const tls = a.grpc?.tls
    if (tls !== undefined) {
      // a gRPC agent's TLS files are read when its channel is made: a missing one fails every call
      for (const [key, file] of [["ca-cert", tls.caCert], ["client-cert", tls.clientCert], ["client-key", tls.clientKey]] as const) {
        if (file === undefined) continue
        const readable = await fs.access(file, fs.constants.R_OK).then(() => true, () => false)
        if (!readable) out.push({ level: "error", subject: `agent "${a.id}"`, message: `grpc ${key} ${file} cannot be read` })
      }
    }
    if (a.socketPath === undefined) continue
    const dir = path.dirname(path.resolve(a.socketPath))
    const st = await fs.stat(dir).catch(() => undefined)
    if (st === undefined || !st.isDirectory()) {
      out.push({ level: "error", subject: `agent "${a.id}"`, message: `socket directory ${dir} does not exist` })
    }
  }
  return out
}

const connectOnce = (opts: net.NetConnectOpts, timeoutMs: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(opts)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" }))
    }, timeoutMs)
    socket.once("connect", () => {
      clearTimeout(timer)
      socket.end()
      socket.destroy()
      resolve()
    })
    socket.once("error", (e) => {
      clearTimeout(timer)
      socket.destroy()
      reject(e)
    })
  })

/**
 * Each agent answers a real handshake over its transport: a Unix socket must accept the
 * connection (else "does not answer") and the agent behind it must complete the v2 handshake;
 * a gRPC agent must serve AgentServiceV2 and complete the handshake on ProcessStream.
 */
export const checkAgentSockets = async (config: SentinelConfig, options: ValidateOptions = {}): Promise<Array<ValidationFinding>> => {
  const timeoutMs = options.timeoutMs ?? 3000
  const results = await Promise.all(
    config.agents.map(async (a): Promise<ValidationFinding | undefined> => {
      const subject = `agent "${a.id}"`
      if (a.socketPath !== undefined) {
        try {
          await connectOnce({ path: a.socketPath }, timeoutMs)
        } catch (e) {
          return { level: "error", subject, message: `socket ${a.socketPath} does not answer: ${errorText(e)}` }
        }
      }
      const r = await probeAgent(a, { timeoutMs })
      if (r.ok) return undefined
      return {
        level: "error",
        subject,
        message: a.grpc !== undefined
          ? `gRPC agent at ${a.grpc.address} failed the handshake: ${r.message}`
          : `agent on ${a.socketPath} failed the handshake: ${r.message}`
      }
    })
  )
  return results.filter((r): r is ValidationFinding => r !== undefined)
}

// ---------------------------------------------------------------------------
// Upstreams

/** Each upstream target resolves and accepts a TCP connection (bounded: one attempt, `timeoutMs`). */
export const checkUpstreamTargets = async (config: SentinelConfig, options: ValidateOptions = {}): Promise<Array<ValidationFinding>> => {
  const timeoutMs = options.timeoutMs ?? 3000
  const targets = config.upstreams.flatMap((u) => u.targets.map((t) => ({ upstream: u.id, t })))
  const results = await Promise.all(
    targets.map(async ({ upstream, t }): Promise<ValidationFinding | undefined> => {
      const subject = `upstream "${upstream}" target ${t.address}`
      let host = t.host
      if (net.isIP(host) === 0) {
        try {
          const lookup = dns.lookup(host)
          const timer = new Promise<never>((_, reject) =>
            setTimeout(() => reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })), timeoutMs).unref()
          )
          host = (await Promise.race([lookup, timer])).address
        } catch (e) {
          return { level: "error", subject, message: `does not resolve: ${errorText(e)}` }
        }
      }
      try {
        await connectOnce({ host, port: t.port }, timeoutMs)
        return undefined
      } catch (e) {
        return { level: "error", subject, message: `does not accept TCP connections: ${errorText(e)}` }
      }
    })
  )
  return results.filter((r): r is ValidationFinding => r !== undefined)
}

// ---------------------------------------------------------------------------

/** The checks a reload runs before the swap (no network). */
export const localChecks = async (config: SentinelConfig): Promise<Array<ValidationFinding>> => [
  ...(await checkCertificates(config)),
  ...(await checkAgentSocketDirs(config))
]

/** Everything `sentinel validate` checks after the config parsed. */
export const validateConfig = async (config: SentinelConfig, options: ValidateOptions = {}): Promise<Array<ValidationFinding>> => {
  const [certs, agents, network] = await Promise.all([
    options.skipCerts ? [] : checkCertificates(config, options),
    options.skipAgents ? [] : checkAgentSockets(config, options),
    options.skipNetwork ? [] : checkUpstreamTargets(config, options)
  ])
  return [...certs, ...agents, ...network]
}
