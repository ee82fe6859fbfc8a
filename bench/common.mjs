// What the benchmark scripts share: a work directory, child processes that die with the
// script, readiness checks, the upstream (nginx, else a Node origin) and Sentinel's config.
import { execFileSync, spawn, spawnSync } from "node:child_process"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import http from "node:http"
import net from "node:net"
import { resolve } from "node:path"
import { PROXY_V8_FLAGS, proxyV8Flags } from "../dist/RuntimeFlags.js"

export const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0

/** The Debian package of each command the benchmarks use, where its name differs. */
const PACKAGE_OF = { h2load: "nghttp2-client", taskset: "util-linux" }
/** Exits (2) naming the first of `cmds` that is not installed, and its package. */
export const requireCommands = (cmds) => {
  for (const cmd of cmds) {
    if (has(cmd)) continue
    console.error(`${cmd} is required: apt-get install -y ${PACKAGE_OF[cmd] ?? cmd}`)
    process.exit(2)
  }
}

const TICK_US = 1e6 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
/**
 * CPU time of a process (user + system, /proc), in microseconds: a process's own cost per
 * request, which a loaded machine disturbs far less than requests/s.
 */
export const cpuUs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return (Number(f[11]) + Number(f[12])) * TICK_US
}

/** CPU time of the children a process has waited for (cutime + cstime), in microseconds: e.g. wrk run by execFileSync. */
export const waitedChildrenCpuUs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
  return (Number(f[13]) + Number(f[14])) * TICK_US
}

/** `cpuUs` of a process and its live descendants (nginx's master and workers); 0 for a process that is gone. */
export const treeCpuUs = (pid) => {
  try {
    let us = cpuUs(pid)
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)) if (c !== "") us += treeCpuUs(Number(c))
    return us
  } catch {
    return 0
  }
}

/** `argv` pinned to one CPU when taskset is there. */
export const pin = (cpu, argv) => (has("taskset") ? ["taskset", "-c", String(cpu), ...argv] : argv)

/** A fresh directory; nginx workers run unprivileged, so the tree they serve must be readable. */
/**
 * A fresh directory under the system's temp dir for a run's configs and logs, removed when the
 * script exits (access logs of a run reach hundreds of MiB) unless BENCH_KEEP_WORK=1.
 */
export const workDir = (prefix) => {
  const work = mkdtempSync(join(tmpdir(), prefix))
  chmodSync(work, 0o755)
  process.on("exit", () => {
    if (process.env.BENCH_KEEP_WORK !== "1") rmSync(work, { recursive: true, force: true })
  })
  return work
}

const children = []
/**
 * Spawns a child that is stopped when the script exits: SIGKILL, or SIGTERM for a `graceful`
 * one (nginx: its master then stops its workers, which a SIGKILL would leave running).
 */
export const start = (argv, env = {}, { graceful = false } = {}) => {
  const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] })
  children.push({ child, graceful })
  return child
}
export const stopAll = () =>
  children.forEach(({ child, graceful }) => child.exitCode === null && child.kill(graceful ? "SIGTERM" : "SIGKILL"))
process.on("exit", stopAll)
process.on("SIGINT", () => process.exit(130))

