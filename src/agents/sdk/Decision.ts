/**
 * Decision builders for agent authors: `allow()`, `block(...)`,
 * `redirect(...)`, `challenge(...)`, refined with immutable `with*` methods,
 * and turned into the wire `AgentResponse` by the server (which always
 * stamps the event's correlation id into `audit.custom.correlation_id`).
 *
 * Builders validate header names/values and statuses eagerly: a decision the
 * proxy would reject as malformed (and so treat as a failure) throws a
 * `TypeError` where the author wrote it, and the server turns that defect
 * into its configured safe answer.
 */
import type { AgentResponseWire, BodyMutation, Decision, HeaderOp, WebSocketDecision } from "../Protocol.js"
import { PROTOCOL_VERSION } from "../Protocol.js"

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const SAFE_VALUE = /^[^\r\n\0]*$/

const checkName = (name: string): string => {
  if (!TOKEN.test(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`)
  return name
}
const checkValue = (value: string): string => {
  if (!SAFE_VALUE.test(value)) throw new TypeError(`header value contains CR, LF or NUL: ${JSON.stringify(value)}`)
  return value
}
const checkStatus = (status: number, lo: number, hi: number): number => {
  if (!Number.isInteger(status) || status < lo || status > hi) throw new TypeError(`status ${status} outside ${lo}..${hi}`)
  return status
}

/** Audit fields an agent reports; appended to by `withAudit`. */
export interface AuditInput {
  readonly tags?: ReadonlyArray<string>
  readonly ruleIds?: ReadonlyArray<string>
  readonly reasonCodes?: ReadonlyArray<string>
  /** 0..1; the last one given wins. */
  readonly confidence?: number
  /** Free-form fields; `correlation_id` is always overwritten by the server. */
  readonly custom?: Readonly<Record<string, unknown>>
}

interface State {
  readonly decision: Decision
  readonly requestHeaders: ReadonlyArray<HeaderOp>
  readonly responseHeaders: ReadonlyArray<HeaderOp>
  readonly routingMetadata: Readonly<Record<string, string>>
  readonly tags: ReadonlyArray<string>
  readonly ruleIds: ReadonlyArray<string>
  readonly reasonCodes: ReadonlyArray<string>
  readonly confidence: number | undefined
  readonly custom: Readonly<Record<string, unknown>>
  readonly needsMore: boolean
  readonly requestBodyMutation: BodyMutation | null
  readonly responseBodyMutation: BodyMutation | null
  readonly websocketDecision: WebSocketDecision | null
}

/** One header edit as an author writes it; validated and turned into the wire `HeaderOp`. */
export type HeaderEdit =
  | { readonly op: "set"; readonly name: string; readonly value: string }
  | { readonly op: "add"; readonly name: string; readonly value: string }
  | { readonly op: "remove"; readonly name: string }

const toOp = (edit: HeaderEdit): HeaderOp => {
  switch (edit.op) {
    case "set":
      return { set: { name: checkName(edit.name), value: checkValue(edit.value) } }
    case "add":
      return { add: { name: checkName(edit.name), value: checkValue(edit.value) } }
    case "remove":
      return { remove: { name: checkName(edit.name) } }
  }
}

/** An agent's answer to one event, immutable; every `with*` returns a new one. */
export class AgentDecision {
  private constructor(private readonly s: State) {}

  /** @internal */
  static of(decision: Decision): AgentDecision {
    return new AgentDecision({
      decision,
      requestHeaders: [],
      responseHeaders: [],
      routingMetadata: {},
      tags: [],
      ruleIds: [],
      reasonCodes: [],
      confidence: undefined,
      custom: {},
      needsMore: false,
      requestBodyMutation: null,
      responseBodyMutation: null,
      websocketDecision: null
    })
  }

  private with(patch: Partial<State>): AgentDecision {
    return new AgentDecision({ ...this.s, ...patch })
  }

  /** The wire decision (`"allow"`, `{block}`, `{redirect}`, `{challenge}`). */
  get decision(): Decision {
    return this.s.decision
  }

  get isAllow(): boolean {
    return this.s.decision === "allow"
  }

  /** Edits the request forwarded upstream: `{op:"set"|"add", name, value}` or `{op:"remove", name}`. */
  withRequestHeader(edit: HeaderEdit): AgentDecision {
    return this.with({ requestHeaders: [...this.s.requestHeaders, toOp(edit)] })
  }
  setRequestHeader(name: string, value: string): AgentDecision {
    return this.withRequestHeader({ op: "set", name, value })
  }
  addRequestHeader(name: string, value: string): AgentDecision {
    return this.withRequestHeader({ op: "add", name, value })
  }
  removeRequestHeader(name: string): AgentDecision {
    return this.withRequestHeader({ op: "remove", name })
  }

  /** Edits the response sent to the client. */
  withResponseHeader(edit: HeaderEdit): AgentDecision {
    return this.with({ responseHeaders: [...this.s.responseHeaders, toOp(edit)] })
  }
  setResponseHeader(name: string, value: string): AgentDecision {
    return this.withResponseHeader({ op: "set", name, value })
  }
  addResponseHeader(name: string, value: string): AgentDecision {
    return this.withResponseHeader({ op: "add", name, value })
  }
  removeResponseHeader(name: string): AgentDecision {
    return this.withResponseHeader({ op: "remove", name })
  }

  /** Appends tags / rule ids / reason codes, merges `custom`. */
  withAudit(audit: AuditInput): AgentDecision {
    if (audit.confidence !== undefined && !(audit.confidence >= 0 && audit.confidence <= 1)) {
      throw new TypeError(`confidence ${audit.confidence} outside 0..1`)
    }
    return this.with({
      tags: [...this.s.tags, ...(audit.tags ?? [])],
      ruleIds: [...this.s.ruleIds, ...(audit.ruleIds ?? [])],
      reasonCodes: [...this.s.reasonCodes, ...(audit.reasonCodes ?? [])],
      confidence: audit.confidence ?? this.s.confidence,
      custom: { ...this.s.custom, ...(audit.custom ?? {}) }
    })
  }

  withRoutingMetadata(key: string, value: string): AgentDecision {
    return this.with({ routingMetadata: { ...this.s.routingMetadata, [key]: value } })
  }

  /** Body phases: ask the proxy for the next chunk before deciding. */
  withNeedsMore(needsMore = true): AgentDecision {
    return this.with({ needsMore })
  }

  /** `data`: null keeps the chunk, "" drops it, base64 replaces it. */
  withRequestBodyMutation(data: string | null, chunkIndex: number): AgentDecision {
    return this.with({ requestBodyMutation: { data, chunk_index: chunkIndex } })
  }
  withResponseBodyMutation(data: string | null, chunkIndex: number): AgentDecision {
    return this.with({ responseBodyMutation: { data, chunk_index: chunkIndex } })
  }

  withWebSocketDecision(decision: WebSocketDecision): AgentDecision {
    return this.with({ websocketDecision: decision })
  }

  /**
   * The AgentResponse JSON for the event `correlationId`. The correlation
   * id is written last so nothing in `custom` can replace it: the proxy
   * matches answers only through it.
   *
   * Fields at their protocol default (empty lists and maps, `needs_more` false, no mutation,
   * no WebSocket decision) are left out: only `version` and `decision` are required, every
   * other field defaults on the proxy's side (ours and Sentinel's: `#[serde(default)]`), and
   * the proxy's JSON parsing is per byte (a plain allow is ~190 bytes instead of ~380).
   */
  toWire(correlationId: string): AgentResponseWire {
    const s = this.s
    const audit: Record<string, unknown> = {}
    if (s.tags.length > 0) audit.tags = s.tags
    if (s.ruleIds.length > 0) audit.rule_ids = s.ruleIds
    if (s.reasonCodes.length > 0) audit.reason_codes = s.reasonCodes
    if (s.confidence !== undefined) audit.confidence = s.confidence
    audit.custom = { ...s.custom, correlation_id: correlationId }
    const wire: { -readonly [K in keyof AgentResponseWire]: AgentResponseWire[K] } = {
      version: PROTOCOL_VERSION,
      decision: s.decision
    }
    if (s.requestHeaders.length > 0) wire.request_headers = s.requestHeaders
    if (s.responseHeaders.length > 0) wire.response_headers = s.responseHeaders
    for (const _ in s.routingMetadata) {
      wire.routing_metadata = s.routingMetadata
      break
    }
    wire.audit = audit as AgentResponseWire["audit"]
    if (s.needsMore) wire.needs_more = true
    if (s.requestBodyMutation !== null) wire.request_body_mutation = s.requestBodyMutation
    if (s.responseBodyMutation !== null) wire.response_body_mutation = s.responseBodyMutation
    if (s.websocketDecision !== null) wire.websocket_decision = s.websocketDecision
    return wire
  }
}

/** Let the request (or response) through unchanged. */
export const allow = (): AgentDecision => AgentDecision.of("allow")

export interface BlockOptions {
  /** Response body (text); default none (the proxy writes its own). */
  readonly body?: string
  /** Extra response headers on the block response. */
  readonly headers?: Readonly<Record<string, string>>
}

/** Answer the client with `status` (default 403) instead of forwarding. */
export const block = (status = 403, options: BlockOptions = {}): AgentDecision => {
  let headers: Record<string, string> | null = null
  if (options.headers !== undefined) {
    headers = {}
    for (const [k, v] of Object.entries(options.headers)) headers[checkName(k)] = checkValue(v)
  }
  return AgentDecision.of({ block: { status: checkStatus(status, 100, 599), body: options.body ?? null, headers } })
}

/** Redirect the client to `url` with a 3xx status (default 302). */
export const redirect = (url: string, status = 302): AgentDecision =>
  AgentDecision.of({ redirect: { url: checkValue(url), status: checkStatus(status, 300, 399) } })

/** Ask the client to solve a challenge (captcha, js, ...): the proxy decides how to present it. */
export const challenge = (challengeType: string, params: Readonly<Record<string, unknown>> = {}): AgentDecision =>
  AgentDecision.of({ challenge: { challenge_type: challengeType, params } })

// -- WebSocket frames (`onWebSocketFrame`): the answer's `websocket_decision` ---------------

/** A close code an endpoint may send (RFC 6455 §7.4). */
const checkCloseCode = (code: number): number => {
  const ok = Number.isInteger(code) && ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999))
  if (!ok) throw new RangeError(`WebSocket close code ${code} is not one an endpoint may send (1000-1014 less 1004-1006, or 3000-4999)`)
  return code
}

/** A WebSocket frame goes on as it came. */
export const frameAllow = (): AgentDecision => allow().withWebSocketDecision("allow")

/** A WebSocket frame is discarded; the tunnel stays open. */
export const frameDrop = (): AgentDecision => allow().withWebSocketDecision("drop")

/** The WebSocket tunnel is closed, both ways, with `code` (default 1008, policy violation) and `reason`. */
export const frameClose = (code = 1008, reason = ""): AgentDecision =>
  allow().withWebSocketDecision({ close: { code: checkCloseCode(code), reason } })
