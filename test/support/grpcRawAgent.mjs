#!/usr/bin/env node
// A gRPC agent written directly against proto/*.proto with @grpc/grpc-js and
// @grpc/proto-loader (no import from src/, not the SDK): the independent proof
// that the proxy's gRPC transport speaks Sentinel's AgentServiceV2. It reports
// what it sees as JSON lines on stdout, so tests wait on events, not sleeps.
//
// Usage: node grpcRawAgent.mjs [--address HOST:PORT] [--package zentinel|sentinel]
//          [--mode MODE] [--delay MS] [--status N] [--id NAME]
//          [--tls-cert F --tls-key F [--client-ca F]] [--no-initial-metadata]
// MODE: allow | block | redirect | challenge | add-header | late:MS | no-answer |
//       reject-handshake | garbage-header | stream-body
//   ("late:250" = allow after 250 ms; --delay N delays every answer;
//   "stream-body" = on request body chunks: needs_more until the chunk containing
//   "EVIL" (block 403) or the last chunk (allow)).
// A request header `x-raw-mode: MODE` overrides the mode for that request.
// Lines: {"event":"listening","port":N} {"event":"stream"} {"event":"handshake",...}
// {"event":"event","kind":"request_headers","correlation_id":...,"inflight":n}
// {"event":"cancel",...} {"event":"configure",...} {"event":"end"}
import path from "node:path"
import fs from "node:fs"
import os from "node:os"
import { fileURLToPath } from "node:url"
import * as grpc from "@grpc/grpc-js"
import * as protoLoader from "@grpc/proto-loader"

const args = process.argv.slice(2)
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback
}
const flag = (name) => args.includes(`--${name}`)
const address = opt("address", "127.0.0.1:0")
const pkg = opt("package", "zentinel")
const defaultMode = opt("mode", "allow")
const defaultDelay = Number(opt("delay", "0"))
const blockStatus = Number(opt("status", "403"))
const agentId = opt("id", "grpc-raw-agent")

const log = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")

const here = path.dirname(fileURLToPath(import.meta.url))
// one file is shipped (zentinel.agent.v2); an agent of the original package changes its package line
const shipped = path.resolve(here, "../../proto/zentinel_agent_v2.proto")
const file = pkg === "zentinel" ? shipped : path.join(fs.mkdtempSync(path.join(os.tmpdir(), "grpc-raw-agent-")), `${pkg}_agent_v2.proto`)
if (file !== shipped) fs.writeFileSync(file, fs.readFileSync(shipped, "utf8").replace("package zentinel.agent.v2;", `package ${pkg}.agent.v2;`))
const def = protoLoader.loadSync(file, { keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true })
const service = grpc.loadPackageDefinition(def)[pkg].agent.v2.AgentServiceV2.service

let inflight = 0

const modeOf = (m) => {
  const [name, arg] = String(m).split(":")
  return { name, delay: arg !== undefined ? Number(arg) : defaultDelay }
}

const answerFor = (cid, mode, kind, ev) => {
  const base = { correlation_id: cid, audit: { tags: ["grpc-raw"], rule_ids: [], reason_codes: [], custom: { agent: agentId } } }
  if (kind === "request_body_chunk" && mode.name === "stream-body") {
    const text = Buffer.from(ev.data ?? []).toString("latin1")
    if (text.includes("EVIL")) {
      return { ...base, block: { status: 403, body: `early block at chunk ${ev.chunk_index ?? 0}` }, audit: { ...base.audit, rule_ids: ["stream-evil"] } }
    }
    return { ...base, allow: {}, needs_more: ev.is_last !== true }
  }
  switch (mode.name) {
    case "block":
      return {
        ...base,
        block: { status: blockStatus, body: "blocked by grpcRawAgent", headers: [{ name: "x-blocked-by", value: agentId }] },
        audit: { tags: ["grpc-raw", "blocked"], rule_ids: ["942100"], reason_codes: ["SQLI"], confidence: 0.5, custom: { agent: agentId } }
      }
    case "redirect":
      return { ...base, redirect: { url: "https://example.test/login", status: 302 } }
    case "challenge":
      return { ...base, challenge: { challenge_type: "captcha", params: { site: "k" } } }
    case "add-header":
      return {
        ...base,
        allow: {},
        request_headers: [{ set: { name: "x-grpc-agent", value: "seen" } }, { add: { name: "x-grpc-added", value: "1" } }, { remove: "x-remove-me" }],
        response_headers: [{ set: { name: "x-grpc-agent-response", value: "seen" } }],
        audit: { tags: ["grpc-raw", "mutated"], rule_ids: ["r-1"], reason_codes: [], custom: { agent: agentId } }
      }
    case "garbage-header":
      return { ...base, allow: {}, request_headers: [{ set: { name: "bad header\r\n", value: "x" } }] }
    default:
      return { ...base, allow: {} }
  }
}

