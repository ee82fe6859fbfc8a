/**
 * Headers between the proxy's flat `[name, value, ...]` lists and the agent
 * protocol: the `{ name: [values] }` map events carry, and the set/add/remove
 * mutations answers carry. Plain functions (hot path).
 */
import type { HeaderMap, HeaderOp } from "./Protocol.js"

/**
 * Names an agent may not mutate: framing and connection management belong to
 * the proxy (a rewritten Content-Length or Transfer-Encoding would desync the
 * message). Mutations of these are ignored.
 */
export const PROTECTED_HEADERS: ReadonlySet<string> = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
  "http2-settings"
])

/**
 * A map of header names without `Object.prototype` in its chain (so `__proto__` or
 * `constructor` are plain names), yet an ordinary fast-properties object: a null-prototype
 * object (`Object.create(null)`) starts in V8's dictionary mode, which costs ~0.45 µs more per
 * event to build and `JSON.stringify` (node 20, 5 headers).
 */
function HeaderBag(this: Record<string, Array<string>>): void {}
HeaderBag.prototype = Object.create(null)

/** `{ lower-case name: [values...] }` from a flat list, in order. */
export const headerMapOf = (flat: ReadonlyArray<string>): HeaderMap => {
  const out: Record<string, Array<string>> = new (HeaderBag as unknown as new () => Record<string, Array<string>>)()
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i].toLowerCase()
    const values = out[name]
    if (values === undefined) out[name] = [flat[i + 1]]
    else values.push(flat[i + 1])
  }
  return out
}

/** Whether an op touches a protected header (it is then skipped). */
export const isProtectedOp = (op: HeaderOp): boolean =>
  PROTECTED_HEADERS.has(("set" in op ? op.set.name : "add" in op ? op.add.name : op.remove.name).toLowerCase())

/**
 * Applies mutations in order to a flat list and returns a new list:
 * `set` replaces every value of the name (appending when absent), `add`
 * appends, `remove` deletes every value. Names compare case-insensitively.
 */
export const applyHeaderOps = (flat: ReadonlyArray<string>, ops: ReadonlyArray<HeaderOp>): Array<string> => {
  let out = flat.slice()
  for (const op of ops) {
    if (isProtectedOp(op)) continue
    if ("add" in op) {
      out.push(op.add.name, op.add.value)
      continue
    }
    const name = ("set" in op ? op.set.name : op.remove.name).toLowerCase()
    const kept: Array<string> = []
    for (let i = 0; i + 1 < out.length; i += 2) {
      if (out[i].toLowerCase() !== name) kept.push(out[i], out[i + 1])
    }
    if ("set" in op) kept.push(op.set.name, op.set.value)
    out = kept
  }
  return out
}
