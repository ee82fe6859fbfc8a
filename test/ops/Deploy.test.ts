/**
 * The fleet's deployment files, each checked without the tool it is for (no Docker engine, no
 * cluster here): the Dockerfile's stages, user, health check and command, whose process drains
 * on SIGTERM as PID 1; the systemd unit (and `systemd-analyze verify` where systemd is
 * installed); the Kubernetes manifests against each other and against the ConfigMap's KDL, which
 * the proxy's own validator accepts; and every metric that the Grafana dashboard and the
 * Prometheus alerts query is one a running proxy exports.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import { afterEach, describe, expect, it } from "vitest"
import { parseAllDocuments } from "yaml"
import { decodeKdl } from "../../src/config/Kdl.js"
import type { SentinelConfig } from "../../src/config/Schema.js"
import { PROXY_V8_FLAGS } from "../../src/RuntimeFlags.js"
import { MAIN, metricsPort, scrape, startCommand, startSentinel, tempDir } from "./sentinelProcess.js"

const repo = path.resolve(__dirname, "../..")
const read = (rel: string) => fs.readFileSync(path.join(repo, rel), "utf8")

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A KDL text through the proxy's decoder; fails the test with its errors. */
const kdlConfig = (text: string, file: string): SentinelConfig => {
  const r = decodeKdl(text, { file })
  expect(r.errors.map((e) => `${e.file}:${e.line}:${e.col}: ${e.message}`)).toEqual([])
  return r.config!
}

/** `sentinel test -c FILE` (the CLI's validator: references, certificates, ...). */
const cliTest = (file: string) => spawnSync(process.execPath, [MAIN, "test", "-c", file], { encoding: "utf8" })

/** The builtin handler serving exactly `p`, if any. */
const builtinAt = (c: SentinelConfig, p: string): string | undefined =>
  c.routes.find((r) => r.matches.some((m) => m._tag === "Path" && m.path === p))?.builtinHandler

// ---------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  readonly op: string
  readonly args: string
  readonly stage: number
}

/** Instructions (continuation lines joined, comments dropped), with the index of their stage. */
const dockerfile = (text: string): Array<Instruction> => {
  const out: Array<Instruction> = []
  let stage = -1
  let pending = ""
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    if (pending === "" && (line === "" || line.startsWith("#"))) continue
    if (line.endsWith("\\")) {
      pending += line.slice(0, -1) + " "
      continue
    }
    const full = (pending + line).trim()
    pending = ""
    const m = /^([A-Z]+)\s+(.*)$/.exec(full)
    if (m === null) continue
    if (m[1] === "FROM") stage++
    out.push({ op: m[1], args: m[2].trim(), stage })
  }
  return out
}

