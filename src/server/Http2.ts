/**
 * HTTP/2 to clients: one `node:http2` server (never listening itself) that takes the
 * connections a listener hands it: TLS sockets whose ALPN chose `h2`, and cleartext sockets
 * that opened with the HTTP/2 connection preface (`protocol "h2"`, prior knowledge). Its
 * requests go through the compat API (`Http2ServerRequest`/`Response`) into the same
 * pipeline as HTTP/1.1.
 *
 * Defences (edge-security.md §4), each counted and logged through `onDefence`:
 * - SETTINGS we announce: `max-concurrent-streams`, header list size from `limits`, no push;
 *   nghttp2 refuses streams beyond them, malformed and connection-specific headers, and a
 *   content-length that the DATA frames contradict (a stream error: the request is aborted,
 *   and with it its upstream exchange);
 * - floods of PING, SETTINGS, empty or invalid frames and rejected streams: node's
 *   `maxOutstandingPings`, `maxSettings`, `maxSessionInvalidFrames`, `maxSessionRejectedStreams`
 *   close the session (`session_error`);
 * - rapid reset (CVE-2023-44487): streams the client resets before their response started are
 *   counted per session; once more than `max-early-resets` and more than half of its streams
 *   were, the session gets GOAWAY ENHANCE_YOUR_CALM and is closed (`rapid_reset`), so it cannot
 *   start more than about that many upstream requests that it abandons;
 * - streams per session (`keepalive-max-requests`): then a graceful GOAWAY (`max_requests`);
 * - an idle session (no open stream) is closed at the keep-alive timeout (`idle_timeout`);
 * - `sessionMemory`: node's bound on what one session may buffer (MB).
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

export const startHttp2 = (limits: Http2Limits, hooks: Http2Hooks): Http2Sessions => {
  const server = http2.createServer({
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListSize,
      enablePush: false
    },
    // more pairs than the limits allow, so that the validator answers 431 rather than a reset
    maxHeaderListPairs: 4096,
    peerMaxConcurrentStreams: limits.maxConcurrentStreams
  })
  const sessions = new Set<http2.ServerHttp2Session>()
  let closing = false

  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session)
    const ip = session.socket?.remoteAddress ?? ""
    let opened = 0
    let earlyResets = 0
    let open = 0
    let idleTimer: NodeJS.Timeout | undefined
    const idle = () => {
      if (limits.idleTimeoutMs <= 0 || session.destroyed) return
      idleTimer = setTimeout(() => {
        if (open === 0 && !session.closed) {
          hooks.onDefence("idle_timeout", ip)
          session.close()
        }
      }, limits.idleTimeoutMs)
      idleTimer.unref()
    }
    session.on("error", () => undefined)
    session.once("close", () => {
      clearTimeout(idleTimer)
      sessions.delete(session)
    })
    if (closing) session.close()
    idle()
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      opened++
      open++
      clearTimeout(idleTimer)
      stream.on("error", () => undefined)
      stream.once("close", () => {
        open--
        if (open === 0) idle()
        // reset before any answer: by the client (the proxy answers every stream it accepts)
        if (!stream.headersSent && stream.rstCode !== NGHTTP2_NO_ERROR) {
          // mostly resets, and more than the bound: a session that also completes its streams
          // (a browser cancelling some) is left alone
          if (++earlyResets > limits.maxEarlyResets && earlyResets * 2 > opened && !session.destroyed) {
            hooks.onDefence("rapid_reset", ip)
            session.goaway(NGHTTP2_ENHANCE_YOUR_CALM)
            session.destroy()
          }
        }
      })
      if (limits.maxStreamsPerSession > 0 && opened === limits.maxStreamsPerSession && !session.closed) {
        hooks.onDefence("max_requests", ip)
        // graceful: the streams already open finish, no new ones
        session.close()
      }
    })
  })
  // nghttp2 and node refused a session (flood limits, bad preface, memory): counted
  server.on("sessionError", (_err: Error, session: http2.ServerHttp2Session) => {
    hooks.onDefence("session_error", session?.socket?.remoteAddress ?? "")
  })
  server.on("request", hooks.onRequest)

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
