#!/usr/bin/env node
// An agent that speaks Sentinel's v2 UDS framing with node:net and Buffer only
// (no import from src/): the independent proof that the proxy's codec is wire
// compatible. It reports what it sees as JSON lines on stdout, so tests can
// wait on events instead of sleeping.
//
// Usage: node rawAgent.mjs --socket PATH [--mode MODE] [--delay MS] [--status N]
//                          [--header name=value] [--garbage KIND] [--id NAME]
// MODE: allow | block | garbage | late | no-correlation | crash-after-N |
//       add-header | redirect | challenge | replace-body | reject-handshake |
//       silent-handshake
//       ("late:250" = allow after 250 ms, "block:250" = block after 250 ms,
//       --delay N delays every answer; "garbage:KIND" with KIND bad-json |
//       unknown-type | oversize | zero-length | malformed). Env RAW_AGENT_MODE etc. work too.
// A request header `x-raw-mode: MODE` in a RequestHeaders event overrides the
// mode for that one request. A WebSocketFrame event answers by its payload's text:
// "drop..." -> websocket_decision drop, "close..." -> close 4000, "block..." ->
// a plain block (no websocket_decision), "hang..." -> never answers, else allow.
// Lines printed: {"event":"listening"} {"event":"connection"} {"event":"handshake",...}
// {"event":"frame","type":16,"correlation_id":...,"inflight":n} {"event":"cancel",...}
// {"event":"ping"} {"event":"answer",...} {"event":"close"}
import net from "node:net"
import fs from "node:fs"

const args = process.argv.slice(2)
const opt = (name, env, fallback) => {
  const i = args.indexOf(`--${name}`)
  if (i >= 0 && i + 1 < args.length) return args[i + 1]
  return process.env[env] ?? fallback
}
const socketPath = opt("socket", "RAW_AGENT_SOCKET", undefined)
if (!socketPath) {
  process.stderr.write("rawAgent: --socket PATH is required\n")
  process.exit(2)
}
const defaultMode = opt("mode", "RAW_AGENT_MODE", "allow")
const defaultDelay = Number(opt("delay", "RAW_AGENT_DELAY", "0"))
const blockStatus = Number(opt("status", "RAW_AGENT_STATUS", "403"))
const headerArg = opt("header", "RAW_AGENT_HEADER", "x-raw-agent=seen")
const garbageKind = opt("garbage", "RAW_AGENT_GARBAGE", "bad-json")
const agentId = opt("id", "RAW_AGENT_ID", "raw-agent")

const log = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")

const frame = (type, obj) => {
  const json = Buffer.from(JSON.stringify(obj), "utf8")
  const head = Buffer.alloc(5)
  head.writeUInt32BE(json.length + 1, 0)
  head[4] = type
  return Buffer.concat([head, json])
}

let answered = 0
let inflight = 0

const parseMode = (mode) => {
  const [name, arg] = String(mode).split(":")
  const crash = /^crash-after-(\d+)$/.exec(name)
  if (crash) return { name: "crash-after", n: Number(crash[1]) }
  if (name === "garbage") return { name, kind: arg ?? garbageKind }
  return { name, delay: arg !== undefined ? Number(arg) : defaultDelay }
}

const answerFor = (mode, cid) => {
  const audit = { tags: ["raw"], rule_ids: [], reason_codes: [], custom: { correlation_id: cid } }
  switch (mode.name) {
    case "block":
      return {
        version: 2,
        decision: { block: { status: blockStatus, body: "blocked by rawAgent", headers: { "x-blocked-by": agentId } } },
        audit: { ...audit, rule_ids: ["942100"], reason_codes: ["SQLI"] }
      }
    case "redirect":
      return { version: 2, decision: { redirect: { url: "https://login.example/", status: 302 } }, audit }
    case "challenge":
      return { version: 2, decision: { challenge: { challenge_type: "captcha", params: { site: "k" } } }, audit }
    case "add-header": {
      const [name, value] = headerArg.split("=")
      return {
        version: 2,
        decision: "allow",
        request_headers: [{ set: { name, value: value ?? "" } }, { remove: { name: "x-remove-me" } }],
        response_headers: [{ add: { name: `${name}-response`, value: value ?? "" } }],
        audit
      }
    }
    case "replace-body": {
      const mutation = { data: Buffer.from("replaced by rawAgent").toString("base64"), chunk_index: 0 }
      return { version: 2, decision: "allow", request_body_mutation: mutation, response_body_mutation: mutation, audit }
    }
    case "no-correlation":
      return { version: 2, decision: "allow", audit: { tags: [], rule_ids: [], reason_codes: [], custom: {} } }
    default:
      return { version: 2, decision: "allow", audit }
  }
}

const garbage = (kind, cid) => {
  switch (kind) {
    case "unknown-type": {
      const b = frame(0x20, { x: 1 })
      b[4] = 0x99
      return b
    }
    case "oversize": {
      const b = Buffer.alloc(5)
      b.writeUInt32BE(16 * 1024 * 1024 + 1, 0)
      b[4] = 0x20
      return b
    }
    case "zero-length":
      return Buffer.alloc(4)
    case "malformed":
      // well framed, well formed JSON, carries the id, but the decision is not one
      return frame(0x20, { version: 2, decision: "maybe", audit: { custom: { correlation_id: cid } } })
    default: {
      const text = Buffer.from("this is not json", "utf8")
      const head = Buffer.alloc(5)
      head.writeUInt32BE(text.length + 1, 0)
      head[4] = 0x20
      return Buffer.concat([head, text])
    }
  }
}

