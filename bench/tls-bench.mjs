#!/usr/bin/env node
// Sentinel vs nginx terminating TLS, in one run, on this machine.
//
//   npm run build && node bench/tls-bench.mjs [--rounds 3] [--duration 6] [--warmup 2] [--hs-conns 20]
//
// Layout (2 cores): the proxy under test is pinned to CPU 0; the load generator (wrk or
// h2load, one thread) and the upstream (nginx, 1 worker, plain HTTP, from common.mjs) share
// CPU 1. Both proxies use the same self-signed EC P-256 certificate (made here with the
// openssl CLI), TLS 1.2-1.3, ALPN h2 + http/1.1 on one port, and the same upstream over a
// keep-alive pool; both write an access log to a file.
//   - sentinel: dist/main.js with an `https` listener (bench/common.mjs `sentinelConfig`: the
//     full pipeline, JSON access log).
//   - nginx: 1 worker, `listen ... ssl http2`, upstream keepalive 64, buffered access log.
// Scenarios, each proxy in turn within a round (interleaved; the order alternates by round):
//   h1-small   wrk -t1 -c50, TLS HTTP/1.1 GET /small (20 B)
//   h2-small   h2load -c10 -m10 (10 connections x 10 streams), HTTP/2 GET /small
//   handshake  h2load --h1 -c<hs-conns> with `Connection: close`: every request on a new TLS
//              connection with a full handshake. h2load resumes sessions on reconnect, so this
//              scenario runs a second instance of each proxy with resumption off
//              (`session-resumption #false`; nginx `ssl_session_tickets off`, its session cache
//              is off by default); an openssl s_client check shows each instance's resumption.
// Reported per scenario: rate, Sentinel/nginx ratio, the proxy's own CPU (user + system from
// /proc, nginx master + worker) per request or handshake, the share of CPU 0 it used in the
// window (below ~90 %: the proxy was not the bottleneck), p99 (wrk; h2load's --log-file).
import { execFileSync, spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import https from "node:https"
import { join, dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { PROXY_V8_FLAGS } from "../dist/RuntimeFlags.js"
import { pin, requireCommands, sentinelConfig, start, startUpstream, stopAll, workDir } from "./common.mjs"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const { values: opt } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "6" },
    warmup: { type: "string", default: "2" },
    "hs-conns": { type: "string", default: "20" },
    scenarios: { type: "string", default: "h1-small,h2-small,handshake" },
    proxies: { type: "string", default: "sentinel,node,nginx" },
    keep: { type: "boolean", default: false } // keep the work directory (configs, logs)
  }
})
const ROUNDS = Number(opt.rounds), DURATION = Number(opt.duration), WARMUP = Number(opt.warmup), HS_CONNS = Number(opt["hs-conns"])
const SCENARIOS = opt.scenarios.split(",")
requireCommands(["wrk", "h2load", "nginx", "openssl", "taskset"])
process.on("SIGTERM", () => process.exit(143))
const work = workDir("sentinel-tls-bench-")

// ---- certificate: self-signed EC P-256 for 127.0.0.1 and localhost
const certFile = join(work, "cert.pem"), keyFile = join(work, "key.pem")
execFileSync("openssl", [
  "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
  "-keyout", keyFile, "-out", certFile, "-days", "7", "-subj", "/CN=localhost",
  "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"
], { stdio: ["ignore", "ignore", "pipe"] })

// ---- upstream (plain HTTP, CPU 1)
const UPSTREAM_PORT = 18680
const upstreamKind = await startUpstream(work, UPSTREAM_PORT)