/** Patterns of .dockerignore (simple paths and globs, as written there). */
const ignored = (patterns: ReadonlyArray<string>, rel: string) =>
  patterns.some((p) => {
    const re = new RegExp("^" + p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*") + "(/|$)")
    return re.test(rel)
  })

describe("Dockerfile", { timeout: 60_000 }, () => {
  const text = read("Dockerfile")
  const ins = dockerfile(text)
  const last = Math.max(...ins.map((i) => i.stage))
  const final = ins.filter((i) => i.stage === last)

  it("is multi-stage: builds with dev dependencies, runs with `npm ci --omit=dev` and the build only", () => {
    const froms = ins.filter((i) => i.op === "FROM")
    expect(froms.length).toBeGreaterThanOrEqual(2)
    const buildStage = /\bAS\s+(\S+)/i.exec(froms[0].args)?.[1]
    expect(buildStage).toBeDefined()
    expect(ins.some((i) => i.stage < last && i.op === "RUN" && /\bnpm ci\b/.test(i.args) && !/--omit=dev/.test(i.args))).toBe(true)
    expect(final.some((i) => i.op === "RUN" && /\bnpm ci\b.*--omit=dev/.test(i.args))).toBe(true)
    expect(final.some((i) => i.op === "COPY" && i.args.includes(`--from=${buildStage}`) && /\bdist\b/.test(i.args))).toBe(true)
    // the runtime files found beside package.json (PackageRoot.ts): gRPC agents need proto/
    expect(final.some((i) => i.op === "COPY" && /^proto\s/.test(i.args))).toBe(true)
    // nothing the build needs is kept out of the context, and every source copied exists
    const patterns = read(".dockerignore").split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
    for (const c of ins.filter((i) => i.op === "COPY" && !i.args.startsWith("--from"))) {
      const parts = c.args.split(/\s+/).filter((p) => !p.startsWith("--"))
      for (const src of parts.slice(0, -1)) {
        expect(fs.existsSync(path.join(repo, src)), `COPY ${src}`).toBe(true)
        expect(ignored(patterns, src), `COPY ${src} is excluded by .dockerignore`).toBe(false)
      }
    }
    for (const heavy of [".git", "node_modules", "dist", "test"]) expect(ignored(patterns, heavy), heavy).toBe(true)
  })

  it("runs as a non-root user, with the default config it ships, and a HEALTHCHECK on its health endpoint", () => {
    const user = final.filter((i) => i.op === "USER").pop()?.args
    expect(user).toBeDefined()
    expect(["root", "0", "0:0"]).not.toContain(user)
    // the config the image ships is where SENTINEL_CONFIG points, and is valid
    const env = final.filter((i) => i.op === "ENV").map((i) => i.args).join(" ")
    const configPath = /SENTINEL_CONFIG=(\S+)/.exec(env)?.[1]
    expect(configPath).toBeDefined()
    const copy = final.find((i) => i.op === "COPY" && i.args.endsWith(` ${configPath}`))
    expect(copy, `a COPY to ${configPath}`).toBeDefined()
    const source = copy!.args.split(/\s+/)[0]
    const config = kdlConfig(read(source), source)
    expect(cliTest(path.join(repo, source)).status).toBe(0)
    const health = final.find((i) => i.op === "HEALTHCHECK")!
    expect(health).toBeDefined()
    const url = /http:\/\/127\.0\.0\.1:(\d+)(\/[^'" )]*)/.exec(health.args)
    expect(url).not.toBeNull()
    expect(config.listeners.some((l) => l.address.port === Number(url![1]))).toBe(true)
    expect(builtinAt(config, url![2])).toBe("health")
    expect(config.listeners.every((l) => l.address.host === "0.0.0.0")).toBe(true) // reachable from outside the container
    expect(final.find((i) => i.op === "STOPSIGNAL")?.args).toBe("SIGTERM")
  })

  it("its CMD is the serving process itself (the V8 flags given, so no re-exec): as PID 1 it drains on SIGTERM and exits 0", async () => {
    const cmd = final.filter((i) => i.op === "CMD").pop()!
    const argv = JSON.parse(cmd.args) as Array<string> // exec form: signals go to node, not a shell
    expect(argv[0]).toBe("node")
    for (const flag of PROXY_V8_FLAGS) expect(argv).toContain(flag)
    expect(argv.slice(-2)).toEqual(["dist/main.js", "run"])
    expect(final.some((i) => i.op === "ENTRYPOINT")).toBe(false)

    // a response that takes 1.5 s is in flight when SIGTERM comes
    const origin = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" })
      res.write("start\n")
      setTimeout(() => res.end("end\n"), 1500)
    })
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r))
    cleanups.push(() => new Promise<void>((r) => origin.close(() => r())))
    const dir = tempDir()
    const file = path.join(dir, "sentinel.kdl")
    fs.writeFileSync(file, `system { graceful-shutdown-timeout-secs 10 }
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "127.0.0.1:${(origin.address() as AddressInfo).port}" } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
observability { logging { access-log { enabled #false } } }
`)
    // PID 1 of a PID namespace of its own where this machine allows it (root), else as is
    const pidNs = spawnSync("unshare", ["--pid", "--fork", "true"]).status === 0
    const nodeArgv = argv.slice(1)
    const p = pidNs
      ? startCommand("unshare", ["--pid", "--fork", process.execPath, ...nodeArgv], { SENTINEL_CONFIG: file }, { cwd: repo })
      : startCommand(process.execPath, nodeArgv, { SENTINEL_CONFIG: file }, { cwd: repo })
    cleanups.push(() => p.stop())
    const port = Number((await p.waitFor(/"sentinel started"[^\n]*?=127\.0\.0\.1:(\d+)/))[1])
    // the process serving is the one started (no child): with unshare, the namespace's PID 1
    const serving = (await p.waitFor(/"sentinel started"[^\n]*/))[0]
    expect(p.count(/"sentinel started"/)).toBe(1)
    const target = pidNs ? childOf(p.pid) : p.pid
    expect(target).toBeGreaterThan(0)
    let firstChunk: () => void = () => {}
    const gotFirst = new Promise<void>((r) => (firstChunk = r))
    let body = ""
    const done = new Promise<{ status: number; complete: boolean }>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
        res.setEncoding("utf8")
        res.on("data", (c: string) => {
          body += c
          firstChunk()
        })
        res.on("end", () => resolve({ status: res.statusCode ?? 0, complete: res.complete }))
        res.on("error", reject)
      }).on("error", reject)
    })
    await gotFirst
    process.kill(target, "SIGTERM")
    const draining = (await p.waitFor(/\{[^\n]*SIGTERM received, draining[^\n]*/))[0]
    expect(JSON.parse(draining).pid).toBe(pidNs ? 1 : p.pid)
    expect(await done).toEqual({ status: 200, complete: true })
    expect(body).toBe("start\nend\n")
    expect((await p.exited).code).toBe(0)
    expect(serving).toContain("sentinel started")
  })
})