const wsAnswer = (payload, cid) => {
  const text = Buffer.from(payload.data ?? "", "base64").toString("utf8")
  const audit = { tags: ["raw"], rule_ids: [], reason_codes: [], custom: { correlation_id: cid } }
  if (text.startsWith("hang")) return undefined
  if (text.startsWith("drop")) return { version: 2, decision: "allow", websocket_decision: "drop", audit }
  if (text.startsWith("close")) return { version: 2, decision: "allow", websocket_decision: { close: { code: 4000, reason: "agent says no" } }, audit }
  if (text.startsWith("block")) return { version: 2, decision: { block: { status: 403 } }, audit }
  return { version: 2, decision: "allow", websocket_decision: "allow", audit }
}

const modeOf = (type, payload) => {
  if (type === 0x10 && payload.headers && payload.headers["x-raw-mode"]) return parseMode(payload.headers["x-raw-mode"][0])
  return parseMode(defaultMode)
}

if (fs.existsSync(socketPath)) fs.unlinkSync(socketPath)

const server = net.createServer((sock) => {
  log({ event: "connection" })
  let buf = Buffer.alloc(0)
  let handshaken = false
  const timers = new Map() // correlation id -> timer of a late answer

  const reply = (mode, cid) => {
    inflight--
    if (sock.destroyed) return
    if (mode.name === "garbage") {
      sock.write(garbage(mode.kind, cid))
      log({ event: "answer", correlation_id: cid, mode: "garbage" })
      return
    }
    sock.write(frame(0x20, answerFor(mode, cid)))
    answered++
    log({ event: "answer", correlation_id: cid, mode: mode.name })
  }

  const onFrame = (type, payload) => {
    if (!handshaken) {
      if (type !== 0x01) {
        log({ event: "error", message: `expected handshake, got ${type}` })
        sock.destroy()
        return
      }
      handshaken = true
      log({ event: "handshake", request: payload })
      const mode = parseMode(defaultMode)
      if (mode.name === "silent-handshake") return
      const ok = mode.name !== "reject-handshake"
      sock.write(
        frame(0x02, {
          protocol_version: 2,
          success: ok,
          error: ok ? null : "rejected by rawAgent",
          encoding: "json",
          capabilities: {
            agent_id: agentId,
            name: "rawAgent",
            version: "0.0.1",
            supported_events: [1, 2, 3, 4, 5],
            features: {
              streaming_body: false,
              websocket: false,
              guardrails: false,
              config_push: false,
              metrics_export: false,
              concurrent_requests: 100,
              cancellation: true,
              flow_control: false,
              health_reporting: false
            },
            limits: { max_body_size: 1048576, max_concurrency: 100, preferred_chunk_size: 65536 }
          }
        })
      )
      return
    }
    if (type === 0x41) {
      log({ event: "ping", sequence: payload.sequence })
      sock.write(frame(0x42, payload))
      return
    }
    if (type === 0x40) {
      const t = timers.get(payload.correlation_id)
      if (t) {
        clearTimeout(t)
        timers.delete(payload.correlation_id)
        inflight--
      }
      log({ event: "cancel", correlation_id: payload.correlation_id, reason: payload.reason })
      return
    }
    if (type === 0x15) {
      const cid = payload.correlation_id
      const text = Buffer.from(payload.data ?? "", "base64").toString("utf8")
      log({ event: "ws_frame", correlation_id: cid, opcode: payload.opcode, client_to_server: payload.client_to_server, frame_index: payload.frame_index, fin: payload.fin, route_id: payload.route_id, client_ip: payload.client_ip, text })
      const answer = wsAnswer(payload, cid)
      if (answer !== undefined) sock.write(frame(0x20, answer))
      return
    }
    if (type >= 0x10 && type <= 0x17) {
      const cid = payload.correlation_id
      inflight++
      log({ event: "frame", type, correlation_id: cid, inflight, payload })
      const mode = modeOf(type, payload)
      if (mode.name === "crash-after" && answered >= mode.n) {
        log({ event: "crash" })
        process.exit(1)
      }
      if (mode.delay > 0) {
        timers.set(
          cid,
          setTimeout(() => {
            timers.delete(cid)
            reply(mode, cid)
          }, mode.delay)
        )
        return
      }
      reply(mode, cid)
      return
    }
    log({ event: "unexpected", type })
  }

  sock.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk])
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0)
      if (len === 0 || len > 16 * 1024 * 1024) {
        log({ event: "error", message: `bad length ${len}` })
        sock.destroy()
        return
      }
      if (buf.length < 4 + len) return
      const type = buf[4]
      const body = buf.subarray(5, 4 + len)
      buf = buf.subarray(4 + len)
      let payload
      try {
        payload = JSON.parse(body.toString("utf8"))
      } catch {
        log({ event: "error", message: "bad json from proxy" })
        sock.destroy()
        return
      }
      onFrame(type, payload)
    }
  })
  sock.on("error", () => {})
  sock.on("close", () => {
    for (const t of timers.values()) clearTimeout(t)
    timers.clear()
    log({ event: "close" })
  })
})

server.listen(socketPath, () => log({ event: "listening", socket: socketPath, pid: process.pid }))
const stop = () => {
  server.close()
  try {
    fs.unlinkSync(socketPath)
  } catch {}
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