const kinds = ["request_headers", "request_body_chunk", "response_headers", "response_body_chunk", "request_complete", "websocket_frame", "guardrail"]

const processStream = (call) => {
  log({ event: "stream" })
  // tonic and grpc-go agents send their initial metadata at once; so does grpc-js on the first write
  if (!flag("no-initial-metadata")) call.sendMetadata(new grpc.Metadata())
  let handshaken = false
  const timers = new Set()
  call.on("data", (m) => {
    if (m.handshake) {
      log({ event: "handshake", versions: m.handshake.supported_versions, proxy_id: m.handshake.proxy_id, config_json: m.handshake.config_json })
      if (defaultMode === "reject-handshake") {
        call.write({ handshake: { protocol_version: 2, success: false, error: "go away" } })
        call.end()
        return
      }
      handshaken = true
      call.write({
        handshake: {
          protocol_version: 2,
          success: true,
          capabilities: {
            protocol_version: 2,
            agent_id: agentId,
            name: "grpc-raw-agent",
            version: "1.0.0",
            supported_events: [1, 2, 3, 4],
            features: { config_push: true, cancellation: true, concurrent_requests: 100 },
            limits: { max_body_size: 10485760, max_concurrency: 100, preferred_chunk_size: 65536 }
          }
        }
      })
      return
    }
    if (!handshaken) return
    if (m.cancel) return log({ event: "cancel", correlation_id: m.cancel.correlation_id, reason: m.cancel.reason })
    if (m.configure) return log({ event: "configure", config_json: m.configure.config_json, is_initial: m.configure.is_initial === true })
    if (m.ping) return call.write({ pong: { sequence: m.ping.sequence, ping_timestamp_ms: m.ping.timestamp_ms, timestamp_ms: Date.now() } })
    const kind = kinds.find((k) => m[k] !== undefined)
    if (kind === undefined) return
    const ev = m[kind]
    const cid = kind === "request_headers" ? ev.metadata?.correlation_id : ev.correlation_id
    let mode = modeOf(defaultMode)
    if (kind === "request_headers") {
      const h = (ev.headers ?? []).find((x) => x.name === "x-raw-mode")
      if (h) mode = modeOf(h.value)
    }
    inflight++
    log({
      event: "event",
      kind,
      correlation_id: cid,
      inflight,
      ...(kind === "request_headers" ? { method: ev.method, uri: ev.uri, headers: ev.headers, metadata: ev.metadata } : {}),
      ...(kind.endsWith("body_chunk") ? { chunk_index: ev.chunk_index ?? 0, is_last: ev.is_last === true, size: (ev.data ?? []).length } : {})
    })
    if (mode.name === "no-answer") {
      inflight--
      return
    }
    const answer = () => {
      inflight--
      try {
        call.write({ response: answerFor(cid, mode, kind, ev) })
      } catch {
        // stream gone
      }
    }
    if (mode.delay > 0) {
      const t = setTimeout(() => {
        timers.delete(t)
        answer()
      }, mode.delay)
      timers.add(t)
    } else answer()
  })
  const end = () => {
    for (const t of timers) clearTimeout(t)
    timers.clear()
    log({ event: "end" })
  }
  call.on("end", () => {
    end()
    call.end()
  })
  call.on("cancelled", end)
  call.on("error", () => {})
}

const creds = () => {
  const cert = opt("tls-cert", undefined)
  if (cert === undefined) return grpc.ServerCredentials.createInsecure()
  const ca = opt("client-ca", undefined)
  return grpc.ServerCredentials.createSsl(
    ca === undefined ? null : fs.readFileSync(ca),
    [{ private_key: fs.readFileSync(opt("tls-key", "")), cert_chain: fs.readFileSync(cert) }],
    ca !== undefined
  )
}

const server = new grpc.Server({ "grpc.max_receive_message_length": 10 * 1024 * 1024 })
server.addService(service, { ProcessStream: processStream })
server.bindAsync(address, creds(), (err, port) => {
  if (err) {
    process.stderr.write(`grpcRawAgent: ${err.message}\n`)
    process.exit(1)
  }
  log({ event: "listening", port })
})
const stop = () => server.tryShutdown(() => process.exit(0))
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
