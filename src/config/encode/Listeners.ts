/** `listeners { listener "id" { ... } }` and its `tls { ... }` as KDL (the reverse of blocks/Listeners.ts, blocks/ListenerTls.ts). */
import { formatHostPort, type ListenerConfig, type ListenerTlsConfig } from "../Schema.js"
import { bool, kdlString, secs, strings, type Writer } from "./Writer.js"

const listenerTls = (w: Writer, t: ListenerTlsConfig): void =>
  w.block("tls", () => {
    w.line(`cert-file ${kdlString(t.certFile)}`)
    w.line(`key-file ${kdlString(t.keyFile)}`)
    if (t.caFile !== undefined) w.line(`ca-file ${kdlString(t.caFile)}`)
    w.line(`client-auth ${bool(t.clientAuth)}`)
    w.line(`min-version ${kdlString(t.minVersion)}`)
    w.line(`max-version ${kdlString(t.maxVersion)}`)
    for (const c of t.cipherSuites) w.line(`cipher-suite ${kdlString(c)}`)
    w.line(`session-resumption ${bool(t.sessionResumption)}`)
    w.line(`ocsp-stapling ${bool(t.ocspStapling)}`)
    for (const s of t.sni) {
      w.block("sni", () => {
        if (s.hostnames.length > 0) w.line(`${s.priority ? "priority-hostnames" : "hostnames"} ${strings(s.hostnames)}`)
        w.line(`cert-file ${kdlString(s.certFile)}`)
        w.line(`key-file ${kdlString(s.keyFile)}`)
      })
    }
  })

export const listener = (w: Writer, l: ListenerConfig): void =>
  w.block(`listener ${kdlString(l.id)}`, () => {
    w.line(`address ${kdlString(formatHostPort(l.address.host, l.address.port))}`)
    w.line(`protocol ${kdlString(l.protocol)}`)
    w.line(`max-concurrent-streams ${l.maxConcurrentStreams}`)
    w.line(`max-early-resets ${l.maxEarlyResets}`)
    if (l.tls !== undefined) listenerTls(w, l.tls)
    w.line(`request-timeout-secs ${secs(l.requestTimeout)}`)
    w.line(`header-timeout-secs ${secs(l.headerTimeout)}`)
    w.line(`body-idle-timeout-secs ${secs(l.bodyIdleTimeout)}`)
    w.line(`write-timeout-secs ${secs(l.writeTimeout)}`)
    w.line(`keepalive-timeout-secs ${secs(l.keepaliveTimeout)}`)
    if (l.keepaliveMaxRequests !== undefined) w.line(`keepalive-max-requests ${l.keepaliveMaxRequests}`)
    if (l.defaultRoute !== undefined) w.line(`default-route ${kdlString(l.defaultRoute)}`)
    w.line(`admin ${bool(l.admin)}`)
    if (l.trustedProxies.length > 0) w.line(`trusted-proxies ${strings(l.trustedProxies)}`)
  })
