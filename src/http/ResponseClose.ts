/**
 * One `close` listener per response, however many parts of the proxy wait for it (the
 * listener's admission and in-flight count, the pipeline's client-gone handling). A second
 * `once("close")` on the same response costs a wrapper, a listener array and its copy at
 * every emit; on the request path that is measurable (DESIGN.md §2). Registers a listener,
 * does no I/O.
 */
import type { ServerResponse } from "node:http"

const kClose = Symbol("sentinel.responseClose")

type Slot = { [kClose]?: (() => void) | Array<() => void> | null }

function runClose(this: ServerResponse): void {
  const self = this as ServerResponse & Slot
  const pending = self[kClose]
  // later emits (a response closed twice) find nothing to run
  self[kClose] = null
  if (typeof pending === "function") return pending()
  if (pending) for (const fn of pending) fn()
}

/**
 * Calls `fn` when `res` emits `close` (once, in registration order). Registered after the
 * response closed, `fn` is never called, as with `res.once("close")`.
 */
export const onResponseClose = (res: ServerResponse, fn: () => void): void => {
  const self = res as ServerResponse & Slot
  const slot = self[kClose]
  if (slot === undefined) {
    self[kClose] = fn
    res.on("close", runClose)
  } else if (slot === null) {
    // already closed: like a `once` listener added after the event, it never runs
  } else if (typeof slot === "function") {
    self[kClose] = [slot, fn]
  } else {
    slot.push(fn)
  }
}

