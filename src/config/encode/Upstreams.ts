/** `upstreams { upstream "id" { ... } }` as KDL (the reverse of blocks/Upstreams.ts). */
import type { HashKey, UpstreamConfig } from "../Schema.js"
import { circuitBreaker } from "./Resilience.js"
import { bool, kdlString, msSecs, secs, type Writer } from "./Writer.js"

const hashKey = (k: HashKey): string =>
  kdlString(k.source === "header" || k.source === "cookie" ? `${k.source}:${k.name}` : k.source)

export const upstream = (w: Writer, u: UpstreamConfig): void =>
  w.block(`upstream ${kdlString(u.id)}`, () => {
    for (const t of u.targets) w.line(`target ${kdlString(t.address)} weight=${t.weight}`)
    const lb = `load-balancing ${kdlString(u.loadBalancing)}`
    if (u.loadBalancing === "consistent_hash") {
      w.block(lb, () => {
        w.line(`hash-key ${hashKey(u.hashKey)}`)
        w.line(`virtual-nodes ${u.virtualNodes}`)
      })
    } else if (u.loadBalancing === "maglev") {
      w.block(lb, () => {
        w.line(`hash-key ${hashKey(u.hashKey)}`)
        w.line(`table-size ${u.maglevTableSize}`)
      })
    } else if (u.loadBalancing === "sticky") {
      const st = u.sticky
      w.block(lb, () => {
        w.line(`cookie-name ${kdlString(st.cookieName)}`)
        w.line(`cookie-ttl ${st.cookieTtlSecs}`)
        w.line(`cookie-path ${kdlString(st.cookiePath)}`)
        w.line(`cookie-secure ${bool(st.cookieSecure)}`)
        w.line(`cookie-same-site ${kdlString(st.cookieSameSite)}`)
        w.line(`fallback ${kdlString(st.fallback)}`)
      })
    } else w.line(lb)
    w.block("timeouts", () => {
      for (const k of ["connect", "request", "read", "write"] as const) w.line(`${k} ${secs(u.timeouts[k])}`)
    })
    const p = u.connectionPool
    w.block("connection-pool", () => {
      w.line(`max-connections ${p.maxConnections}`)
      w.line(`max-idle ${p.maxIdle}`)
      w.line(`idle-timeout ${secs(p.idleTimeout)}`)
      if (p.maxLifetime !== undefined) w.line(`max-lifetime ${secs(p.maxLifetime)}`)
      w.line(`max-pending-requests ${p.maxPendingRequests}`)
      w.line(`pending-timeout ${secs(p.pendingTimeout)}`)
      w.line(`max-client-share ${p.maxClientShare}`)
    })
    const h = u.healthCheck
    if (h !== undefined) {
      w.block("health-check", () => {
        const t = h.type
        if (t.kind === "tcp") w.line(`type "tcp"`)
        else {
          w.block(`type "http"`, () => {
            w.line(`path ${kdlString(t.path)}`)
            w.line(`expected-status ${t.expectedStatus.join(" ")}`)
            if (t.host !== undefined) w.line(`host ${kdlString(t.host)}`)
          })
        }
        w.line(`interval-secs ${msSecs(h.intervalMs)}`)
        w.line(`timeout-secs ${msSecs(h.timeoutMs)}`)
        w.line(`healthy-threshold ${h.healthyThreshold}`)
        w.line(`unhealthy-threshold ${h.unhealthyThreshold}`)
      })
    }
    const ph = u.passiveHealth
    w.block("passive-health", () => {
      w.line(`window-size ${ph.windowSize}`)
      w.line(`failure-ratio ${ph.failureRatio}`)
      w.line(`min-requests ${ph.minRequests}`)
      w.line(`cooldown-secs ${msSecs(ph.cooldownMs)}`)
    })
    circuitBreaker(w, u.circuitBreaker)
    w.block("retry-budget", () => {
      w.line(`ratio ${u.retryBudget.ratio}`)
      w.line(`min-per-second ${u.retryBudget.minPerSecond}`)
      w.line(`max-balance ${u.retryBudget.maxBalance}`)
    })
    const tls = u.tls
    if (tls !== undefined) {
      w.block("tls", () => {
        if (tls.sni !== undefined) w.line(`sni ${kdlString(tls.sni)}`)
        if (tls.caCert !== undefined) w.line(`ca-cert ${kdlString(tls.caCert)}`)
        if (tls.clientCert !== undefined) w.line(`client-cert ${kdlString(tls.clientCert)}`)
        if (tls.clientKey !== undefined) w.line(`client-key ${kdlString(tls.clientKey)}`)
        w.line(`insecure-skip-verify ${bool(tls.insecureSkipVerify)}`)
      })
    }
    const hv = u.httpVersion
    w.block("http-version", () => {
      w.line(`min-version ${hv.minVersion}`)
      w.line(`max-version ${hv.maxVersion}`)
      w.line(`h2-ping-interval ${secs(hv.h2PingInterval)}`)
      w.line(`max-h2-streams ${hv.maxH2Streams}`)
    })
  })
