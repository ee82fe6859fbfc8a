/**
 * HTTP/2 to clients: one `node:http2` server (never listening itself) that takes the
 * connections a listener hands it: TLS sockets whose ALPN chose `h2`, and cleartext sockets
 * that opened with the HTTP/2 connection preface (`protocol "h2"`, prior knowledge). Its
 * requests go through the compat API (`Http2ServerRequest`/`Response`) into the same
 * pipeline as HTTP/1.1.
 *
 * Defences (edge-security.md §4), each counted and logged through `onDefence`:
 * - SETTINGS we announce: `max-concurrent-streams`, header list size from `limits`, no push,
 *   extended CONNECT (RFC 8441, for WebSockets: src/websocket/OverHttp2.ts);
 *   nghttp2 refuses streams beyond them, malformed and connection-specific headers, and a
 *   content-length that the DATA frames contradict (a stream error: the request is aborted,
 *   and with it its upstream exchange);
 * - floods of empty DATA frames and invalid frames: node's `maxSessionInvalidFrames` (set to
 *   100) closes the session (`invalid_frames`); streams refused beyond the concurrency bound:
 *   `maxSessionRejectedStreams` (`session_error`, as is any other error node reports);
 * - PING and SETTINGS floods: nghttp2 only stops them when their ACKs pile up unread (a client
 *   that reads them gets every ACK, for ever), so they are counted per session in a bucket of
 *   `CONTROL_BURST` frames refilled at `CONTROL_RATE` per second; an empty bucket gets GOAWAY
 *   ENHANCE_YOUR_CALM (`ping_flood`, `settings_flood`);
 * - frames that no event shows (WINDOW_UPDATE, PRIORITY, RST_STREAM on idle streams, unknown
 *   types, padding): nginx's rule, bytes read that carried no request data, swept every
 *   `SWEEP_MS`: over `OVERHEAD_BASE` plus the request bytes (DATA, `STREAM_CREDIT` per stream)
 *   plus a sixteenth of the bytes sent (the client's WINDOW_UPDATEs for what it downloads),
 *   the session gets GOAWAY ENHANCE_YOUR_CALM (`control_flood`);
 * - rapid reset (CVE-2023-44487): streams the client resets before their response started are
 *   counted per session; once more than `max-early-resets` and more than half of its streams
 *   were, the session gets GOAWAY ENHANCE_YOUR_CALM and is closed (`rapid_reset`), so it cannot
 *   start more than about that many upstream requests that it abandons;
 * - streams per session (`keepalive-max-requests`): then a graceful GOAWAY (`max_requests`);
 * - an idle session (no open stream) is closed at the keep-alive timeout, checked at each sweep
 *   (`idle_timeout`; no timer per stream);
 * - `sessionMemory`: node's bound on what one session may buffer (MB);
 * - flow control: the connection window is max-concurrent-streams x 64 KiB (each stream keeps
 *   nghttp2's 64 KiB), at most `CONNECTION_WINDOW_MAX`, as nginx opens it.
 */
import * as http2 from "node:http2"
import type { Socket } from "node:net"

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants

export interface Http2Limits {
  readonly maxConcurrentStreams: number
  /** Bytes of one header list (SETTINGS_MAX_HEADER_LIST_SIZE); what is over gets refused by nghttp2. */
  readonly maxHeaderListSize: number
  /** Streams one session may open, then GOAWAY; 0 = unlimited. */
  readonly maxStreamsPerSession: number
  /** Streams reset by the client before their response started, per session, before it is closed. */
  readonly maxEarlyResets: number
  /** A session without open streams this long is closed; 0 = never. */
  readonly idleTimeoutMs: number
}

export interface Http2Hooks {
  /** A request (stream) on one of the sessions. */
  readonly onRequest: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void
  /** A CONNECT stream (node's compat API keeps them apart): extended CONNECT (RFC 8441) or plain. */
  readonly onConnect: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void
  /** A defence closed a session or refused something: count and log it. */
  readonly onDefence: (reason: string, clientIp: string) => void
}

export interface Http2Sessions {
  readonly server: http2.Http2Server
  /** Hands a connection (TLS with ALPN h2, or cleartext after the preface) to HTTP/2. */
  readonly accept: (socket: Socket) => void
  /** Open sessions. */
  readonly count: () => number
  /** Drain: GOAWAY to every session; each closes once its streams are done. */
  readonly closeAll: () => void
  /** The grace is over: destroy what is left. */
  readonly destroyAll: () => void
}

/** PING/SETTINGS frames a session may send at once, and per second after that. */
export const CONTROL_BURST = 100
export const CONTROL_RATE = 10
/** Bytes of frames without request data a session may send beyond its allowance (see above). */
export const OVERHEAD_BASE = 1024 * 1024
export const STREAM_CREDIT = 1024
export const SWEEP_MS = 100
/** nghttp2's initial stream window (SETTINGS_INITIAL_WINDOW_SIZE, left at its default). */
const STREAM_WINDOW = 65535
/** The largest connection window a session is given (bytes a client may send ahead in all). */
export const CONNECTION_WINDOW_MAX = 8 * 1024 * 1024

