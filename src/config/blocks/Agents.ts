/**
 * `agents { agent "<id>" [type="waf"] { unix-socket "..."; ... } }`: external
 * processors over Unix sockets. The free-form `config { ... }` block becomes
 * JSON: a node with children is an object, one argument a value, several
 * arguments an array, properties only an object.
 */
import type { Node, Primitive } from "@bgotink/kdl"
import { type AgentGrpcSettings as AgentGrpcConfig, GRPC_MAX_BODY_BYTES, normaliseEvent } from "../AgentSchema.js"
import type { AgentConfig } from "../Schema.js"
import { type BlockSpec, block, children, compact, custom, decodeBlock, list, scalar, shape } from "../KdlDecoder.js"
import type { Cx } from "../KdlContext.js"
import { type Val, bool, bytes, count, ident, millis, nonEmpty, oneOf, positive, positiveMs, str } from "../KdlValues.js"
import { circuitBreakerSpec } from "./Resilience.js"
import { hint } from "../ConfigIssue.js"

/** sun_path is 108 bytes on Linux (104 on macOS) including the terminating NUL. */
const maxSocketPath = 103

const socketPath = (v: Primitive, at: Parameters<Val<string>>[1], cx: Cx, what: string): string | undefined => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  if (Buffer.byteLength(s) > maxSocketPath) return cx.error(at, `${what} is too long for a Unix socket (at most ${maxSocketPath} bytes)`)
  return s.includes("\0") ? cx.error(at, `${what} must not contain NUL`) : s
}

/** `unix-socket "/path"` or `unix-socket path="/path"`. */
const unixSocketField = custom("unix-socket", (node, cx) => {
  const prop = node.getPropertyEntry("path")
  if (prop !== undefined) {
    if (!shape(node, cx, { args: [0, 0], props: ["path"] })) return undefined
    return socketPath(prop.getValue(), prop, cx, "`unix-socket` path")
  }
  if (!shape(node, cx, { args: [1, 1], props: ["path"] })) return undefined
  const e = node.getArgumentEntry(0)!
  return socketPath(e.getValue(), e, cx, "`unix-socket`")
})

// --- grpc ---------------------------------------------------------------------------

/** `http(s)://host:port`, nothing else (no path, query, credentials). */
const grpcAddress: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  let u: URL
  try {
    u = new URL(s)
  } catch {
    return cx.error(at, `${what} must be a URL like "http://127.0.0.1:50051", got ${JSON.stringify(s)}`)
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    return cx.error(at, `${what} must start with http:// (plaintext) or https:// (TLS), got ${JSON.stringify(s)}`)
  }
  if (u.hostname === "" || !/^https?:\/\/(\[[^\]]+\]|[^/:@]+):\d+\/?$/i.test(s)) {
    return cx.error(at, `${what} must name a host and a port ("http://host:port"), got ${JSON.stringify(s)}`)
  }
  if (u.username !== "" || u.password !== "" || (u.pathname !== "/" && u.pathname !== "") || u.search !== "" || u.hash !== "") {
    return cx.error(at, `${what} must be only scheme, host and port ("http://host:port"), got ${JSON.stringify(s)}`)
  }
  // as written (URL would drop a default port): scheme lower-cased, no trailing slash
  return `${u.protocol}//${s.slice(s.indexOf("//") + 2).replace(/\/$/, "")}`
}

/** A flag: `tls` alone, or `tls #true` / `tls #false`. */
const flagNode = (node: Node, cx: Cx): boolean | undefined => {
  if (!shape(node, cx, { args: [0, 1] })) return undefined
  const e = node.getArgumentEntry(0)
  return e === undefined ? true : bool(e.getValue(), e, cx, `\`${node.getName()}\``)
}

const pemPath: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  return s !== undefined && s.includes("\0") ? cx.error(at, `${what} must not contain NUL`) : s
}

interface GrpcFields {
  readonly address: string
  readonly tls: boolean
  readonly tlsInsecure: boolean
  readonly caCert: string
  readonly clientCert: string
  readonly clientKey: string
}

export const grpcSpec: BlockSpec<GrpcFields> = {
  path: "agents.agent.grpc",
  fields: {
    address: scalar("address", grpcAddress),
    tls: custom("tls", flagNode),
    tlsInsecure: custom("tls-insecure", flagNode),
    caCert: scalar("ca-cert", pemPath),
    clientCert: scalar("client-cert", pemPath),
    clientKey: scalar("client-key", pemPath)
  }
}

