/**
 * Request collapsing: the first miss for a key fills it; concurrent misses for the same key
 * wait (up to `lock-timeout`) for that fill, then look again (a hit) or go upstream themselves.
 * A background refresh (stale-while-revalidate) holds the key's lock too, so one runs at a time.
 */

export type LockOutcome = "filled" | "released" | "timeout"

interface Waiter {
  readonly done: (outcome: LockOutcome) => void
  timer: NodeJS.Timeout | undefined
}

export class FillLocks {
  private readonly held = new Map<string, Array<Waiter>>()

  /** Takes the key's lock; false when another request holds it. */
  acquire(key: string): boolean {
    if (this.held.has(key)) return false
    this.held.set(key, [])
    return true
  }

  isHeld(key: string): boolean {
    return this.held.has(key)
  }

  /** Waits for the key's holder; `done` once (unless cancelled): filled, released unfilled, or timed out. */
  wait(key: string, timeoutMs: number, done: (outcome: LockOutcome) => void): () => void {
    const waiters = this.held.get(key)
    if (waiters === undefined) {
      done("released")
      return () => {}
    }
    const w: Waiter = { done, timer: undefined }
    const remove = () => {
      const i = waiters.indexOf(w)
      if (i !== -1) waiters.splice(i, 1)
    }
    w.timer = setTimeout(() => {
      remove()
      done("timeout")
    }, timeoutMs)
    w.timer.unref?.()
    waiters.push(w)
    return () => {
      if (w.timer !== undefined) clearTimeout(w.timer)
      remove()
    }
  }

  /** The holder is done: every waiter learns whether the key was filled. */
  release(key: string, filled: boolean): void {
    const waiters = this.held.get(key)
    if (waiters === undefined) return
    this.held.delete(key)
    for (const w of waiters) {
      if (w.timer !== undefined) clearTimeout(w.timer)
      w.done(filled ? "filled" : "released")
    }
  }

  /** Requests waiting now (tests, stats). */
  waiting(): number {
    let n = 0
    for (const w of this.held.values()) n += w.length
    return n
  }
}
