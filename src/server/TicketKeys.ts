/**
 * TLS session ticket keys (48 bytes: name, HMAC and AES keys), one set per process tree so that
 * a session resumed on any worker of `system { worker-threads }` is accepted: the cluster
 * primary makes them, hands them to each worker it forks (`SENTINEL_TLS_TICKET_KEYS`) and sends
 * new ones to all workers every `TICKET_KEY_ROTATION_MS` (then tickets issued before are
 * refused and those clients make a full handshake). A single process makes and rotates its own.
 * Listeners subscribe: a rotation reaches every TLS server at once (`setTicketKeys`).
 *
 * Tickets are off on a listener with `session-resumption #false` (Tls.ts sets SSL_OP_NO_TICKET).
 */
import cluster from "node:cluster"
import { randomBytes } from "node:crypto"

/** How long one set of ticket keys is used before the next one replaces it. */
export const TICKET_KEY_ROTATION_MS = 12 * 60 * 60 * 1000

export const TICKET_KEYS_ENV = "SENTINEL_TLS_TICKET_KEYS"

export const newTicketKeys = (): Buffer => randomBytes(48)

const fromEnv = (): Buffer | undefined => {
  const v = process.env[TICKET_KEYS_ENV]
  if (v === undefined) return undefined
  const b = Buffer.from(v, "base64")
  return b.length === 48 ? b : undefined
}

let keys: Buffer | undefined
let rotation: NodeJS.Timeout | undefined
const subscribers = new Set<(keys: Buffer) => void>()

/** The keys in force. Outside a cluster worker, the first call starts the process's own rotation. */
export const ticketKeys = (): Buffer => {
  if (keys === undefined) {
    const given = cluster.isWorker ? fromEnv() : undefined
    keys = given ?? newTicketKeys()
    if (given === undefined && rotation === undefined) {
      rotation = setInterval(() => setTicketKeys(newTicketKeys()), TICKET_KEY_ROTATION_MS)
      rotation.unref()
    }
  }
  return keys
}

/** New keys for every subscribed server (the primary's rotation, or this process's own). */
export const setTicketKeys = (next: Buffer): void => {
  if (next.length !== 48) return
  keys = next
  for (const s of subscribers) {
    try {
      s(next)
    } catch {
      // a closed server: nothing to rotate
    }
  }
}

/** Calls `fn` with each new set of keys; returns the unsubscribe. */
export const onTicketKeys = (fn: (keys: Buffer) => void): (() => void) => {
  subscribers.add(fn)
  return () => subscribers.delete(fn)
}
