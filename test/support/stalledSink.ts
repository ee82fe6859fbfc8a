/**
 * A log sink whose consumer is stalled (a full disk, a paused log collector):
 * it accepts writes into a tiny buffer and completes none until `resume()`.
 */
import { Writable } from "node:stream"

export interface StalledSink {
  readonly stream: Writable
  /** Completes the held writes and every later one immediately. */
  readonly resume: () => void
  /** Lines received so far (completed or held). */
  readonly lines: () => Array<string>
}

export const stalledSink = (highWaterMark = 16): StalledSink => {
  const chunks: Array<string> = []
  const held: Array<() => void> = []
  let flowing = false
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString("utf8"))
      if (flowing) cb()
      else held.push(() => cb())
    }
  })
  return {
    stream,
    resume: () => {
      flowing = true
      for (const cb of held.splice(0)) cb()
    },
    lines: () => chunks.join("").split("\n").filter((l) => l !== "")
  }
}
