/**
 * The encoder a proxied response body goes through (the `compress` filter, pipeline/EncodingSink.ts):
 * node:zlib's native handle driven synchronously, on the event loop, the way nginx's gzip filter
 * runs zlib in its worker's loop, and gzip/deflate handles pooled: reset and reused by the next
 * response instead of set up and torn down per response.
 *
 * Measured (bench/compress-bench.mjs, perf of every thread, 64 KiB JSON at level 6): a zlib
 * Transform stream per response cost ~45-50 us beyond deflate itself to create and destroy
 * (deflateInit allocates and zeroes ~256 KiB; the stream's JS objects), each write and the final
 * flush were a job on libuv's pool plus the wake-ups either way (the main thread was preempted in
 * `uv_queue_work` on one CPU), and the upstream chunks were copied into one batch to save jobs.
 * Here every chunk goes straight into deflate, without copies, jobs or stream machinery.
 *
 * The loop is held for the time zlib takes on one upstream chunk (at most a socket read, 64 KiB:
 * ~0.35 ms at level 6), then serves others; back-pressure is the next sink's (the caller pauses
 * the upstream while it is full). Memory: zlib's state per response being encoded
 * (gzip/deflate ~256 KiB, brotli bounded by its window) plus at most POOL_IDLE idle gzip/deflate
 * states per level, and one CHUNK_SIZE output buffer, whose slices are what the next sink gets.
 *
 * This uses the handle behind node's zlib streams (`_handle.writeSync` and `_writeState`, what
 * node's own `zlib.*Sync` functions drive; the same in Node 20, 22 and 24). A node without them
 * fails at startup, naming what is missing (test/compress/BodyEncoder.test.ts pins it).
 */
import { constants, createBrotliCompress, createDeflate, createGzip } from "node:zlib"
import type { BodyEncoder } from "../pipeline/Stage.js"
import type { ContentCoding } from "../http/ContentCoding.js"

/** Output buffer size (node's own zlib default): the largest piece handed to the next sink. */
const CHUNK_SIZE = 16 * 1024
/** Idle gzip/deflate states kept per (coding, level): ~256 KiB each. */
export const POOL_IDLE = 8

interface Handle {
  writeSync(flush: number, input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number): void
  reset(): void
}
interface Engine {
  readonly _handle: Handle | null
  readonly _writeState: Uint32Array
  on(event: "error", listener: (e: Error) => void): unknown
  close(): void
}

/**
 * Upstream chunks are gathered up to this many bytes before zlib runs on them: a response's
 * deflate then runs in one stretch with its state warm in the CPU's cache, instead of a few
 * microseconds per socket read interleaved with the other responses' (and their states'); a body
 * of at most this size takes a zlib state only at its end, so one pooled state serves them all.
 * Bounded: at most this much is held per response; deflate holds its input until a block fills
 * anyway (measured: bench/compress-bench.mjs, bench/README.md).
 */
export const ENCODER_INPUT_BATCH = 64 * 1024

const EMPTY = Buffer.alloc(0)

/** One zlib (or brotli) state with its output buffer: pooled for gzip/deflate. */
class ZlibState {
  private out: Buffer = Buffer.allocUnsafe(CHUNK_SIZE)
  private outOff = 0
  private error: Error | undefined = undefined

  constructor(
    private readonly engine: Engine,
    readonly process: number,
    readonly finishFlag: number
  ) {
    engine.on("error", (e) => (this.error = e))
  }

  /** Runs `input` through zlib with `flush`; every piece of output goes to `emit`, in order. */
  run(input: Buffer, flush: number, emit: (b: Buffer) => void): void {
    const handle = this.engine._handle
    if (handle === null) throw new Error("encoder closed")
    const state = this.engine._writeState
    let inOff = 0
    let inLen = input.length
    for (;;) {
      const room = CHUNK_SIZE - this.outOff
      handle.writeSync(flush, input, inOff, inLen, this.out, this.outOff, room)
      if (this.error !== undefined) throw this.error
      const availOut = state[0]
      const availIn = state[1]
      const have = room - availOut
      if (have > 0) {
        const piece = this.out.subarray(this.outOff, this.outOff + have)
        this.outOff += have
        emit(piece)
      }
      if (this.outOff >= CHUNK_SIZE) {
        // the slices handed out keep the old buffer alive until they are written
        this.out = Buffer.allocUnsafe(CHUNK_SIZE)
        this.outOff = 0
      }
      // output room left over: zlib took all it could of the input
      if (availOut !== 0) return
      inOff += inLen - availIn
      inLen = availIn
    }
  }

