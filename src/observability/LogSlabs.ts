/**
 * The byte slabs the log writer encodes lines into (LogWriter.ts), reused once every region
 * handed out of them has been written.
 *
 * Why: a fresh 256 KiB slab per 256 KiB of log lines is malloc'ed outside the JS heap, and it
 * is freed only when the garbage collector finds its Buffer dead. Under load a slab lives long
 * enough (filled, then written on the thread pool) to be promoted to the old generation, so the
 * dead ones pile up until the next full collection: measured 6-7 MiB more of the process's
 * malloc heap and peak RSS with the access log on than off (bench/README.md "Peak under load").
 * Reusing them keeps that at the few slabs in use.
 *
 * Only for the writer's own file and stdout streams, which are done with a chunk when its
 * write callback reports success; a custom sink may keep the chunks it is given, so its slabs
 * are never reused. A region that failed or was dropped never counts as written, so its slab
 * is left to the garbage collector.
 */

export interface Slab {
  readonly bytes: Buffer
  /** Regions sealed out of this slab and not yet confirmed written. */
  pending: number
  /** No more lines go into it (a newer slab took over). */
  retired: boolean
}

export interface SlabPool {
  /** A slab with at least `room` bytes: a reused one when there is one that large, else a new one. */
  readonly take: (room: number) => Slab
  /** The slab is full: it may be reused once its pending regions are written. */
  readonly retire: (slab: Slab) => void
  /** One region of the slab was handed to the sink and written. */
  readonly written: (slab: Slab) => void
}

/** Slabs of `size` bytes, at most `keep` of them kept for reuse when `reuse`. */
export const makeSlabPool = (size: number, keep: number, reuse: boolean): SlabPool => {
  const free: Array<Buffer> = []
  const release = (slab: Slab) => {
    if (reuse && slab.retired && slab.pending === 0 && slab.bytes.length === size && free.length < keep) free.push(slab.bytes)
  }
  return {
    take: (room) => ({ bytes: room <= size && free.length > 0 ? free.pop()! : Buffer.allocUnsafeSlow(Math.max(size, room)), pending: 0, retired: false }),
    retire: (slab) => {
      slab.retired = true
      release(slab)
    },
    written: (slab) => {
      slab.pending--
      release(slab)
    }
  }
}