/** The one child process of `pid` (unshare's forked command). */
const childOf = (pid: number): number => {
  for (let i = 0; i < 100; i++) {
    try {
      const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean)
      if (kids.length === 1) return Number(kids[0])
    } catch {
      // not there yet
    }
    spawnSync("sleep", ["0.02"])
  }
  return -1
}

// ---------------------------------------------------------------------------
// systemd

/** `Key=value` lines of an INI unit by section (repeated keys kept in order). */
const unitFile = (text: string): Map<string, Array<[string, string]>> => {
  const out = new Map<string, Array<[string, string]>>()
  let section = ""
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const s = /^\[(.+)\]$/.exec(line)
    if (s !== null) {
      section = s[1]
      out.set(section, out.get(section) ?? [])
      continue
    }
    const eq = line.indexOf("=")
    expect(eq, `not Key=value: ${line}`).toBeGreaterThan(0)
    out.get(section)!.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()])
  }
  return out
}

describe("deploy/systemd/sentinel.service", () => {
  const text = read("deploy/systemd/sentinel.service")
  const unit = unitFile(text)
  const service = new Map(unit.get("Service"))

  it("reloads with SIGHUP, stops with SIGTERM after the graceful timeout, runs the proxy unprivileged and hardened", () => {
    expect([...unit.keys()]).toEqual(["Unit", "Service", "Install"])
    expect(service.get("ExecReload")).toBe("/bin/kill -HUP $MAINPID")
    expect(service.get("KillSignal")).toBe("SIGTERM")
    // the default graceful-shutdown-timeout-secs is 30: the stop timeout must leave it whole
    expect(Number(service.get("TimeoutStopSec"))).toBeGreaterThan(30)
    expect(service.get("User")).toBeDefined()
    expect(service.get("User")).not.toBe("root")
    expect(service.get("NoNewPrivileges")).toBe("yes")
    expect(["strict", "full"]).toContain(service.get("ProtectSystem"))
    expect(service.get("ProtectHome")).toBe("yes")
    expect(service.get("PrivateTmp")).toBe("yes")
    // V8 JIT needs W+X pages: this option would kill node
    expect(service.has("MemoryDenyWriteExecute")).toBe(false)
    const exec = service.get("ExecStart")!.split(/\s+/)
    for (const flag of PROXY_V8_FLAGS) expect(exec).toContain(flag)
    expect(exec.slice(-4, -2)).toEqual(["/opt/sentinel/dist/main.js", "run"])
    expect(new Map(unit.get("Install")).get("WantedBy")).toBe("multi-user.target")
  })

  it("passes `systemd-analyze verify` (with this machine's node and checkout for the paths) where systemd is installed", () => {
    const has = spawnSync("systemd-analyze", ["--version"]).status === 0
    if (!has) {
      // the parse above is the check on machines without systemd
      expect(unit.size).toBe(3)
      return
    }
    const dir = tempDir()
    const copy = path.join(dir, "sentinel.service")
    fs.writeFileSync(copy, text.replaceAll("/usr/bin/node", process.execPath).replaceAll("/opt/sentinel", repo))
    const r = spawnSync("systemd-analyze", ["verify", copy], { encoding: "utf8" })
    const about = (r.stderr + r.stdout).split("\n").filter((l) => l.includes("sentinel.service"))
    expect(about).toEqual([])
    expect(r.status).toBe(0)
  })
})

