/**
 * The memory start-up leaves behind, given back as soon as the proxy is up (issue 18, memory;
 * bench/README.md "Peak under load").
 *
 * Loading the modules and decoding the configuration allocate tens of MiB in which nearly
 * everything survives a young collection. V8 grows the young generation on survival: by the
 * time the listeners are bound it is 16 MiB per semi-space (32 committed) with the proxy's
 * `--max-semi-space-size=64`, against 4 for the Node ceiling, and V8 gives it back only when
 * its memory reducer runs, 8-35 s later on an idle process, never under load. Load then grows
 * it from there, so the proxy reached the largest young generation sooner than the ceiling.
 *
 * One full collection that reduces memory (the DevTools protocol's
 * `HeapProfiler.collectGarbage`, i.e. V8's low-memory notification: what the memory reducer
 * does, at a chosen moment) shrinks the young generation to its minimum and releases the
 * pages: about 100 ms once, right after the listeners are bound (Program.ts). Under load V8
 * grows the young generation again as it would from a fresh start. An in-process inspector
 * session opens no port. A Node built without the inspector skips it (the memory reducer still runs later).
 */

/**
 * Collects all garbage and shrinks the heap; resolves `true` once done, `false` when this Node
 * has no inspector (or the collection failed). Never rejects.
 */
export const releaseStartupMemory = async (): Promise<boolean> => {
  let inspector: typeof import("node:inspector")
  try {
    inspector = await import("node:inspector")
  } catch {
    return false // node built --without-inspector: ERR_INSPECTOR_NOT_AVAILABLE
  }
  return new Promise<boolean>((resolve) => {
    const session = new inspector.Session()
    try {
      session.connect()
      session.post("HeapProfiler.collectGarbage", (err) => {
        // disconnecting inside the protocol's callback blocks the thread: after it returns
        setImmediate(() => {
          session.disconnect()
          resolve(err === null)
        })
      })
    } catch {
      resolve(false)
    }
  })
}
