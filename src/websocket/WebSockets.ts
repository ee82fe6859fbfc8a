/**
 * WebSocket proxying as a route feature: the `RouteExtension` that gives every route its
 * `UpgradePolicy` (pipeline/Stage.ts), the process's tunnel registry, and the tunnels'
 * metrics, audit lines and access-log summaries.
 *
 * A handshake runs the pipeline as any request (validation, routing, filters, request-header
 * agents, balancer, health, circuits); the route's policy:
 * - `check` (before the route's request stages): 403 `websocket_not_enabled` on a route
 *   without `websocket #true` (audited, counted in `sentinel_rejected_requests_total`); 400 or
 *   426 for a malformed handshake (Handshake.ts); 503 while the listener drains or over the
 *   tunnel limits. Accepted: a tunnel slot is reserved, and with inspection the extension offer
 *   is removed from the upstream's headers;
 * - the upstream exchange is made as an upgrade; an answer other than 101 goes to the client as
 *   an ordinary response (then the connection closes);
 * - `accept` (on the 101): the answer is checked against the key (502 otherwise), the 101
 *   goes to the client with the upstream's end-to-end headers and the route's response-header
 *   stages, and the tunnel starts (Tunnel.ts) with the limits of the configuration the
 *   handshake came in on (a reload leaves open tunnels as they are).
 */
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import * as Duration from "effect/Duration"
import type { LimitsConfig, RouteConfig, SentinelConfig } from "../config/Schema.js"
import type { Metrics } from "../observability/Metrics.js"
import type { AuditLog } from "../observability/AuditLog.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import type { Answer, RouteContribution, RouteExtension, UpgradePolicy } from "../pipeline/Stage.js"
import { errorBody } from "../pipeline/ErrorResponse.js"
import { connectionTokens, isHopByHop } from "../http/HopByHop.js"
import type { WebSocketFrameAgents } from "../agents/AgentsExtension.js"
import type { PhaseContext } from "../agents/AgentDecision.js"
import { opcodeName } from "./Frame.js"
import { asksForWebSocket, checkClientHandshake, checkHttp2Handshake, checkUpstreamAnswer, newKey } from "./Handshake.js"
import { openHttp2Tunnel, removeHeader } from "./OverHttp2.js"
import { WebSocketSession } from "./Session.js"
import { Tunnel } from "./Tunnel.js"
import type { FrameInspector, TunnelLimits, TunnelSummary } from "./TunnelOptions.js"
import { TunnelRegistry, type TunnelEntry } from "./Tunnels.js"
import { isUpgradeRequest, takeUpgradedSocket } from "./Upgrade.js"

export interface WebSocketsOptions {
  readonly metrics: Metrics
  readonly audit: AuditLog
  /** A route's `websocket_frame` agents (AgentsExtension.ts), for inspected routes. */
  readonly frameAgents?: (route: RouteConfig, config: SentinelConfig) => WebSocketFrameAgents | undefined
}

export interface WebSockets {
  /** Add to the dataplane's extensions. */
  readonly extension: RouteExtension
  readonly tunnels: TunnelRegistry
  /** The tunnel counts of a new configuration (reload). */
  readonly configure: (limits: LimitsConfig) => void
}

export const tunnelLimitsOf = (limits: LimitsConfig): TunnelLimits => ({
  maxFrameSize: limits.websocketMaxFrameSize,
  maxMessageSize: limits.websocketMaxMessageSize,
  idleTimeoutMs: Duration.toMillis(limits.websocketIdleTimeout),
  maxLifetimeMs: Duration.toMillis(limits.websocketMaxLifetime)
})

const countsOf = (limits: LimitsConfig) => ({ maxTotal: limits.maxWebsocketTunnels, maxPerClient: limits.maxWebsocketTunnelsPerClient })

const answer = (ctx: RequestContext, status: number, reason: string, headers: ReadonlyArray<string> = []): Answer => ({
  status,
  headers,
  body: errorBody(status, reason, ctx.traceId),
  contentType: "application/json",
  reason
})

const hasBody = (ctx: RequestContext): boolean => {
  const h = ctx.req.headers
  return h["transfer-encoding"] !== undefined || (h["content-length"] !== undefined && h["content-length"] !== "0")
}

/** The upstream's 101 head: lower-case name -> value (repeated ones joined). */
const headerMap = (raw: ReadonlyArray<Buffer>): Map<string, string> => {
  const m = new Map<string, string>()
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toString("latin1").toLowerCase()
    const value = raw[i + 1].toString("latin1")
    const had = m.get(name)
    m.set(name, had === undefined ? value : `${had}, ${value}`)
  }
  return m
}

