/**
 * The HTTP/1.1 side of a WebSocket handshake, between node's server and the pipeline:
 *
 * - `UpgradeAwareRequest` (the server's `IncomingMessage` class): node treats a request with
 *   `Connection: upgrade` and an `Upgrade` header as an upgrade only when it says
 *   `req.upgrade`; here that is true only for `Upgrade: websocket`. Every other upgrade
 *   (`h2c`, ...) stays an ordinary request (its `Upgrade` is removed as hop-by-hop), as it was
 *   before this server listened for upgrades.
 * - `handleUpgrade` (the listener's `upgrade` event): node hands the socket over with the
 *   request; it gets a `ServerResponse` of its own, so that the pipeline answers it as any other
 *   request (refusals, the upstream's non-101 answer), always with `Connection: close` (the
 *   HTTP parser is gone from this connection). Until the tunnel starts, what the client sends
 *   is held (bounded) and its leaving is noticed (its response closes: 499, upstream aborted).
 * - `takeUpgradedSocket`: the 101 went out through that response; the socket leaves it, with
 *   the bytes held, for the tunnel.
 */
import { IncomingMessage, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { asksForWebSocket } from "./Handshake.js"

/** Client bytes held while the handshake runs; past it the socket is paused (TCP back-pressure). */
const HELD_BEFORE_TUNNEL = 64 * 1024

/** How long an answer that ends a handshake (a refusal, the upstream's non-101) may take to flush before the socket is destroyed. */
const ANSWER_FLUSH_MS = 5000

export class UpgradeAwareRequest extends IncomingMessage {
  private sentinelUpgrade: boolean | null = null
  get upgrade(): boolean {
    // node reads this once the headers are in: only a WebSocket upgrade leaves the HTTP parser
    // (CONNECT keeps node's own handling: the listener's `connect` event answers it)
    return this.sentinelUpgrade === true && (this.method === "CONNECT" || asksForWebSocket(this.headers.upgrade))
  }
  set upgrade(value: boolean) {
    this.sentinelUpgrade = value
  }
}

const kUpgrade = Symbol("sentinel.websocketUpgrade")

/** The connection of a handshake until the tunnel takes it. */
interface PendingUpgrade {
  readonly socket: Socket
  readonly held: Array<Buffer>
  heldBytes: number
  taken: boolean
  readonly onData: (chunk: Buffer) => void
  readonly onEnd: () => void
}

type Slot = { [kUpgrade]?: PendingUpgrade }

const noop = (): void => {}

/** Whether `req` came through `handleUpgrade` (a WebSocket handshake on HTTP/1.1). */
export const isUpgradeRequest = (req: IncomingMessage): boolean => (req as IncomingMessage & Slot)[kUpgrade] !== undefined

/**
 * A WebSocket handshake the server handed over (`upgrade` event): `handle(req, res)` runs it
 * like any request, on a response bound to the socket. A response still being written on the
 * connection (pipelined before it) finishes first.
 */
export const handleUpgrade = (
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  handle: (req: IncomingMessage, res: ServerResponse) => void
): void => {
  socket.on("error", noop)
  const busy = (socket as { _httpMessage?: ServerResponse | null })._httpMessage
  if (busy !== null && busy !== undefined && !busy.writableFinished) {
    // node leaves the socket with the response before; ours waits for it
    socket.pause()
    busy.once("finish", () => setImmediate(() => (socket.destroyed ? undefined : start(req, socket, head, handle))))
    busy.once("close", () => {
      if (!busy.writableFinished) socket.destroy()
    })
    return
  }
  start(req, socket, head, handle)
}

const start = (req: IncomingMessage, socket: Socket, head: Buffer, handle: (req: IncomingMessage, res: ServerResponse) => void): void => {
  ;(socket as { _httpMessage?: ServerResponse | null })._httpMessage = null
  const res = new ServerResponse(req)
  // no HTTP parser is left on this connection: whatever answer it gets is its last
  res.shouldKeepAlive = false
  const pending: PendingUpgrade = {
    socket,
    held: head.length > 0 ? [head] : [],
    heldBytes: head.length,
    taken: false,
    onData: (chunk) => {
      pending.held.push(chunk)
      pending.heldBytes += chunk.length
      if (pending.heldBytes > HELD_BEFORE_TUNNEL) socket.pause()
    },
    // the client left (or half-closed) during the handshake: it is gone for us
    onEnd: () => socket.destroy()
  }
  ;(req as IncomingMessage & Slot)[kUpgrade] = pending
  socket.on("data", pending.onData)
  socket.on("end", pending.onEnd)
  res.assignSocket(socket)
  res.on("finish", () => {
    if (pending.taken) return
    // the handshake ended in an ordinary answer: the connection ends with it
    socket.end()
    const timer = setTimeout(() => socket.destroy(), ANSWER_FLUSH_MS)
    timer.unref()
    socket.once("close", () => clearTimeout(timer))
  })
  socket.resume()
  handle(req, res)
}

/**
 * After the 101 went out through `res` (`writeHead` + `end`): the socket leaves the response
 * and the handshake, with the client bytes read meanwhile. `res` then closes (its request is
 * over; the tunnel is not a request in flight). Undefined when the client is already gone.
 */
export const takeUpgradedSocket = (req: IncomingMessage, res: ServerResponse): { readonly socket: Socket; readonly held: ReadonlyArray<Buffer> } | undefined => {
  const pending = (req as IncomingMessage & Slot)[kUpgrade]
  if (pending === undefined || pending.taken) return undefined
  pending.taken = true
  const socket = pending.socket
  socket.off("data", pending.onData)
  socket.off("end", pending.onEnd)
  delete (req as IncomingMessage & Slot)[kUpgrade]
  res.detachSocket(socket)
  // the response's `close` (in-flight accounting, the pipeline's early-close checks) once it is finished
  let closed = false
  const close = () => {
    if (closed) return
    closed = true
    ;(res as { destroyed: boolean }).destroyed = true
    res.emit("close")
  }
  if (res.writableFinished) setImmediate(close)
  else {
    res.once("finish", () => setImmediate(close))
    socket.once("close", () => setImmediate(close))
  }
  if (socket.destroyed) return undefined
  return { socket, held: pending.held }
}
