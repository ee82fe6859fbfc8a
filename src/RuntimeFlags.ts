/**
 * V8 flags the proxy runs with (DESIGN.md §2: the program sets them, not the user). The
 * entry point re-executes itself with them, and cluster workers get them in `execArgv`.
 *
 * - `--max-semi-space-size=64`: a young generation sized for a proxy, whose per-request
 *   objects all die young. Worth ~30 % of the CPU per request here (bench/README.md).
 *   `SENTINEL_YOUNG_GENERATION_MB` sets it (MiB per semi-space, 1-1024; `0` = V8's own
 *   default, 16): the knob for operators who prefer memory to CPU.
 * - `--no-allocation-site-pretenuring`: once V8 has seen request objects survive a few
 *   young collections (while the young generation grows under load), it starts allocating
 *   them in the old generation directly; dead old objects then keep the young objects they
 *   point to alive until the next full collection. Measured: young collections went from
 *   ~2 ms to 50-60 ms a few seconds into sustained load, p99 from ~10 ms to ~55 ms, and
 *   throughput dropped by ~15 %. Without pretenuring they stay at ~2 ms.
 */

/** MiB per semi-space when `SENTINEL_YOUNG_GENERATION_MB` is not set. */
export const DEFAULT_YOUNG_GENERATION_MB = 64

export const PROXY_V8_FLAGS: ReadonlyArray<string> = [`--max-semi-space-size=${DEFAULT_YOUNG_GENERATION_MB}`, "--no-allocation-site-pretenuring"]

/**
 * The flags for this environment: `SENTINEL_YOUNG_GENERATION_MB` (unset: 64; `0`: leave V8's
 * default). A value that is not an integer in 0-1024 is an error naming the variable.
 */
export const proxyV8Flags = (env: Readonly<Record<string, string | undefined>>): ReadonlyArray<string> | Error => {
  const raw = env["SENTINEL_YOUNG_GENERATION_MB"]
  if (raw === undefined || raw.trim() === "") return PROXY_V8_FLAGS
  const mb = /^\d{1,4}$/.test(raw.trim()) ? Number(raw.trim()) : NaN
  if (!Number.isInteger(mb) || mb > 1024) {
    return new Error(`SENTINEL_YOUNG_GENERATION_MB must be an integer from 0 to 1024 (MiB per semi-space; 0 = V8's default), got ${JSON.stringify(raw)}`)
  }
  return mb === 0 ? ["--no-allocation-site-pretenuring"] : [`--max-semi-space-size=${mb}`, "--no-allocation-site-pretenuring"]
}
