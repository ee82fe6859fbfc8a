/**
 * An origin that reads a request head and then stops reading the connection: the request
 * body backs up in the socket buffers, so the proxy's upload stalls (the upstream `write`
 * timeout must fire). It never answers; `release()` makes it read (and discard) again. Listens on 127.0.0.1 port 0; `close()` destroys
 * every socket.
 */
import * as net from "node:net"
import { type CountingOrigin, serveCounting } from "./faults.js"

export interface NonReadingOrigin extends CountingOrigin {
  /**
   * Starts reading again (and discarding) on every connection. A socket that is not read
   * does not notice its peer closing: call this to see whether the sender tore it down.
   */
  readonly release: () => void
  /** Connections open now that carried a request head (the stalled ones; idle ones excluded). */
  readonly stalledConnections: () => number
}

export const nonReadingOrigin = async (): Promise<NonReadingOrigin> => {
  const stalled = new Set<net.Socket>()
  let released = false
  let requests = 0
  const server = net.createServer((socket) => {
    socket.on("close", () => stalled.delete(socket))
    socket.on("error", () => {})
    let head = ""
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1")
      if (head.includes("\r\n\r\n")) {
        requests++
        stalled.add(socket)
        socket.off("data", onData)
        // from now on nothing is read: the kernel buffers fill and the sender blocks
        socket.pause()
        if (released) socket.resume()
      } else if (head.length > 64 * 1024) {
        socket.destroy()
      }
    }
    socket.on("data", onData)
  })
  const { sockets, ...origin } = await serveCounting(server, () => requests)
  return {
    ...origin,
    stalledConnections: () => stalled.size,
    release: () => {
      released = true
      for (const s of sockets) s.resume()
    }
  }
}