// ---- proxies: `resume` false = the handshake scenario's instance
const nginxVersion = spawnSync("nginx", ["-v"], { encoding: "utf8" }).stderr.trim().replace(/^nginx version: /, "")
const nginxMajorMinor = nginxVersion.match(/nginx\/(\d+)\.(\d+)\.(\d+)/)?.slice(1).map(Number) ?? [0, 0, 0]
// `http2 on` exists from 1.25.1; before, `listen ... ssl http2`.
const newHttp2 = nginxMajorMinor[0] > 1 || nginxMajorMinor[1] > 25 || (nginxMajorMinor[1] === 25 && nginxMajorMinor[2] >= 1)
const nginxConfig = (port, resume) => {
  const dir = join(work, `nginx-tls-${port}`)
  mkdirSync(join(dir, "logs"), { recursive: true })
  writeFileSync(
    join(dir, "nginx.conf"),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  log_format bench '$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time $ssl_protocol $ssl_cipher reused=$ssl_session_reused';
  access_log ${dir}/access.log bench buffer=256k flush=1s;
  keepalive_requests 1000000; keepalive_timeout 120s;
  upstream origin { server 127.0.0.1:${UPSTREAM_PORT}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} ssl${newHttp2 ? "" : " http2"};${newHttp2 ? " http2 on;" : ""}
    ssl_certificate ${certFile}; ssl_certificate_key ${keyFile};
    # Sentinel's default range; nginx before 1.23.4 leaves TLS 1.3 out of its default.
    ssl_protocols TLSv1.2 TLSv1.3;
    ${resume ? "" : "ssl_session_tickets off;"}
    location / {
      proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto $scheme;
      add_header X-Served-By nginx;
    }
  }
}
`
  )
  return dir
}
const proxies = [
  {
    name: "sentinel",
    port: 18681,
    start: (port, resume) =>
      start(
        pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "dist/main.js"), "run", "-c",
          sentinelConfig(work, String(port), { port, upstreamPort: UPSTREAM_PORT, tls: { certFile, keyFile, sessionResumption: resume } })]),
        { SENTINEL_NO_RESPAWN: "1" }
      )
  },
  {
    // the Node ceiling (bench/tls-ceiling.mjs): what node's TLS + HTTP/2 + undici cost alone
    name: "node",
    port: 18683,
    start: (port, resume) =>
      start(pin(0, [process.execPath, ...PROXY_V8_FLAGS, join(root, "bench/tls-ceiling.mjs")]), {
        PORT: String(port),
        UPSTREAM_URL: `http://127.0.0.1:${UPSTREAM_PORT}`,
        CERT: certFile,
        KEY: keyFile,
        RESUME: resume ? "1" : "0"
      })
  },
  {
    name: "nginx",
    port: 18682,
    start: (port, resume) => {
      const dir = nginxConfig(port, resume)
      return start(pin(0, ["nginx", "-c", join(dir, "nginx.conf"), "-p", dir]), {}, { graceful: true })
    }
  }
]

/** Resolves once `GET path` over TLS answers 200. */
const waitReadyTls = async (port, path = "/small") => {
  for (let i = 0; i < 1200; i++) {
    const ok = await new Promise((resolve) => {
      const req = https.get({ host: "127.0.0.1", port, path, agent: false, rejectUnauthorized: false }, (res) => {
        res.resume()
        res.on("end", () => resolve(res.statusCode === 200))
      })
      req.on("error", () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`port ${port} never became ready over TLS`)
}

/** Does a second connection resume the first one's session? (openssl s_client, TLS 1.3 ticket) */
const resumes = (port) => {
  const sess = join(work, `sess-${port}.pem`)
  rmSync(sess, { force: true })
  const run = (extra) =>
    spawnSync("sh", ["-c", `(sleep 0.3) | openssl s_client -connect 127.0.0.1:${port} -servername localhost ${extra} 2>/dev/null`], { encoding: "utf8" }).stdout
  run(`-sess_out ${sess}`)
  try {
    readFileSync(sess)
  } catch {
    return false // no session (ticket) was received
  }
  return /^Reused,/m.test(run(`-sess_in ${sess}`))
}

// ---- CPU time of a process and its descendants (user + system), in microseconds
const TICK_US = 1e6 / Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
const tree = (pid) => {
  const kids = []
  try {
    for (const t of readdirSync(`/proc/${pid}/task`))
      kids.push(...readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number))
  } catch {}
  return [pid, ...kids.flatMap(tree)]
}
const cpuUs = (pid) =>
  tree(pid).reduce((sum, p) => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" ")
      return sum + (Number(f[11]) + Number(f[12])) * TICK_US
    } catch {
      return sum
    }
  }, 0)

// CPU pressure (PSI "some": share of wall time some runnable task waited for a CPU), the
// machine's own measure of how disturbed a window was.
const psiUs = () => {
  try {
    return Number(/^some .*total=(\d+)/m.exec(readFileSync("/proc/pressure/cpu", "utf8"))?.[1] ?? NaN)
  } catch {
    return NaN
  }
}