// ---------------------------------------------------------------------------
// Kubernetes

type Manifest = Record<string, any>

describe("deploy/kubernetes", () => {
  const dir = path.join(repo, "deploy/kubernetes")
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()
  const docs: Array<Manifest & { file: string }> = files.flatMap((f) =>
    parseAllDocuments(fs.readFileSync(path.join(dir, f), "utf8")).map((d) => {
      expect(d.errors.map(String), f).toEqual([])
      return { ...(d.toJS() as Manifest), file: f }
    })
  )
  const one = (kind: string) => {
    const found = docs.filter((d) => d.kind === kind)
    expect(found, kind).toHaveLength(1)
    return found[0]
  }

  it("the ConfigMap's KDL passes the proxy's validator", () => {
    const cm = one("ConfigMap")
    const text = cm.data["sentinel.kdl"] as string
    kdlConfig(text, "configmap.yaml:sentinel.kdl")
    const tmp = path.join(tempDir(), "sentinel.kdl")
    fs.writeFileSync(tmp, text)
    const r = cliTest(tmp)
    expect(r.stderr + r.stdout).toMatch(/configuration ok/)
    expect(r.status).toBe(0)
  })

  it("the Deployment probes the builtin endpoints, drains before SIGTERM, has resources; the other objects point at it", () => {
    const kustomization = docs.find((d) => d.kind === "Kustomization")!
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== "kustomization.yaml"))
    const cm = one("ConfigMap")
    const config = kdlConfig(cm.data["sentinel.kdl"], "sentinel.kdl")
    const deploy = one("Deployment")
    const labels = deploy.spec.template.metadata.labels
    expect(deploy.spec.selector.matchLabels).toEqual(labels)
    const pod = deploy.spec.template.spec
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    const c = pod.containers[0]
    const ports = new Map<string, number>(c.ports.map((p: Manifest) => [p.name, p.containerPort]))
    expect(config.listeners.map((l) => l.address.port)).toContain(ports.get("http"))
    expect(config.observability.metrics.enabled).toBe(true)
    expect(config.observability.metrics.address.port).toBe(ports.get("metrics"))
    expect(config.listeners.every((l) => l.address.host === "0.0.0.0")).toBe(true)
    for (const [probe, handler] of [["readinessProbe", "status"], ["livenessProbe", "health"]] as const) {
      const get = c[probe].httpGet
      expect(ports.has(get.port), `${probe} port`).toBe(true)
      expect(builtinAt(config, get.path), `${probe} ${get.path}`).toBe(handler)
    }
    const preStop = c.lifecycle.preStop
    const pause = Number(preStop.sleep?.seconds ?? preStop.exec?.command?.at(-1))
    expect(pause).toBeGreaterThan(0)
    // the pod may take the pause, then the whole drain, before it is killed
    const graceSecs = Duration.toSeconds(config.system.gracefulShutdownTimeout)
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(pause + graceSecs)
    for (const kind of ["requests", "limits"]) {
      expect(c.resources[kind].cpu, kind).toBeDefined()
      expect(c.resources[kind].memory, kind).toBeDefined()
    }
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false)
    expect(pod.volumes.find((v: Manifest) => v.configMap)?.configMap.name).toBe(cm.metadata.name)
    expect(c.volumeMounts.find((m: Manifest) => m.name === pod.volumes.find((v: Manifest) => v.configMap).name).mountPath).toBe("/etc/sentinel")
    expect(c.env.find((e: Manifest) => e.name === "SENTINEL_CONFIG").value).toBe("/etc/sentinel/sentinel.kdl")

    const service = one("Service")
    expect(service.spec.selector).toEqual(labels)
    for (const p of service.spec.ports) expect(ports.has(p.targetPort), `Service targetPort ${p.targetPort}`).toBe(true)
    const pdb = one("PodDisruptionBudget")
    expect(pdb.spec.selector.matchLabels).toEqual(labels)
    expect(pdb.spec.minAvailable).toBeLessThan(deploy.spec.replicas)
    const hpa = one("HorizontalPodAutoscaler")
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: deploy.metadata.name })
    expect(hpa.spec.minReplicas).toBeGreaterThan(pdb.spec.minAvailable)
    const sm = one("ServiceMonitor")
    expect(sm.spec.selector.matchLabels).toEqual(service.metadata.labels)
    const ep = sm.spec.endpoints[0]
    expect(service.spec.ports.map((p: Manifest) => p.name)).toContain(ep.port)
    expect(ep.path).toBe(config.observability.metrics.path)
  })
})

