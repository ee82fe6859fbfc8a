/**
 * The request body read for `request-body-mode "stream"` agents: each chunk is
 * handed over as it arrives (reading pauses until the agents answered it),
 * while the whole is kept for the upstream, as `readBodyUpTo` does. Once no
 * agent wants more chunks, reading goes on until the end or past `holdLimit`
 * bytes (the buffer-mode agents' cap), like `readBodyUpTo`. Plain callbacks.
 */
import type { IncomingMessage } from "node:http"
import type { BodyRead } from "../pipeline/BodyRead.js"
import type { BodyChunk } from "../pipeline/Stage.js"

export interface StreamBodyOptions {
  /** Past this many bytes in total, stop: `done` with `complete: false` (the caller answers 413). */
  readonly maxBytes: number
  /** Once no chunk is wanted any more, stop past this many bytes (`complete: false`). */
  readonly holdLimit: number
  /** Whether an agent still wants chunks. */
  readonly wantsChunks: () => boolean
  /** Content-Length, when the request has one. */
  readonly total: number | undefined
}

const EMPTY = Buffer.alloc(0)

/**
 * `onChunk` gets each chunk and a `next` to call when the agents are done with it (not calling
 * it stops the read: the caller has answered). The last chunk has `isLast` (an empty one at the
 * end when the size was not known). `done` once at the end (or at a limit, or `Failed` when the
 * client goes away), unless the returned cancel runs first.
 */
export const streamBody = (
  req: IncomingMessage,
  o: StreamBodyOptions,
  onChunk: (chunk: BodyChunk, next: () => void) => void,
  done: (read: BodyRead) => void
): (() => void) => {
  const chunks: Array<Buffer> = []
  let n = 0
  let sent = 0
  let index = 0
  let busy = false
  let ended = req.readableEnded
  let sentLast = false
  let finished = false
  const queue: Array<Buffer> = []

  const cleanup = () => {
    req.off("data", onData)
    req.off("end", onEnd)
    req.off("error", onFail)
    req.off("close", onClose)
  }
  const finish = (read: BodyRead) => {
    if (finished) return
    finished = true
    cleanup()
    if (read._tag === "Read" && !read.complete) req.pause()
    done(read)
  }
  const send = (data: Buffer, isLast: boolean) => {
    busy = true
    sent += data.length
    if (isLast) sentLast = true
    onChunk({ data, index: index++, isLast, bytes: sent, total: o.total }, () => {
      busy = false
      if (!finished) pump()
    })
  }
  const pump = (): void => {
    while (!busy && !finished) {
      if (queue.length > 0) {
        const c = queue.shift()!
        if (!o.wantsChunks()) continue
        const last = queue.length === 0 && (ended || (o.total !== undefined && sent + c.length >= o.total))
        send(c, last)
        return
      }
      if (!o.wantsChunks()) {
        if (ended) return finish({ _tag: "Read", data: Buffer.concat(chunks, n), complete: true })
        if (n > o.holdLimit) return finish({ _tag: "Read", data: Buffer.concat(chunks, n), complete: false })
        req.resume()
        return
      }
      if (ended) {
        if (!sentLast) return send(EMPTY, true)
        return finish({ _tag: "Read", data: Buffer.concat(chunks, n), complete: true })
      }
      req.resume()
      return
    }
  }
  const onData = (c: Buffer) => {
    chunks.push(c)
    n += c.length
    if (n > o.maxBytes) return finish({ _tag: "Read", data: Buffer.concat(chunks, n), complete: false })
    queue.push(c)
    if (o.wantsChunks()) req.pause()
    pump()
  }
  const onEnd = () => {
    ended = true
    pump()
  }
  const onFail = () => finish({ _tag: "Failed" })
  const onClose = () => {
    if (!req.readableEnded && !ended) onFail()
  }
  if (ended) {
    pump()
  } else {
    req.on("data", onData)
    req.once("end", onEnd)
    req.once("error", onFail)
    req.once("close", onClose)
  }
  return () => {
    if (finished) return
    finished = true
    cleanup()
    req.pause()
  }
}