// ---- load generators, on CPU 1
const unit = (v, u) => Number(v) * ({ us: 0.001, ms: 1, s: 1000 }[u] ?? 1)
// A run that outlives its budget is killed (and reported as a failure): a stalled connection
// would otherwise hold h2load forever, as it has no timeout of its own by default.
const run = (argv, budgetS) => {
  const r = spawnSync(pin(1, argv)[0], pin(1, argv).slice(1), { encoding: "utf8", maxBuffer: 64 << 20, timeout: budgetS * 1000, killSignal: "SIGKILL" })
  const killed = r.error?.code === "ETIMEDOUT" || r.signal === "SIGKILL"
  return { out: (r.stdout ?? "") + (r.stderr ?? "") + (killed ? `\n[killed after ${budgetS}s: ${argv.join(" ")}]` : ""), killed }
}
const wrk = (port, seconds) => {
  const { out } = run(["wrk", "-t1", "-c50", `-d${seconds}s`, "--latency", `https://127.0.0.1:${port}/small`], seconds + 30)
  const p = (q) => {
    const m = new RegExp(`\\s${q}%\\s+([\\d.]+)(us|ms|s)`).exec(out)
    return m ? unit(m[1], m[2]) : NaN
  }
  const total = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const sockErrors = sock ? sock.slice(1).reduce((a, x) => a + Number(x), 0) : 0
  return {
    rate: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    ops: total - non2xx,
    p99: p(99),
    errors: non2xx + sockErrors,
    detail: sock || non2xx ? `non-2xx ${non2xx}${sock ? `, socket errors ${sock[0].replace("Socket errors: ", "")}` : ""}` : "",
    out
  }
}
// `amount`: { seconds } (-D) or { requests } (-n; h2load 1.52 never ends a -D run whose
// clients reconnect, so the handshake scenario counts requests instead).
const h2load = (port, amount, args, log) => {
  const logFile = join(work, "h2load.log")
  rmSync(logFile, { force: true })
  const t0 = process.hrtime.bigint()
  const { out, killed } = run(
    ["h2load", ...args, ...(amount.seconds ? ["-D", String(amount.seconds)] : ["-n", String(amount.requests)]), ...(log ? ["--log-file", logFile] : []), `https://127.0.0.1:${port}/small`],
    amount.seconds ? amount.seconds + 30 : 120
  )
  const fin = /finished in ([\d.]+)(ms|s),/.exec(out)
  const seconds = amount.seconds ?? (fin ? Number(fin[1]) * (fin[2] === "ms" ? 0.001 : 1) : Number(process.hrtime.bigint() - t0) / 1e9)
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out)
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out)
  const ok = Number(codes?.[1] ?? 0)
  const failed = req ? Number(req[5]) + Number(req[6]) + Number(req[7]) : 0
  const non2xx = codes ? Number(codes[2]) + Number(codes[3]) + Number(codes[4]) : 0
  let p99 = NaN
  if (log) {
    try {
      const us = readFileSync(logFile, "utf8").trim().split("\n").map((l) => Number(l.split("\t")[2])).sort((a, b) => a - b)
      if (us.length > 0) p99 = us[Math.min(us.length - 1, Math.floor(us.length * 0.99))] / 1000
    } catch {}
  }
  const connect = /time for connect:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/.exec(out)
  return {
    rate: ok / seconds,
    ops: ok,
    p99,
    connectMs: connect ? unit(connect[1], connect[2]) : NaN,
    errors: failed + non2xx + (killed ? 1 : 0),
    detail: failed || non2xx || !codes || killed ? `${req?.[0] ?? "no summary"}; ${codes?.[0] ?? ""}${killed ? "; killed after its time budget" : ""}` : "",
    tls: [/TLS Protocol: (\S+)/.exec(out)?.[1], /Cipher: (\S+)/.exec(out)?.[1], /Server Temp Key: (\S+)/.exec(out)?.[1], /Application protocol: (\S+)/.exec(out)?.[1]].join(" "),
    out
  }
}
const scenarios = {
  "h1-small": { resume: true, unit: "req/s", load: (port, s) => wrk(port, s) },
  "h2-small": { resume: true, unit: "req/s", load: (port, s) => h2load(port, { seconds: s }, ["-c10", "-m10"], true) },
  // A fixed count: the warm-up 25 connections per client, the measured run sized from the
  // warm-up's rate to last about --duration.
  handshake: {
    resume: false,
    unit: "handshakes/s",
    load: (port, s, prev) =>
      h2load(port, { requests: prev ? Math.max(HS_CONNS * 20, Math.round((prev.rate * s) / HS_CONNS) * HS_CONNS) : HS_CONNS * 25 }, ["--h1", "-H", "Connection: close", `-c${HS_CONNS}`], true)
  }
}