// ---------------------------------------------------------------------------
// Dashboard and alerts

/** Every query string of the dashboard (panels and template variables). */
const dashboardQueries = (d: Manifest): Array<string> => [
  ...d.panels.flatMap((p: Manifest) => (p.targets ?? []).map((t: Manifest) => t.expr)),
  ...(d.templating?.list ?? []).flatMap((v: Manifest) => [v.definition, v.query?.query].filter((q) => typeof q === "string"))
]

/** Metric names in PromQL: identifiers of this proxy's families (functions and labels are not). */
const metricNames = (expr: string): Array<string> => expr.match(/\b(?:sentinel|process|nodejs)_[a-zA-Z0-9_]+/g) ?? []

describe("deploy/grafana/sentinel.json and deploy/prometheus/alerts.yml", { timeout: 90_000 }, () => {
  it("query only metrics that a running proxy exports (scraped from its metrics listener)", async () => {
    const dashboard = JSON.parse(read("deploy/grafana/sentinel.json"))
    const alerts = parseAllDocuments(read("deploy/prometheus/alerts.yml"))[0].toJS() as Manifest
    const rules: Array<Manifest> = alerts.groups.flatMap((g: Manifest) => g.rules)
    const alertNames = rules.map((r) => r.alert)
    for (const wanted of [
      "SentinelHighErrorRatio", "SentinelAllTargetsUnhealthy", "SentinelCircuitOpen", "SentinelAgentFailing",
      "SentinelCertificateExpiringSoon", "SentinelConfigReloadFailed"
    ]) expect(alertNames).toContain(wanted)
    const queries = [...dashboardQueries(dashboard), ...rules.map((r) => r.expr as string)]
    const used = new Set(queries.flatMap(metricNames))
    expect(used.size).toBeGreaterThan(20)

    // a proxy with workers: the primary's scrape has the workers' metrics and its own
    const dir = tempDir()
    const file = path.join(dir, "sentinel.kdl")
    fs.writeFileSync(file, `system { worker-threads 2 }
listeners { listener "main" { address "127.0.0.1:0" } }
routes { route "s" { matches { path "/status" }; builtin-handler "status" } }
observability { logging { access-log { enabled #false } }; metrics { enabled #true; address "127.0.0.1:0" } }
`)
    const p = startSentinel(["run", "-c", file])
    cleanups.push(() => p.stop())
    const port = await metricsPort(p)
    await p.waitForCount(/"sentinel started"/, 2)
    const text = await scrape(port)
    const exported = new Set<string>()
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exported.add(m[1])
      if (m[2] === "histogram") for (const s of ["_bucket", "_count", "_sum"]) exported.add(m[1] + s)
      if (m[2] === "summary") for (const s of ["_count", "_sum"]) exported.add(m[1] + s)
    }
    const missing = [...used].filter((n) => !exported.has(n))
    expect(missing).toEqual([])
  })
})