const ignore = (): void => undefined

/** The DATA bytes a stream received so far: its native handle's count; undefined when node hides it. */
let handleSymbol: symbol | undefined
const dataBytesOf = (stream: http2.ServerHttp2Stream): number | undefined => {
  if (handleSymbol === undefined) handleSymbol = Object.getOwnPropertySymbols(stream).find((s) => s.description === "kHandle")
  if (handleSymbol === undefined) return undefined
  const n = (stream as unknown as Record<symbol, { bytesRead?: unknown } | undefined>)[handleSymbol]?.bytesRead
  return typeof n === "number" ? n : undefined
}

/** What the sweep needs of one session. */
interface Watched {
  readonly session: http2.ServerHttp2Session
  readonly ip: string
  /** DATA bytes of the streams that closed, and the last count of those still open (one entry per open stream). */
  closedBytes: number
  readonly openBytes: Map<http2.ServerHttp2Stream, number>
  opened: number
  /** When the session's last open stream closed (or it started): the idle clock; 0 while a stream is open. */
  idleSince: number
}

export const startHttp2 = (limits: Http2Limits, hooks: Http2Hooks): Http2Sessions => {
  const server = http2.createServer({
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListSize,
      enablePush: false,
      // RFC 8441: WebSockets over HTTP/2 streams. Always announced (SETTINGS go out before any
      // route is known, and a reload may enable one): a route without `websocket` answers 403
      enableConnectProtocol: true
    },
    // more pairs than the limits allow, so that the validator answers 431 rather than a reset
    maxHeaderListPairs: 4096,
    peerMaxConcurrentStreams: limits.maxConcurrentStreams,
    // invalid frames and empty DATA frames without END_STREAM (node's default: 1000)
    maxSessionInvalidFrames: 100,
    maxSessionRejectedStreams: 100,
    maxOutstandingPings: 10,
    maxSettings: 32
  })
  const sessions = new Set<http2.ServerHttp2Session>()
  const watched = new Map<http2.ServerHttp2Session, Watched>()
  let closing = false

  /** A defence ends a session at once: GOAWAY ENHANCE_YOUR_CALM, then closed. */
  const calm = (session: http2.ServerHttp2Session, reason: string, ip: string) => {
    if (session.destroyed) return
    hooks.onDefence(reason, ip)
    session.goaway(NGHTTP2_ENHANCE_YOUR_CALM)
    session.destroy()
  }

  // nginx's flood rule for the frames no event shows: bytes read beyond request data
  let sweeper: NodeJS.Timeout | undefined
  const sweep = () => {
    const now = limits.idleTimeoutMs > 0 ? Date.now() : 0
    for (const w of watched.values()) {
      const socket = w.session.socket as { bytesRead?: number; bytesWritten?: number } | undefined
      if (w.session.destroyed || socket === undefined) continue
      // an idle session (no open stream) is closed at the keep-alive timeout, to SWEEP_MS
      if (now > 0 && w.idleSince > 0 && now - w.idleSince >= limits.idleTimeoutMs && !w.session.closed) {
        hooks.onDefence("idle_timeout", w.ip)
        w.session.close()
        continue
      }
      let data = w.closedBytes
      let known = true
      for (const [stream, last] of w.openBytes) {
        const n = dataBytesOf(stream) ?? (stream.destroyed ? last : undefined)
        if (n === undefined) {
          known = false
          break
        }
        w.openBytes.set(stream, n)
        data += n
      }
      if (!known) continue
      const read = socket.bytesRead ?? 0
      const allowance = OVERHEAD_BASE + data + w.opened * STREAM_CREDIT + (socket.bytesWritten ?? 0) / 16
      if (read > allowance) calm(w.session, "control_flood", w.ip)
    }
  }

  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session)
    const ip = session.socket?.remoteAddress ?? ""
    const w: Watched = { session, ip, closedBytes: 0, openBytes: new Map(), opened: 0, idleSince: Date.now() }
    watched.set(session, w)
    if (sweeper === undefined) {
      sweeper = setInterval(sweep, SWEEP_MS)
      sweeper.unref()
    }
    let earlyResets = 0
    // PING and SETTINGS: a bucket of CONTROL_BURST, refilled at CONTROL_RATE per second
    let tokens = CONTROL_BURST
    let refilled = Date.now()
    const control = (reason: string) => () => {
      const now = Date.now()
      tokens = Math.min(CONTROL_BURST, tokens + ((now - refilled) * CONTROL_RATE) / 1000)
      refilled = now
      if (--tokens < 0) calm(session, reason, ip)
    }
    session.on("ping", control("ping_flood"))
    session.on("remoteSettings", control("settings_flood"))
    // node or nghttp2 ended the session on an error: counted here, with the client's address
    session.on("error", (err: NodeJS.ErrnoException) => {
      hooks.onDefence(err?.code === "ERR_HTTP2_TOO_MANY_INVALID_FRAMES" ? "invalid_frames" : "session_error", ip)
    })
    session.once("close", () => {
      sessions.delete(session)
      watched.delete(session)
      if (watched.size === 0 && sweeper !== undefined) {
        clearInterval(sweeper)
        sweeper = undefined
      }
    })
    if (closing) session.close()
    // nginx's flow control: the connection window is what the streams' own windows add up to
    // (nghttp2's 64 KiB each), so that those bound what a client may send ahead; the default
    // 64 KiB for the whole connection would stall every upload and WebSocket stream behind one.
    // At most CONNECTION_WINDOW_MAX: below node's memory bound of a session (10 MB)
    try {
      session.setLocalWindowSize(Math.min(limits.maxConcurrentStreams * STREAM_WINDOW, CONNECTION_WINDOW_MAX))
    } catch {
      // a session already closing
    }
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      w.opened++
      w.openBytes.set(stream, 0)
      w.idleSince = 0
      stream.on("error", ignore)
      // node drops the stream's native handle before `close`: its DATA count is read when the
      // request body ended (or was cut), else an upload between two sweeps would count as
      // overhead. A stream whose HEADERS ended it has no DATA to count.
      if (!stream.endAfterHeaders) {
        const record = () => {
          const n = dataBytesOf(stream)
          if (n !== undefined && w.openBytes.has(stream)) w.openBytes.set(stream, n)
        }
        stream.once("end", record)
        stream.once("aborted", record)
      }
      // `on`, not `once`: a stream closes once, and a once-wrapper is a cost per stream
      stream.on("close", () => {
        w.closedBytes += w.openBytes.get(stream) ?? 0
        w.openBytes.delete(stream)
        if (w.openBytes.size === 0) w.idleSince = Date.now()
        // reset before any answer: by the client (the proxy answers every stream it accepts)
        if (!stream.headersSent && stream.rstCode !== NGHTTP2_NO_ERROR) {
          // mostly resets, and more than the bound: a session that also completes its streams
          // (a browser cancelling some) is left alone
          if (++earlyResets > limits.maxEarlyResets && earlyResets * 2 > w.opened && !session.destroyed) {
            calm(session, "rapid_reset", ip)
          }
        }
      })
      if (limits.maxStreamsPerSession > 0 && w.opened === limits.maxStreamsPerSession && !session.closed) {
        hooks.onDefence("max_requests", ip)
        // graceful: the streams already open finish, no new ones
        session.close()
      }
    })
  })
  // a session that failed before its 'session' event (a bad preface): counted
  server.on("sessionError", (_err: Error, session: http2.ServerHttp2Session) => {
    if (session === undefined || !watched.has(session)) hooks.onDefence("session_error", "")
  })
  server.on("request", hooks.onRequest)
  server.on("connect", hooks.onConnect)

  return {
    server,
    accept: (socket) => {
      server.emit("connection", socket)
    },
    count: () => sessions.size,
    closeAll: () => {
      closing = true
      for (const s of sessions) if (!s.closed) s.close()
    },
    destroyAll: () => {
      for (const s of sessions) s.destroy()
    }
  }
}

