/** `agents { agent "id" { ... } }` as KDL (the reverse of blocks/Agents.ts). */
import type { AgentConfig } from "../Schema.js"
import { circuitBreaker } from "./Resilience.js"
import { bool, kdlString, strings, type Writer } from "./Writer.js"

/** A JSON value as the body of a `config { ... }` node (the decoder's mapping, reversed). */
const jsonNode = (w: Writer, name: string, v: unknown): void => {
  const n = kdlString(name)
  const prim = (x: unknown): string =>
    x === null ? "#null" : typeof x === "string" ? kdlString(x) : typeof x === "boolean" ? bool(x) : String(x)
  if (Array.isArray(v)) w.line(`${n} ${v.map(prim).join(" ")}`)
  else if (v !== null && typeof v === "object") w.block(n, () => Object.entries(v).forEach(([k, x]) => jsonNode(w, k, x)))
  else w.line(`${n} ${prim(v)}`)
}

export const agent = (w: Writer, a: AgentConfig): void =>
  w.block(`agent ${kdlString(a.id)}${a.type === undefined ? "" : ` type=${kdlString(a.type)}`}`, () => {
    if (a.socketPath !== undefined) w.line(`unix-socket ${kdlString(a.socketPath)}`)
    const g = a.grpc
    if (g !== undefined) {
      if (g.tls === undefined) w.line(`grpc ${kdlString(g.address)}`)
      else {
        const tls = g.tls
        w.block(`grpc address=${kdlString(g.address)}`, () => {
          w.line("tls")
          if (tls.insecure) w.line("tls-insecure")
          if (tls.caCert !== undefined) w.line(`ca-cert ${kdlString(tls.caCert)}`)
          if (tls.clientCert !== undefined) w.line(`client-cert ${kdlString(tls.clientCert)}`)
          if (tls.clientKey !== undefined) w.line(`client-key ${kdlString(tls.clientKey)}`)
        })
      }
    }
    w.line(`events ${strings(a.events)}`)
    w.line(`timeout-ms ${a.timeoutMs}`)
    w.line(`failure-mode ${kdlString(a.failureMode)}`)
    w.line(`max-concurrent-calls ${a.maxConcurrentCalls}`)
    w.line(`max-queued-calls ${a.maxQueuedCalls}`)
    circuitBreaker(w, a.circuitBreaker)
    w.line(`max-request-body-bytes ${a.maxRequestBodyBytes}`)
    w.line(`max-response-body-bytes ${a.maxResponseBodyBytes}`)
    w.line(`request-body-mode ${kdlString(a.requestBodyMode)}`)
    w.line(`response-body-mode ${kdlString(a.responseBodyMode)}`)
    w.line(`chunk-timeout-ms ${a.chunkTimeoutMs}`)
    w.line(`pool-size ${a.poolSize}`)
    const cfg = a.config
    if (cfg !== null && typeof cfg === "object" && !Array.isArray(cfg)) {
      w.block("config", () => Object.entries(cfg).forEach(([k, v]) => jsonNode(w, k, v)))
    }
    w.line(`connect-timeout-ms ${a.connectTimeoutMs}`)
    w.line(`ping-interval-ms ${a.pingIntervalMs}`)
    w.line(`reconnect-base-ms ${a.reconnectBaseMs}`)
    w.line(`reconnect-max-ms ${a.reconnectMaxMs}`)
  })
