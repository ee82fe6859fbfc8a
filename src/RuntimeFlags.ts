/**
 * V8 flags the proxy runs with (DESIGN.md §2: the program sets them, not the user). The
 * entry point re-executes itself with them, and cluster workers get them in `execArgv`.
 *
 * - `--max-semi-space-size=64`: a young generation sized for a proxy, whose per-request
 *   objects all die young. Worth ~30 % of the CPU per request here (bench/README.md).
 * - `--no-allocation-site-pretenuring`: once V8 has seen request objects survive a few
 *   young collections (while the young generation grows under load), it starts allocating
 *   them in the old generation directly; dead old objects then keep the young objects they
 *   point to alive until the next full collection. Measured: young collections went from
 *   ~2 ms to 50-60 ms a few seconds into sustained load, p99 from ~10 ms to ~55 ms, and
 *   throughput dropped by ~15 %. Without pretenuring they stay at ~2 ms.
 */
export const PROXY_V8_FLAGS: ReadonlyArray<string> = ["--max-semi-space-size=64", "--no-allocation-site-pretenuring"]
