/**
 * Reading a request body into memory, bounded: used where a body must be
 * held whole (agent body inspection, replayable bodies for retries).
 */
import type { IncomingMessage } from "node:http"

export type BodyRead =
  | { readonly _tag: "Read"; readonly data: Buffer; readonly complete: boolean }
  | { readonly _tag: "Failed" }

/**
 * Reads `req` until its end (`complete: true`) or until more than `limit`
 * bytes are in (`complete: false`, the stream is paused and keeps the rest).
 * A client that goes away gives `Failed`. `done` is called once, unless the
 * returned cancel function is called first.
 */
export const readBodyUpTo = (req: IncomingMessage, limit: number, done: (read: BodyRead) => void): (() => void) => {
  if (req.readableEnded) {
    done({ _tag: "Read", data: Buffer.alloc(0), complete: true })
    return () => {}
  }
  const chunks: Array<Buffer> = []
  let n = 0
  // A body that came in one chunk (the usual case for a few KiB: node's parser hands each
  // socket read's body bytes over as a Buffer of their own) is that chunk, not a copy of it.
  const whole = (): Buffer => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n))
  const cleanup = () => {
    req.off("data", onData)
    req.off("end", onEnd)
    req.off("error", onFail)
    req.off("close", onClose)
  }
  const onData = (c: Buffer) => {
    chunks.push(c)
    n += c.length
    if (n > limit) {
      cleanup()
      req.pause()
      done({ _tag: "Read", data: whole(), complete: false })
    }
  }
  const onEnd = () => {
    cleanup()
    done({ _tag: "Read", data: whole(), complete: true })
  }
  const onFail = () => {
    cleanup()
    done({ _tag: "Failed" })
  }
  const onClose = () => {
    if (!req.readableEnded) onFail()
  }
  req.on("data", onData)
  req.once("end", onEnd)
  req.once("error", onFail)
  req.once("close", onClose)
  return () => {
    cleanup()
    req.pause()
  }
}
