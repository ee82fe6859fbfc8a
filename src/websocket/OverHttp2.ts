/**
 * The HTTP/2 side of a WebSocket handshake (RFC 8441), between node's compat API and the
 * tunnel. The listener advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; a client opens a stream
 * with `:method CONNECT`, `:protocol websocket`, `:scheme`, `:path` and `:authority`. The
 * request runs the pipeline as the GET handshake it stands for; the upstream leg is an
 * HTTP/1.1 Upgrade with a key of our own (the client sends none). On the upstream's 101:
 *
 * - the client's stream gets `:status 200` with the 101's end-to-end headers, minus
 *   `Sec-WebSocket-Accept` (not used over HTTP/2), and stays open: its DATA frames carry the
 *   RFC 6455 frames both ways, with HTTP/2 flow control as the back-pressure (Tunnel.ts reads
 *   and writes the stream as it does a socket);
 * - END_STREAM is the FIN of either side, RST_STREAM its reset (RFC 8441 §5.1);
 * - the request leaves the in-flight count as an HTTP/1.1 tunnel does (its response `close`
 *   runs now; the compat layer emits it again when the stream closes, which finds nothing to run).
 */
import type { ServerResponse } from "node:http"
import type { ServerHttp2Stream } from "node:http2"

const streamOf = (res: ServerResponse): ServerHttp2Stream | undefined => (res as unknown as { stream?: ServerHttp2Stream }).stream

/** Removes every `name` (lower-case) from a flat header list, in place. */
export const removeHeader = (flat: Array<string>, name: string): void => {
  let w = 0
  for (let r = 0; r < flat.length; r += 2) {
    if (flat[r].toLowerCase() === name) continue
    flat[w++] = flat[r]
    flat[w++] = flat[r + 1]
  }
  flat.length = w
}

/**
 * Sends the 200 that opens the tunnel on the client's stream, with `flat` (the 101's end-to-end
 * headers and the route's). The stream, or undefined when the client is already gone. Throws
 * when node refuses a header (the caller answers 502).
 */
export const openHttp2Tunnel = (res: ServerResponse, flat: Array<string>): ServerHttp2Stream | undefined => {
  const stream = streamOf(res)
  if (stream === undefined || stream.destroyed || stream.closed) return undefined
  removeHeader(flat, "sec-websocket-accept")
  // compat's writeHead sends the HEADERS frame now (without END_STREAM)
  res.writeHead(200, flat)
  setImmediate(() => res.emit("close"))
  return stream
}