/**
 * `grpc "http://host:port"`, `grpc address="..."` or `grpc { address "..." }`, with TLS
 * settings as children: `tls` (on; also implied by https:// or any other TLS key),
 * `tls-insecure` (no verification of the agent's certificate), `ca-cert`, `client-cert`
 * and `client-key` (mTLS; both or neither).
 */
const grpcField = custom("grpc", (node, cx): AgentGrpcConfig | undefined => {
  if (!shape(node, cx, { args: [0, 1], props: ["address"], children: true })) return undefined
  const arg = node.getArgumentEntry(0)
  const prop = node.getPropertyEntry("address")
  const f = decodeBlock(node, cx, grpcSpec).fields
  const given = [arg, prop].filter((e) => e !== undefined).length + (node.children?.nodes.some((n) => n.getName() === "address") ? 1 : 0)
  if (given > 1) return cx.error(node, "`grpc` has its address more than once; write it once (`grpc \"http://host:port\"`)")
  let address: string | undefined
  if (arg !== undefined) address = grpcAddress(arg.getValue(), arg, cx, "`grpc` address")
  else if (prop !== undefined) address = grpcAddress(prop.getValue(), prop, cx, "`grpc` address")
  else if (f.address !== undefined) address = f.address
  else if (given === 0) return cx.error(node, "`grpc` needs an address: `grpc \"http://host:port\"` or `grpc address=\"http://host:port\"`")
  if (address === undefined) return undefined
  if ((f.clientCert === undefined) !== (f.clientKey === undefined)) {
    return cx.error(node, "`grpc`: `client-cert` and `client-key` go together (mTLS needs both)")
  }
  if (f.tls === false && (f.tlsInsecure === true || f.caCert !== undefined || f.clientCert !== undefined || address.startsWith("https:"))) {
    return cx.error(node, "`grpc`: `tls #false` contradicts the other TLS settings (or the https:// address)")
  }
  const wantsTls = f.tls === true || f.tlsInsecure === true || f.caCert !== undefined || f.clientCert !== undefined
  if (!wantsTls) return { address }
  return {
    address,
    tls: compact({ insecure: f.tlsInsecure === true, caCert: f.caCert, clientCert: f.clientCert, clientKey: f.clientKey })
  }
}, { nested: grpcSpec })

const event: Val<AgentConfig["events"][number]> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return normaliseEvent(s) ?? cx.error(at,
    `${what} ${JSON.stringify(s)} is not an agent event; use request_headers, request_body, response_headers, response_body, request_complete (log), websocket_frame or guardrail`)
}

// --- config { ... } -> JSON ---------------------------------------------------------

const maxJsonDepth = 16

const jsonOf = (node: Node, cx: Cx, depth: number): unknown => {
  const args = node.getArgumentEntries()
  const props = node.getPropertyEntries()
  const name = node.getName()
  if (node.getTag() !== null || node.entries.some((e) => e.getTag() !== null)) {
    return cx.error(node, `type annotations are not supported in agent \`config\` (at \`${name}\`)`)
  }
  if (node.children !== null) {
    if (args.length > 0 || props.length > 0) return cx.error(node, `\`${name}\` has both values and a { ... } block; use one`)
    return objectOf(children(node), cx, depth + 1)
  }
  if (props.length > 0) {
    if (args.length > 0) return cx.error(node, `\`${name}\` has both arguments and properties; use one`)
    // entries, not assignment: a key like "__proto__" must stay plain data
    const out = new Map<string, unknown>()
    for (const p of props) {
      const k = p.getName() ?? ""
      if (out.has(k)) return cx.error(p, `duplicate key \`${k}\` in agent \`config\``)
      out.set(k, p.getValue())
    }
    return Object.fromEntries(out)
  }
  if (args.length === 0) return cx.error(node, `\`${name}\` needs a value (or a { ... } block)`)
  for (const a of args) {
    const v = a.getValue()
    if (typeof v === "number" && Number.isInteger(v) && !Number.isSafeInteger(v)) {
      return cx.error(a, `\`${name}\` is too large (integers must be below 2^53)`)
    }
  }
  return args.length === 1 ? args[0].getValue() : args.map((a) => a.getValue())
}