/** The HTTP/2 connection preface a client with prior knowledge opens with (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1")

/**
 * Tells an HTTP/2 client with prior knowledge from an HTTP/1.1 one by the first bytes of a
 * cleartext connection; the bytes read are put back. `decide` is called once: "h2" when the
 * data so far is the preface, "http1" as soon as it cannot be, or when the connection closes.
 */
export const sniffPreface = (socket: Socket, decide: (protocol: "h2" | "http1") => void): void => {
  let seen: Buffer = Buffer.alloc(0)
  let done = false
  const finish = (protocol: "h2" | "http1") => {
    if (done) return
    done = true
    socket.off("data", onData)
    socket.off("end", onEnd)
    // HTTP/1.1's parser reads `data` events: the socket stays flowing (a paused one would not
    // resume when the parser adds its listener) and the bytes put back reach the parser on the
    // next tick. HTTP/2 takes the handle over and first reads what is buffered: paused.
    if (protocol === "h2") socket.pause()
    if (seen.length > 0) socket.unshift(seen as Buffer)
    decide(protocol)
  }
  const onData = (chunk: Buffer) => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk])
    const n = Math.min(seen.length, H2_PREFACE.length)
    if (seen.compare(H2_PREFACE, 0, n, 0, n) !== 0) return finish("http1")
    if (n === H2_PREFACE.length) finish("h2")
  }
  const onEnd = () => finish("http1")
  socket.on("data", onData)
  socket.on("end", onEnd)
}