/** The end-to-end headers of the upstream's 101 (hop-by-hop ones and those its `Connection` names removed). */
const endToEnd = (raw: ReadonlyArray<Buffer>, connection: string | undefined): Array<string> => {
  const named = connectionTokens(connection)
  const flat: Array<string> = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toString("latin1")
    if (isHopByHop(name) || named?.has(name.toLowerCase()) === true) continue
    flat.push(name, raw[i + 1].toString("latin1"))
  }
  return flat
}

export const makeWebSockets = (initial: SentinelConfig, options: WebSocketsOptions): WebSockets => {
  const { metrics, audit } = options
  const tunnels = new TunnelRegistry(countsOf(initial.limits))

  const inspectorFor = (ctx: RequestContext, route: RouteConfig, agents: WebSocketFrameAgents): FrameInspector => {
    const pc: PhaseContext = {
      traceId: ctx.traceId,
      routeId: route.id,
      clientIp: ctx.clientIp,
      method: ctx.method,
      path: ctx.path,
      ...(route.policies.failureMode !== undefined ? { routeFailureMode: route.policies.failureMode } : {})
    }
    return {
      inspect: (frame, clientToServer, frameIndex, done) =>
        agents.start(
          {
            correlation_id: ctx.traceId,
            opcode: opcodeName(frame.opcode),
            data: frame.payload.toString("base64"),
            client_to_server: clientToServer,
            frame_index: frameIndex,
            fin: frame.fin,
            route_id: route.id,
            client_ip: ctx.clientIp
          },
          pc,
          done
        )
    }
  }

  const refusedAudit = (ctx: RequestContext, route: RouteConfig, reason: string, status: number) =>
    audit.proxy({
      timestamp: Date.now(),
      trace_id: ctx.traceId,
      event_type: "websocket_refused",
      source: "proxy:websocket",
      decision: "block",
      status,
      reason,
      client_ip: ctx.clientIp,
      route_id: route.id,
      method: ctx.method,
      path: ctx.path
    })

  /** A route without `websocket #true`: every WebSocket handshake gets 403 (audited). */
  const refuse = (ctx: RequestContext, route: RouteConfig): Answer | undefined => {
    if (!ctx.webSocketOverH2 && !asksForWebSocket(ctx.req.headers.upgrade)) return undefined
    refusedAudit(ctx, route, "websocket_not_enabled", 403)
    return answer(ctx, 403, "websocket_not_enabled")
  }

  const compile = (route: RouteConfig, config: SentinelConfig): RouteContribution => {
    if (!route.websocket) return { upgrade: { check: (ctx) => refuse(ctx, route), accept: () => "upstream" } }
    const limits = tunnelLimitsOf(config.limits)
    const frameAgents = route.websocketInspection ? options.frameAgents?.(route, config) : undefined
    const inspecting = frameAgents !== undefined
    const bytesUp = metrics.websocketBytes.child(route.id, "client_to_server")
    const bytesDown = metrics.websocketBytes.child(route.id, "server_to_client")

    const check = (ctx: RequestContext): Answer | undefined => {
      const overH2 = ctx.webSocketOverH2
      if (!overH2 && !asksForWebSocket(ctx.req.headers.upgrade)) return undefined
      const bad = overH2
        ? checkHttp2Handshake(ctx.req.headers)
        : checkClientHandshake({ method: ctx.method, httpVersion: ctx.req.httpVersion, headers: ctx.req.headers })
      if (bad !== undefined) return answer(ctx, bad.status, bad.reason, bad.headers)
      if (hasBody(ctx)) return answer(ctx, 400, "websocket_request_body")
      // a handshake that did not come through the listener's upgrade path has no socket to take
      if (!overH2 && !isUpgradeRequest(ctx.req)) return answer(ctx, 400, "websocket_not_upgradable")
      if (tunnels.isDraining(ctx.listenerId)) return answer(ctx, 503, "websocket_draining", ["retry-after", "1"])
      const full = tunnels.reserve(ctx.clientIp)
      if (full !== undefined) return answer(ctx, 503, full, ["retry-after", "1"])
      const offered = ctx.header("sec-websocket-extensions") !== undefined
      // compressed frames would hide their payloads from the agents: no extension is negotiated
      if (inspecting && offered) removeHeader(ctx.upstreamHeaders, "sec-websocket-extensions")
      const ip = ctx.clientIp
      let key: string
      if (overH2) {
        // RFC 8441: the client sends no key; the upstream leg is an HTTP/1.1 handshake with one of ours,
        // and the stream is the tunnel (no request body goes upstream)
        key = newKey()
        removeHeader(ctx.upstreamHeaders, "sec-websocket-key")
        ctx.upstreamHeaders.push("sec-websocket-key", key)
        ctx.upstreamBody = null
      } else key = ctx.header("sec-websocket-key")!.trim()
      ctx.websocket = new WebSocketSession(key, offered && !inspecting, () => tunnels.release(ip))
      return undefined
    }

    const ended = (ctx: RequestContext, entry: TunnelEntry, s: TunnelSummary, counted: { up: number; down: number }) => {
      tunnels.remove(entry)
      metrics.websocketActive.dec()
      bytesUp.inc(s.bytesFromClient - counted.up)
      bytesDown.inc(s.bytesFromUpstream - counted.down)
      metrics.websocketCloses.inc(route.id, s.reason)
      if (s.reason === "protocol_error" || s.reason === "too_big") {
        audit.proxy({
          timestamp: Date.now(),
          trace_id: ctx.traceId,
          event_type: "websocket_closed",
          source: "proxy:websocket",
          decision: "close",
          status: s.closeCode,
          reason: `${s.reason}: ${s.closeReason}`,
          client_ip: ctx.clientIp,
          route_id: route.id,
          method: ctx.method,
          path: ctx.path
        })
      }
      ctx.bytesSent = s.bytesToClient
      ctx.websocket!.ended(s)
    }

    const accept: UpgradePolicy["accept"] = (ctx, raw, upstream: Socket, editHead) => {
      const ws = ctx.websocket!
      const headers = headerMap(raw)
      const fit = checkUpstreamAnswer(ws.key, headers, ws.extensionsOffered)
      if (typeof fit === "string") {
        ctx.error = fit
        return "upstream"
      }
      const res = ctx.res
      if (res.headersSent || res.destroyed) return "client"
      const flat = endToEnd(raw, headers.get("connection"))
      flat.push("x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId)
      if (ctx.responseHeaders !== undefined) flat.push(...ctx.responseHeaders)
      // HTTP/2: the tunnel opens with a 200 on the stream (RFC 8441 §5)
      const status = ctx.webSocketOverH2 ? 200 : 101
      editHead(status, flat)
      let client: { readonly socket: Duplex; readonly held: ReadonlyArray<Buffer> } | undefined
      try {
        if (ctx.webSocketOverH2) {
          const stream = openHttp2Tunnel(res, flat)
          if (stream !== undefined) {
            ctx.status = 200
            client = { socket: stream, held: [] }
          }
        } else {
          flat.push("upgrade", "websocket", "connection", "Upgrade")
          res.writeHead(101, flat)
          res.end()
          ctx.status = 101
          client = takeUpgradedSocket(ctx.req, res)
        }
      } catch {
        // a header value node refuses to write: the upstream's answer cannot be relayed
        ctx.error = "upstream_invalid_header"
        return "upstream"
      }
      if (client === undefined) return "client"
      ws.tunnelStarted = true
      metrics.websocketConnections.inc(route.id)
      metrics.websocketActive.inc()
      const counted = { up: 0, down: 0 }
      let tunnel: Tunnel | undefined
      const entry: TunnelEntry = {
        get tunnel() {
          return tunnel!
        },
        listener: ctx.listenerId,
        onTick: () => {
          if (tunnel === undefined) return
          tunnel.flush()
          const b = tunnel.bytes()
          bytesUp.inc(b.fromClient - counted.up)
          bytesDown.inc(b.fromUpstream - counted.down)
          counted.up = b.fromClient
          counted.down = b.fromUpstream
        }
      }
      tunnel = new Tunnel({
        client: client.socket,
        clientHead: client.held,
        upstream,
        limits,
        allowedRsv: fit.allowedRsv,
        inspector: frameAgents !== undefined ? inspectorFor(ctx, route, frameAgents) : undefined,
        onFrames: (direction, decision, n) => metrics.websocketFrames.add(n, route.id, direction, decision),
        // after `add` below, also when it ends while being built (both sockets already gone)
        onEnd: (s) => queueMicrotask(() => ended(ctx, entry, s, counted))
      })
      tunnels.add(entry)
      return undefined
    }

    return {
      upgrade: { check, accept },
      // a handshake that did not become a tunnel gives its slot back
      complete: [
        (ctx) => {
          const ws = ctx.websocket
          if (ws !== undefined && !ws.tunnelStarted) ws.release()
        }
      ]
    }
  }

  return {
    extension: { name: "websocket", compile },
    tunnels,
    configure: (limits) => tunnels.configure(countsOf(limits))
  }
}