const objectOf = (nodes: ReadonlyArray<Node>, cx: Cx, depth: number): Record<string, unknown> | undefined => {
  if (depth > maxJsonDepth) return cx.error(nodes[0], `agent \`config\` is nested too deeply (more than ${maxJsonDepth} levels)`)
  const out = new Map<string, unknown>()
  let ok = true
  for (const n of nodes) {
    const k = n.getName()
    if (out.has(k)) {
      ok = cx.error(n, `duplicate key \`${k}\` in agent \`config\``) ?? false
      continue
    }
    const v = jsonOf(n, cx, depth)
    if (v === undefined) ok = false
    else out.set(k, v)
  }
  return ok ? Object.fromEntries(out) : undefined
}

const configField = custom("config", (node, cx) => {
  if (!shape(node, cx, { args: [0, 0], children: true })) return undefined
  if (node.children === null) return cx.error(node, "`config` needs a { ... } block")
  return objectOf(children(node), cx, 1)
})

// --- agent ---------------------------------------------------------------------------

/**
 * `protocol-version`: this build speaks agent protocol v2 only (Sentinel ignores the key, with a
 * deprecation warning, since all its agents use v2). `2`, `"2"` and `"v2"` are accepted; any
 * other version is refused, since an agent written for it would not understand us.
 */
const protocolVersion: Val<2> = (v, at, cx, what) => {
  if (v === 2 || (typeof v === "string" && /^\s*v?2\s*$/i.test(v))) return 2
  const shown = typeof v === "string" ? JSON.stringify(v) : String(v)
  return cx.error(at, `${what} ${shown} is not supported: this proxy speaks agent protocol v2 only (write \`protocol-version 2\` or leave it out)`)
}

/**
 * `request-body-mode` / `response-body-mode`: "buffer" (the body held up to the agent's cap, then
 * sent whole) or "stream" (each chunk as it arrives; the agent may decide before the end).
 * Sentinel's "hybrid" (buffer up to a threshold, then stream) is not supported yet.
 */
const bodyMode: Val<"buffer" | "stream"> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  const n = s.trim().toLowerCase()
  if (n === "buffer" || n === "stream") return n
  if (n === "hybrid" || n.startsWith("hybrid:")) {
    return cx.error(at, `${what} ${JSON.stringify(s)} is not supported yet (use "buffer" or "stream")`)
  }
  return cx.error(at, `${what} must be "buffer" or "stream", got ${JSON.stringify(s)}${hint(n, ["buffer", "stream", "hybrid"])}`)
}

const agentType: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  return /^[A-Za-z0-9_.-]{1,64}$/.test(s) ? s : cx.error(at, `${what} must be a short label (letters, digits, "-", "_", "."), got ${JSON.stringify(s)}`)
}

type AgentFields = Omit<AgentConfig, "id" | "type"> & {
  /** `type "waf"` as a child node (also accepted as the `type=` property). */
  readonly type: string
  /** Checked only (always 2 here). */
  readonly protocolVersion: 2
}

export const agentSpec: BlockSpec<AgentFields> = {
  path: "agents.agent",
  fields: {
    type: scalar("type", agentType),
    protocolVersion: scalar("protocol-version", protocolVersion),
    requestBodyMode: scalar("request-body-mode", bodyMode),
    responseBodyMode: scalar("response-body-mode", bodyMode),
    chunkTimeoutMs: scalar("chunk-timeout-ms", positiveMs(1)),
    socketPath: unixSocketField,
    grpc: grpcField,
    events: list("events", event),
    timeoutMs: scalar("timeout-ms", positiveMs(1)),
    failureMode: scalar("failure-mode", oneOf(["open", "closed"] as const, {
      aliases: { "fail-open": "open", fail_open: "open", "fail-closed": "closed", fail_closed: "closed" }
    })),
    maxConcurrentCalls: scalar("max-concurrent-calls", positive),
    maxQueuedCalls: scalar("max-queued-calls", count),
    circuitBreaker: block("circuit-breaker", circuitBreakerSpec("agents.agent.circuit-breaker")),
    maxRequestBodyBytes: scalar(["max-request-body-bytes", "max-request-body-size"], bytes),
    maxResponseBodyBytes: scalar(["max-response-body-bytes", "max-response-body-size"], bytes),
    poolSize: scalar("pool-size", (v, at, cx, what) => {
      const n = positive(v, at, cx, what)
      return n !== undefined && n > 64 ? cx.error(at, `${what} must be at most 64, got ${n}`) : n
    }),
    config: configField,
    connectTimeoutMs: scalar("connect-timeout-ms", positiveMs(1)),
    pingIntervalMs: scalar("ping-interval-ms", millis),
    reconnectBaseMs: scalar("reconnect-base-ms", positiveMs(1)),
    reconnectMaxMs: scalar("reconnect-max-ms", positiveMs(1))
  }
}

