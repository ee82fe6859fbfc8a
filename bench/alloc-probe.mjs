// Preloaded (`--import`) by bench/alloc-profile.mjs into the process it measures: V8's sampling
// heap profiler through an in-process inspector session, counting objects that were collected
// as well as the live ones (so: all that was allocated), started on SIGUSR2 and written to
// ALLOC_PROFILE_OUT when the process exits.
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector"

const session = new Session()
session.connect()
session.post("HeapProfiler.enable")
process.on("SIGUSR2", () => {
  session.post("HeapProfiler.startSampling", {
    samplingInterval: Number(process.env.ALLOC_SAMPLING_BYTES ?? 2048),
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true
  })
  // (the profiler runs from here: alloc-profile.mjs waits for this file before it sends load)
  writeFileSync(`${process.env.ALLOC_PROFILE_OUT}.started`, "")
})
process.on("exit", () => {
  // an in-process session answers synchronously
  session.post("HeapProfiler.stopSampling", (err, r) => {
    if (err === null && r !== undefined) writeFileSync(process.env.ALLOC_PROFILE_OUT, JSON.stringify(r.profile))
  })
})
