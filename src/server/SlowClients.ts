/**
 * Slow clients the listener's own timers catch (edge-security.md §3): a connection whose
 * pending response bytes do not move for the write timeout (slow read, one sweep over the open
 * connections), and a request body that goes silent for the body idle timeout (slow POST).
 * Each records why it cut the connection (`markCut`) before it ends it, so that the pipeline
 * logs the request with the listener's reason.
 */
import type * as http from "node:http"
import type { Socket } from "node:net"
import { markClosing, markCut, type ClientRejection } from "../pipeline/Connection.js"
import { BODY_IDLE_TIMEOUT, WRITE_TIMEOUT, writeAnswer } from "./ListenerAnswers.js"
import type { ListenerTimeouts } from "./ListenerSettings.js"

/** One open connection: its slow-read watch and its place in `OpenConnections`. */
export interface OpenConnection {
  readonly socket: Socket
  /** Bytes the socket had flushed at the last check. */
  flushed: number
  /** When the pending output stopped making progress (0 = it is making progress). */
  stalledSince: number
  index: number
}

/**
 * The listener's open connections: an array with swap-remove, O(1) both ways. Not a `Set` or
 * `Map`: measured on node 20 (V8 11.3), a hash table with one add and one delete per
 * connection kept closed sockets reachable for the young-generation GC, so under connection
 * churn (no keep-alive) every connection's objects were copied and promoted (3.5 MB per
 * scavenge at 3.6k connections/s).
 */
export class OpenConnections {
  private readonly list: Array<OpenConnection> = []

  add(socket: Socket): OpenConnection {
    const c: OpenConnection = { socket, flushed: 0, stalledSince: 0, index: this.list.length }
    this.list.push(c)
    return c
  }

  remove(c: OpenConnection): void {
    const last = this.list.pop()!
    if (last !== c) {
      this.list[c.index] = last
      last.index = c.index
    }
    c.index = -1
  }

  /** A copy: callers may close connections while they go through it. */
  all(): Array<OpenConnection> {
    return this.list.slice()
  }
}

// Slow read: a connection whose pending output does not move for `writeMs` is abandoned.
// State is kept per connection (long-lived), not per request: a per-request map entry
// made every request's objects outlive young-generation collections (measured: scavenges
// of 60-80 ms promoting ~10 MB each at 6k req/s, versus 1-2 ms without).
// Slow read: a connection whose pending output does not move for `writeMs` is abandoned.
// State is kept per connection (long-lived), not per request: a per-request map entry
// made every request's objects outlive young-generation collections (measured: scavenges
// of 60-80 ms promoting ~10 MB each at 6k req/s, versus 1-2 ms without).
export const startWriteSweep = (
  listenerId: string,
  t: ListenerTimeouts,
  connectionsOpen: OpenConnections,
  onClientError: (rejection: ClientRejection) => void
): NodeJS.Timeout | undefined => {
  const sweep =
    t.writeMs > 0
      ? setInterval(() => {
          const now = Date.now()
          for (const w of connectionsOpen.all()) {
            const socket = w.socket
            if (socket.destroyed) continue
            const pending = socket.writableLength
            if (pending === 0) {
              w.stalledSince = 0
              continue
            }
            const flushed = socket.bytesWritten - pending
            if (flushed !== w.flushed || w.stalledSince === 0) {
              w.flushed = flushed
              w.stalledSince = now
              continue
            }
            if (now - w.stalledSince >= t.writeMs) {
              // the response being written (and any queued behind it) is logged by the pipeline
              // with the status already sent and this reason
              markCut(socket, { status: WRITE_TIMEOUT.status, reason: WRITE_TIMEOUT.reason, answered: undefined, bytesSent: 0 })
              onClientError({
                listener: listenerId,
                status: WRITE_TIMEOUT.status,
                reason: WRITE_TIMEOUT.reason,
                clientIp: socket.remoteAddress ?? "",
                stage: "connection",
                durationMs: now - w.stalledSince
              })
              socket.destroy()
            }
          }
        }, t.checkMs)
      : undefined
  sweep?.unref()
  sweep?.unref()
  return sweep
}

/** Slow POST: the socket's inactivity timer runs while the body is being received. */
export const watchBody = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  socket: Socket,
  listenerId: string,
  t: ListenerTimeouts,
  onClientError: (rejection: ClientRejection) => void
): void => {
  const te = req.headers["transfer-encoding"]
  const cl = req.headers["content-length"]
  if (te === undefined && (cl === undefined || cl === "0")) return
  const onTimeout = () => {
    if (req.complete || res.writableEnded) return
    // We are the ones not reading (back-pressure from the upstream): not the client's fault.
    if (req.readableLength > 0) {
      socket.setTimeout(t.bodyIdleMs)
      return
    }
    const idle = BODY_IDLE_TIMEOUT
    onClientError({
      listener: listenerId,
      status: idle.status,
      reason: idle.reason,
      clientIp: socket.remoteAddress ?? "",
      stage: "in-flight",
      req,
      durationMs: t.bodyIdleMs
    })
    markClosing(socket)
    if (!res.headersSent) {
      try {
        res.shouldKeepAlive = false
        const body = writeAnswer(res, idle, true)
        // this 408 is the request's answer: the pipeline logs it (pipeline/Connection.ts)
        markCut(socket, { status: idle.status, reason: idle.reason, answered: res, bytesSent: Buffer.byteLength(body) })
        res.end(body, () => socket.destroy())
        const timer = setTimeout(() => socket.destroy(), 1000)
        socket.once("close", () => clearTimeout(timer))
        return
      } catch {
        // fall through
      }
    }
    markCut(socket, { status: idle.status, reason: idle.reason, answered: undefined, bytesSent: 0 })
    socket.destroy()
  }
  // A listener on res stops node's default (destroy on socket timeout) during this request.
  res.on("timeout", onTimeout)
  socket.setTimeout(t.bodyIdleMs)
  req.once("end", () => {
    // node arms its keep-alive timer when the response finishes; never clear that one
    if (!res.writableFinished) socket.setTimeout(0)
  })
}