/**
 * What a gRPC agent cannot be configured for, because Sentinel's gRPC messages have no place
 * for its answer: WebSocket frames (no WebSocket decision), guardrail inspection (no routing
 * metadata, and the event has no JSON form), and bodies larger than one 10 MiB message.
 */
const grpcCarries = (node: Node, id: string, f: Partial<AgentFields>, cx: Cx): boolean => {
  let ok = true
  for (const e of f.events ?? []) {
    if (e === "websocket_frame" || e === "guardrail") {
      ok = cx.error(node, `agent "${id}": a gRPC agent cannot receive \`${e}\` events (the gRPC protocol has no ${
        e === "websocket_frame" ? "WebSocket decision" : "routing metadata for the guardrail result"
      }); use a \`unix-socket\` agent for it`) ?? false
    }
  }
  for (const [key, name] of [["maxRequestBodyBytes", "max-request-body-bytes"], ["maxResponseBodyBytes", "max-response-body-bytes"]] as const) {
    const n = f[key]
    if (n !== undefined && n > GRPC_MAX_BODY_BYTES) {
      ok = cx.error(node, `agent "${id}": \`${name}\` ${n} is more than a gRPC agent can be sent in one message (at most ${GRPC_MAX_BODY_BYTES} bytes)`) ?? false
    }
  }
  return ok
}

/** `agent "<id>" [type="waf"] { ... }` (like `entity`, plus the `type` property; `type "waf"` may also be a child). */
export const agentField = custom("agent", (node, cx): unknown => {
  if (!shape(node, cx, { args: [1, 1], props: ["type"], children: true })) return undefined
  const e = node.getArgumentEntry(0)!
  const id = ident(e.getValue(), e, cx, "agent id")
  if (id === undefined) return undefined
  cx.define("agent", id, e)
  const t = node.getPropertyEntry("type")
  const type = t === undefined ? undefined : agentType(t.getValue(), t, cx, "agent `type`")
  if (node.children === null) return cx.error(node, `agent "${id}" needs a { ... } block`)
  const outer = cx.owner
  cx.owner = `agent "${id}"`
  try {
    const { type: childType, protocolVersion: _v, ...f } = decodeBlock(node, cx, agentSpec).fields
    const typeChild = node.children.nodes.find((n) => n.getName() === "type")
    if (t !== undefined && typeChild !== undefined) {
      return cx.error(typeChild, `agent "${id}" has \`type\` both as a property and as a child; write it once`)
    }
    const written = (n: string) => node.children!.nodes.some((c) => c.getName() === n)
    if (written("unix-socket") && written("grpc")) {
      return cx.error(node, `agent "${id}" has both \`unix-socket\` and \`grpc\`; an agent has exactly one transport`)
    }
    if (f.socketPath === undefined && f.grpc === undefined) {
      if (!written("unix-socket") && !written("grpc")) {
        cx.error(node, `agent "${id}" needs a transport: \`unix-socket "/path/to/agent.sock"\` or \`grpc "http://host:port"\``)
      }
      return undefined
    }
    if (f.grpc !== undefined && !grpcCarries(node, id, f, cx)) return undefined
    if ((t !== undefined && type === undefined) || (typeChild !== undefined && childType === undefined)) return undefined
    const base = f.reconnectBaseMs ?? 100
    const max = f.reconnectMaxMs ?? 5000
    if (max < base) return cx.error(node, `agent "${id}": \`reconnect-max-ms\` (${max}) must not be less than \`reconnect-base-ms\` (${base})`)
    return compact({ id, type: type ?? childType, ...f })
  } finally {
    cx.owner = outer
  }
}, { many: true, nested: agentSpec })

export const agentsSpec: BlockSpec<{ agent: ReadonlyArray<AgentConfig> }> = {
  path: "agents",
  fields: { agent: agentField as never }
}

export const agentsField = block("agents", agentsSpec, (f) => f.agent ?? [])