const results = {} // proxy -> scenario -> [runs]
const notes = { tls: {}, resumption: {} }
const failures = []
const startProxy = async (proxy, resume) => {
  const port = proxy.port + (resume ? 0 : 10)
  const child = proxy.start(port, resume)
  await waitReadyTls(port)
  return { child, port }
}
const stop = async (child) => {
  if (child.exitCode !== null) return
  child.kill("SIGTERM")
  await new Promise((r) => child.once("exit", r))
}
const chosen = proxies.filter((p) => opt.proxies.split(",").includes(p.name))
for (let round = 1; round <= ROUNDS; round++) {
  const order = round % 2 === 1 ? chosen : [...chosen].reverse()
  for (const proxy of order) {
    for (const resume of [true, false]) {
      const names = Object.keys(scenarios).filter((s) => SCENARIOS.includes(s) && scenarios[s].resume === resume)
      if (names.length === 0) continue
      const { child, port } = await startProxy(proxy, resume)
      if (round === 1) notes.resumption[`${proxy.name}${resume ? "" : " (handshake instance)"}`] = resumes(port)
      for (const name of names) {
        const sc = scenarios[name]
        const warm = sc.load(port, WARMUP)
        const t0 = process.hrtime.bigint(), cpu0 = cpuUs(child.pid), psi0 = psiUs()
        const r = sc.load(port, DURATION, warm)
        const cpu = cpuUs(child.pid) - cpu0, wallUs = Number(process.hrtime.bigint() - t0) / 1000
        r.psi = (psiUs() - psi0) / wallUs
        r.cpuPerOp = cpu / Math.max(1, r.ops)
        r.cpuShare = cpu / wallUs
        if (r.tls) notes.tls[`${proxy.name} ${name}`] = r.tls
        if (r.errors > 0 || r.ops === 0) failures.push(`round ${round} ${proxy.name} ${name}: ${r.detail || "no successful requests"}\n${r.out.trim().split("\n").slice(-25).join("\n")}`)
        delete r.out
        ;((results[proxy.name] ??= {})[name] ??= []).push(r)
        console.error(
          `round ${round} ${proxy.name.padEnd(8)} ${name.padEnd(9)} ${r.rate.toFixed(0).padStart(7)} ${sc.unit.padEnd(12)} cpu ${r.cpuPerOp.toFixed(1).padStart(6)} us/op  cpu0 ${(100 * r.cpuShare).toFixed(0).padStart(3)} %  p99 ${r.p99.toFixed(2)} ms  cpu pressure ${(100 * r.psi).toFixed(0)} %  errors ${r.errors}${r.detail ? ` (${r.detail})` : ""}`
        )
      }
      await stop(child)
    }
  }
}