/** Resolves once `GET path` on the port answers 200. */
export const waitReady = async (port, path = "/small") => {
  for (let i = 0; i < 1200; i++) {
    const ok = await new Promise((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
        res.resume()
        res.on("end", () => resolve(res.statusCode === 200))
      })
      req.on("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`port ${port} never became ready`)
}

/**
 * The upstream on CPU 1: nginx (1 worker) when installed, else a node:http origin. Serves
 * `/small` (20 bytes), `/static/64k.bin`, and `/post` (reads the request body, answers the
 * 3 bytes "ok\n"). Returns what it is, for the report.
 */
export const startUpstream = async (work, port) => {
  mkdirSync(join(work, "www/static"), { recursive: true })
  writeFileSync(join(work, "www/static/64k.bin"), Buffer.alloc(65536, 7))
  let kind
  if (has("nginx")) {
    kind = "nginx (1 worker, CPU 1)"
    writeFileSync(
      join(work, "nginx.conf"),
      `worker_processes 1; daemon off; pid ${work}/nginx.pid; error_log ${work}/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server { listen 127.0.0.1:${port}; root ${work}/www;
    location = /small { return 200 "12345678901234567890"; }
    location = /post { return 200 "ok\\n"; }
    location /static/ { } } }`
    )
    start(pin(1, ["nginx", "-c", join(work, "nginx.conf"), "-p", work]), {}, { graceful: true })
  } else {
    kind = "node:http origin (CPU 1)"
    writeFileSync(
      join(work, "origin.mjs"),
      `import http from "node:http"; const big = Buffer.alloc(65536, 7);
http.createServer((q, s) => {
  if (q.url === "/post") { q.resume(); q.on("end", () => s.end("ok\\n")); return }
  if (q.url === "/small") s.end("12345678901234567890"); else s.end(big)
}).listen(${port}, "127.0.0.1")`
    )
    start(pin(1, [process.execPath, join(work, "origin.mjs")]))
  }
  await waitReady(port)
  return kind
}

/**
 * Sentinel's benchmark configuration, written to `work/sentinel-<name>.kdl`: the full pipeline
 * (routing, header policy, JSON access log to a file, metrics), optionally with the `echo` agent
 * (on a Unix socket, `agentSocket`, or over gRPC, `agentGrpc` = "http://127.0.0.1:PORT";
 * `agentFailureMode` on its filter, else the agent's default, open),
 * optionally on an `https` listener (`tls`), and with `workerThreads` processes (default 1).
 */
export const sentinelConfig = (work, name, { port, upstreamPort, agentSocket, agentGrpc, agentFailureMode, accessLog = true, tls, workerThreads = 1 }) => {
  const path = join(work, `sentinel-${name}.kdl`)
  // With `tls: { certFile, keyFile, sessionResumption }` the listener is `https` (ALPN h2 and
  // http/1.1 on one port); `sessionResumption: false` turns tickets and resumption off.
  const listener = tls
    ? `listener "bench" { address "127.0.0.1:${port}"; protocol "https"; tls { cert-file "${tls.certFile}"; key-file "${tls.keyFile}"${tls.sessionResumption === false ? "; session-resumption #false" : ""} } }`
    : `listener "bench" { address "127.0.0.1:${port}" }`
  writeFileSync(
    path,
    `schema-version "1.0"
system { graceful-shutdown-timeout-secs 1; worker-threads ${workerThreads} }
listeners { ${listener} }
upstreams { upstream "origin" { target "127.0.0.1:${upstreamPort}" } }
${agentSocket || agentGrpc ? `agents { agent "echo" { ${agentSocket ? `unix-socket "${agentSocket}"` : `grpc "${agentGrpc}"`}; events "request_headers"; timeout-ms 1000 } }
filters { filter "echo" { type "agent"; agent "echo"${agentFailureMode ? `; failure-mode "${agentFailureMode}"` : ""} } }` : ""}
routes {
  route "health" { priority "high"; matches { path "/_health" }; builtin-handler "health" }
  route "all" {
    matches { path-prefix "/" }
    upstream "origin"
    ${agentSocket || agentGrpc ? `filters "echo"` : ""}
    policies { response-headers { set { "X-Served-By" "sentinel" } } }
  }
}
observability { logging { access-log { enabled #${accessLog ? "true" : "false"}; file "${work}/access-${name}.log"; format "json" } } }
`
  )
  return path
}

/**
 * h2load's options for a request body of `bytes` (`-d FILE`: a POST with that Content-Length),
 * the file written into `work`; none for 0 (a GET).
 */
export const bodyArgs = (work, bytes) => {
  if (!(bytes > 0)) return []
  const file = join(work, `body-${bytes}.bin`)
  writeFileSync(file, Buffer.alloc(bytes, 97))
  return ["-d", file]
}

/** A TCP port free on 127.0.0.1 right now. */
export const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

/**
 * One wrk run (one thread, on CPU 1) against `url`: requests/s, requests, p50/p99 in ms and
 * the non-2xx/3xx answers plus timeouts.
 */
export const runWrk = (url, { conns, seconds, headers = [] }) => {
  const argv = pin(1, ["wrk", "-t1", `-c${conns}`, `-d${seconds}s`, "--latency", ...headers.flatMap((h) => ["-H", h]), url])
  const out = execFileSync(argv[0], argv.slice(1), { encoding: "utf8" })
  const unit = (v, u) => Number(v) * ({ us: 0.001, ms: 1, s: 1000 }[u] ?? 1)
  const p = (q) => {
    const m = new RegExp(`\\s${q}%\\s+([\\d.]+)(us|ms|s)`).exec(out)
    return m ? unit(m[1], m[2]) : NaN
  }
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    p50: p(50),
    p99: p(99),
    errors: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors: .*?(\d+) timeout/.exec(out)?.[1] ?? 0)
  }
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/**
 * A variant of the A/B scripts (cpu-ab, idle-rss): `name=dist-dir` (a build of another
 * commit), `name=dist@16` (SENTINEL_YOUNG_GENERATION_MB=16 instead of the proxy's own flags),
 * `name=ceiling` (bench/ceiling.mjs, with the same V8 flags), `name=ceiling-plus`
 * (bench/ceiling-plus.mjs: the ceiling with trace ids, an access line and metrics), `name=dist+nolog`
 * (that build without its access log), and any of them followed by
 * `,--v8-flag,...` for flags added to those (e.g. `sz=dist,--optimize-for-size`).
 */
/** The hand-written proxies a variant may name instead of a build: bench/<name>.mjs. */
export const CEILINGS = ["ceiling", "ceiling-plus"]
export const parseVariant = (spec) => {
  const name = spec.slice(0, spec.indexOf("="))
  const [whole, ...extra] = spec.slice(spec.indexOf("=") + 1).split(",")
  // `+nolog`: this variant without its access log (cpu-ab)
  const noLog = whole.endsWith("+nolog")
  const what = noLog ? whole.slice(0, -"+nolog".length) : whole
  const [dir, ygen] = what.split("@")
  const flags = ygen === undefined ? PROXY_V8_FLAGS : proxyV8Flags({ SENTINEL_YOUNG_GENERATION_MB: ygen })
  if (flags instanceof Error) throw flags
  return { name, dir: CEILINGS.includes(dir) ? dir : resolve(dir), flags: [...flags, ...extra], ...(noLog ? { accessLog: false } : {}) }
}