  /** Back to `pool` when it ended cleanly and there is room, reset for the next body; closed otherwise. */
  release(pool: Array<ZlibState> | undefined, finished: boolean): void {
    const handle = this.engine._handle
    if (finished && pool !== undefined && handle !== null && this.error === undefined && pool.length < POOL_IDLE) {
      try {
        handle.reset()
        pool.push(this)
        return
      } catch {
        // not reusable: closed below
      }
    }
    this.engine.close()
  }
}

const pools = new Map<string, Array<ZlibState>>()

class ZlibBodyEncoder implements BodyEncoder {
  private state: ZlibState | undefined = undefined
  private batch: Array<Buffer> = []
  private batched = 0
  private closed = false

  constructor(
    /** A fresh state when the pool has none. */
    private readonly make: () => ZlibState,
    /** The pool states go back to; undefined: closed after one body (brotli: sized per body). */
    private readonly pool: Array<ZlibState> | undefined
  ) {}

  private take(): ZlibState {
    if (this.closed) throw new Error("encoder closed")
    return (this.state ??= this.pool?.pop() ?? this.make())
  }

  /** Runs the gathered chunks through zlib, the last with `last` (the finish flag) when given. */
  private flush(emit: (b: Buffer) => void, last?: number): void {
    const state = this.take()
    const batch = this.batch
    this.batch = []
    this.batched = 0
    const n = batch.length
    for (let i = 0; i < n; i++) state.run(batch[i], i === n - 1 && last !== undefined ? last : state.process, emit)
    if (n === 0 && last !== undefined) state.run(EMPTY, last, emit)
  }

  write(chunk: Buffer, emit: (b: Buffer) => void): void {
    if (this.closed) throw new Error("encoder closed")
    this.batch.push(chunk)
    this.batched += chunk.length
    if (this.batched >= ENCODER_INPUT_BATCH) this.flush(emit)
  }

  finish(emit: (b: Buffer) => void): void {
    const state = this.take()
    this.flush(emit, state.finishFlag)
    this.release(true)
  }

  discard(): void {
    this.release(false)
  }

  private release(finished: boolean): void {
    if (this.closed) return
    this.closed = true
    this.batch = []
    const state = this.state
    this.state = undefined
    state?.release(this.pool, finished)
  }
}

const usable = (engine: unknown): engine is Engine => {
  const e = engine as Partial<Engine>
  return typeof e._handle?.writeSync === "function" && typeof e._handle.reset === "function" && e._writeState instanceof Uint32Array
}

let supported: boolean | undefined

/**
 * Throws, saying plainly what is missing, on a node without the handle. Called when a
 * `compress` filter is compiled (start or reload), so a proxy without one never makes the probe's
 * gzip state, and one with it fails there rather than on a request.
 */
export const requireEncoderSupport = (): void => {
  if (supported === undefined) {
    const probe = createGzip()
    supported = usable(probe)
    probe.close()
  }
  if (!supported) throw new Error(`the compress filter needs node:zlib's stream handle (_handle.writeSync, _writeState), which node ${process.version} lacks`)
}

/**
 * A synchronous encoder for one response body (see the module comment). `level`: zlib level
 * for gzip/deflate (1-9); `brotliParams`: brotli's parameters for this body (quality, window,
 * size hint).
 */
export const createBodyEncoder = (coding: ContentCoding, level: number, brotliParams: Record<number, number>): BodyEncoder => {
  if (coding === "br") {
    const make = () => new ZlibState(createBrotliCompress({ params: brotliParams }) as unknown as Engine, constants.BROTLI_OPERATION_PROCESS, constants.BROTLI_OPERATION_FINISH)
    return new ZlibBodyEncoder(make, undefined)
  }
  const key = `${coding}:${level}`
  let pool = pools.get(key)
  if (pool === undefined) pools.set(key, (pool = []))
  const make = () => new ZlibState((coding === "gzip" ? createGzip({ level }) : createDeflate({ level })) as unknown as Engine, constants.Z_NO_FLUSH, constants.Z_FINISH)
  return new ZlibBodyEncoder(make, pool)
}

/** Idle encoder states pooled for (coding, level) (tests). */
export const idleEncoders = (coding: ContentCoding, level: number): number => pools.get(`${coding}:${level}`)?.length ?? 0