// ---- report
const median = (xs) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const fmt = (x, d = 0) => (Number.isNaN(x) ? "—" : x.toFixed(d))
const lines = [
  `# Sentinel vs nginx, TLS — ${new Date().toISOString()}`,
  "",
  `upstream: ${upstreamKind}, plain HTTP; proxies pinned to CPU 0 (Sentinel: 1 process; ${nginxVersion}: 1 worker), load generator on CPU 1; ` +
    `${WARMUP}s warm-up + ${DURATION}s per scenario, ${ROUNDS} interleaved rounds; medians. Certificate: self-signed EC P-256.`,
  "",
  "| scenario | sentinel | nginx | ratio | CPU µs/op (sentinel / nginx) | per-core ratio | CPU 0 used (sentinel / nginx) | p99 ms (sentinel / nginx) | CPU pressure (sentinel / nginx) | errors (sentinel / nginx) |",
  "|---|---|---|---|---|---|---|---|---|---|"
]
const label = { "h1-small": "h1-small (wrk -c50), req/s", "h2-small": "h2-small (h2load -c10 -m10), req/s", handshake: `handshake (h2load --h1 -c${HS_CONNS}, new connection per request), handshakes/s` }
const summary = {}
for (const name of Object.keys(scenarios)) {
  const s = results.sentinel?.[name], n = results.nginx?.[name]
  if (!s || !n) continue
  const m = (runs, k) => median(runs.map((r) => r[k]))
  const sum = (runs) => runs.reduce((a, r) => a + r.errors, 0)
  const ratio = m(s, "rate") / m(n, "rate"), perCore = m(n, "cpuPerOp") / m(s, "cpuPerOp")
  summary[name] = { ratio, perCore }
  lines.push(
    `| ${label[name]} | ${fmt(m(s, "rate"))} | ${fmt(m(n, "rate"))} | ${fmt(ratio, 2)} | ${fmt(m(s, "cpuPerOp"), 1)} / ${fmt(m(n, "cpuPerOp"), 1)} | ${fmt(perCore, 2)} | ` +
      `${fmt(100 * m(s, "cpuShare"))} % / ${fmt(100 * m(n, "cpuShare"))} % | ${fmt(m(s, "p99"), 2)} / ${fmt(m(n, "p99"), 2)} | ${fmt(100 * m(s, "psi"))} % / ${fmt(100 * m(n, "psi"))} % | ${sum(s)} / ${sum(n)} |`
  )
}
if (results.node) {
  lines.push(
    "",
    "The Node ceiling (bench/tls-ceiling.mjs: node's TLS + HTTP/2 compat server + one undici Pool, nothing else), same rounds:",
    "",
    "| scenario | node ceiling | CPU µs/op | Sentinel per core vs the ceiling | the ceiling per core vs nginx |",
    "|---|---|---|---|---|"
  )
  for (const name of Object.keys(scenarios)) {
    const c = results.node[name], s = results.sentinel?.[name], n = results.nginx?.[name]
    if (!c) continue
    const m = (runs, k) => median(runs.map((r) => r[k]))
    lines.push(
      `| ${label[name]} | ${fmt(m(c, "rate"))} | ${fmt(m(c, "cpuPerOp"), 1)} | ${s ? fmt(m(c, "cpuPerOp") / m(s, "cpuPerOp"), 2) : "—"} | ${n ? fmt(m(n, "cpuPerOp") / m(c, "cpuPerOp"), 2) : "—"} |`
    )
  }
}
lines.push(
  "",
  "ratio: Sentinel/nginx rate; per-core ratio: nginx CPU per op / Sentinel CPU per op (rate per CPU-second of the proxy).",
  "CPU 0 used: the proxy's CPU time over the window's wall time (well below 100 %: the proxy was not the bottleneck, the load generator or the machine was). " +
    "CPU pressure: /proc/pressure/cpu `some` over the window (time other tasks kept a runnable one waiting; 0 on a quiet machine).",
  "p99: wrk's; h2load's per-request times from --log-file (for handshake: the request on the new connection, after its handshake).",
  "",
  "Targets: h2-small >= 0.5 of nginx per core: " +
    (summary["h2-small"] ? `${fmt(summary["h2-small"].perCore, 2)} per core (${fmt(summary["h2-small"].ratio, 2)} in req/s) — ${summary["h2-small"].perCore >= 0.5 ? "met" : "not met"}` : "not run") +
    "; handshakes/s within 0.8 of nginx: " +
    (summary.handshake ? `${fmt(summary.handshake.ratio, 2)} in handshakes/s, ${fmt(summary.handshake.perCore, 2)} per core — ${summary.handshake.ratio >= 0.8 && summary.handshake.perCore >= 0.8 ? "met" : summary.handshake.ratio >= 0.8 || summary.handshake.perCore >= 0.8 ? "met on one measure only" : "not met"}` : "not run") +
    ".",
  "",
  "Negotiated (h2load): " + Object.entries(notes.tls).map(([k, v]) => `${k}: ${v}`).join("; ") + ".",
  "Session resumption offered (openssl s_client -sess_out/-sess_in): " + Object.entries(notes.resumption).map(([k, v]) => `${k} ${v ? "yes" : "no"}`).join(", ") + "."
)
if (failures.length > 0) lines.push("", "## Failures", "", "```", ...failures, "```")
const report = lines.join("\n") + "\n"
mkdirSync(join(root, "bench/results"), { recursive: true })
writeFileSync(join(root, "bench/results/tls-latest.md"), report)
console.log(report)

stopAll()
if (opt.keep) {
  process.env.BENCH_KEEP_WORK = "1" // (common.mjs workDir removes it at exit otherwise)
  console.error(`work directory kept: ${work}`)
}
process.exit(0)
