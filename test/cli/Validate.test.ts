/**
 * `sentinel validate` and `sentinel lint` as users run them (the built binary).
 */
import { describe, expect, it } from "vitest"
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { standardCerts } from "../support/certs.js"
import { refusingPort } from "../support/faults.js"
import { startEchoOrigin } from "../support/origins.js"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { serveAgent } from "../../src/agents/sdk/AgentServer.js"
import { serveGrpcAgent } from "../../src/agents/sdk/GrpcAgentServer.js"
import { allow } from "../../src/agents/sdk/Decision.js"

const MAIN = join(__dirname, "../../dist/main.js")
/** Asynchronous, so servers in this process (origin, agent socket) can answer the child. */
const run = (args: Array<string>) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()))
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), 40_000)
    child.once("exit", (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
const tmp = () => mkdtempSync(join(tmpdir(), "sentinel-validate-"))

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0
/** A self-signed certificate and its key, written by openssl. */
const selfSigned = (dir: string, name: string) => {
  const cert = join(dir, `${name}.pem`)
  const key = join(dir, `${name}.key`)
  const r = spawnSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "365",
    "-subj", `/CN=${name}`, "-keyout", key, "-out", cert
  ])
  if (r.status !== 0) throw new Error(r.stderr.toString())
  return { cert, key }
}

/** A socket that accepts connections and drops them: not an agent. */
const unixServer = (path: string) =>
  new Promise<net.Server>((resolve) => {
    const server = net.createServer((s) => s.destroy())
    server.listen(path, () => resolve(server))
  })

/** A real agent (the SDK) on a Unix socket and/or a gRPC port, in this process; closed by the returned function. */
const sdkAgent = async (o: { socket?: string; grpc?: boolean }) => {
  const scope = Effect.runSync(Scope.make())
  const info = { agentId: "waf", name: "waf", version: "1" }
  const handlers = { onRequestHeaders: () => Effect.succeed(allow()) }
  if (o.socket !== undefined) await Effect.runPromise(serveAgent({ socketPath: o.socket, info, handlers }).pipe(Scope.extend(scope)))
  const grpc = o.grpc ? await Effect.runPromise(serveGrpcAgent({ address: "127.0.0.1:0", info, handlers }).pipe(Scope.extend(scope))) : undefined
  return { port: grpc?.port, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const config = (o: { target: string; socket: string; tls?: string; grpc?: string }) => `
listeners { listener "main" { address "127.0.0.1:0" } }
upstreams { upstream "o" { target "${o.target}"${o.tls ? `; tls { ${o.tls} }` : ""} } }
routes { route "all" { matches { path-prefix "/" }; upstream "o" } }
agents {
  agent "waf" { unix-socket "${o.socket}" }${o.grpc ? `\n  agent "remote" { grpc "${o.grpc}" }` : ""}
}
filters { filter "check" { type "agent"; agent "waf" } }
`

describe("sentinel validate", { timeout: 90_000 }, () => {
  it.skipIf(!hasOpenssl)("passes when targets accept TCP, certificates load and match, and agent sockets answer", async () => {
    const dir = tmp()
    const origin = await startEchoOrigin()
    const socket = join(dir, "waf.sock")
    const agent = await sdkAgent({ socket, grpc: true })
    const { cert, key } = selfSigned(dir, "client")
    const file = join(dir, "ok.kdl")
    writeFileSync(file, config({
      target: origin.address, socket, grpc: `http://127.0.0.1:${agent.port}`,
      tls: `ca-cert "${cert}"; client-cert "${cert}"; client-key "${key}"`
    }))
    const r = await run(["validate", "-c", file])
    expect(r.stderr).toBe("")
    expect(r.status).toBe(0)
    expect(r.stdout).toContain(`configuration valid: ${file}`)
    await agent.close()
    await origin.close()
  })

  it("an agent is checked with a real handshake: a socket that is not an agent fails, and so does a gRPC port nobody serves", async () => {
    const dir = tmp()
    const origin = await startEchoOrigin()
    const socket = join(dir, "impostor.sock")
    const impostor = await unixServer(socket)
    const refusing = await refusingPort()
    const file = join(dir, "impostor.kdl")
    writeFileSync(file, config({ target: origin.address, socket, grpc: `http://127.0.0.1:${refusing.port}` }))
    const r = await run(["validate", "-c", file, "--skip-certs"])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/error: agent "waf": agent on \S+impostor\.sock failed the handshake: /)
    expect(r.stderr).toMatch(new RegExp(`error: agent "remote": gRPC agent at http://127\\.0\\.0\\.1:${refusing.port} failed the handshake: `))
    impostor.close()
    await origin.close()
  })

  it.skipIf(!hasOpenssl)("fails with one line per problem: refused target, silent agent socket, mismatched key; --skip-* skips each family", async () => {
    const dir = tmp()
    const refusing = await refusingPort()
    const socket = join(dir, "nobody.sock")
    const a = selfSigned(dir, "a")
    const b = selfSigned(dir, "b")
    const file = join(dir, "bad.kdl")
    writeFileSync(file, config({ target: `127.0.0.1:${refusing.port}`, socket, tls: `client-cert "${a.cert}"; client-key "${b.key}"` }))

    const r = await run(["validate", "-c", file])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`error: upstream "o" target 127\\.0\\.0\\.1:${refusing.port}: does not accept TCP connections: ECONNREFUSED`))
    expect(r.stderr).toMatch(/error: agent "waf": socket \S+nobody\.sock does not answer: ENOENT/)
    expect(r.stderr).toMatch(/error: upstream "o" tls: \S+a\.pem and \S+b\.key do not match/)
    expect(r.stderr).toContain("configuration validation failed (3 problems)")

    const onlyCerts = await run(["validate", "-c", file, "--skip-network", "--skip-agents"])
    expect(onlyCerts.status).toBe(1)
    expect(onlyCerts.stderr).toContain("do not match")
    expect(onlyCerts.stderr).not.toContain("ECONNREFUSED")
    expect(onlyCerts.stderr).not.toContain("does not answer")

    const skipped = await run(["validate", "-c", file, "--skip-network", "--skip-certs", "--skip-agents"])
    expect(skipped.status).toBe(0)
    expect(skipped.stdout).toContain("(skipped: network, certs, agents)")
  })

  it("reports a config that does not parse like `test` does (file:line:col, exit 1)", async () => {
    const dir = tmp()
    const file = join(dir, "broken.kdl")
    writeFileSync(file, 'listeners {\n  listener "a" {\n    adress "127.0.0.1:1"\n  }\n}\n')
    const r = await run(["validate", "-c", file, "--skip-network"])
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`${file}:3:5`)
  })
})

describe("listener tls certificates", { timeout: 90_000 }, () => {
  const https = (tls: string) => `listeners { listener "s" { address "127.0.0.1:0"; protocol "https"; tls { ${tls} } } }\n`

  it.skipIf(!hasOpenssl)("`sentinel test` and a start load them: a key that does not match refuses the config, one line per problem", async () => {
    const certs = standardCerts(join(tmp(), "certs"))
    const file = join(certs.dir, "bad.kdl")
    const f = certs.files
    writeFileSync(file, https(`cert-file "${f.mismatched.cert}"; key-file "${f.mismatched.key}"; sni { cert-file "${f.api.cert}"; key-file "${certs.dir}/none.key"; }`))
    for (const args of [["test", "-c", file], ["-c", file]]) {
      const r = await run(args)
      expect(r.status).toBe(1)
      // `test` prints plain lines; `run` one JSON line per problem (every line it writes is JSON)
      const lines = args[0] === "test" ? r.stderr.split("\n") : r.stderr.trim().split("\n").map((l) => String(JSON.parse(l).message))
      expect(lines.some((l) => l.includes(`listener "s" tls: key-file ${f.mismatched.key} does not match cert-file ${f.mismatched.cert}`))).toBe(true)
      expect(lines.some((l) => l.includes(`listener "s" tls sni #1 key-file: cannot read ${certs.dir}/none.key: ENOENT`))).toBe(true)
    }
    const good = join(certs.dir, "good.kdl")
    writeFileSync(good, https(`cert-file "${f.default.cert}"; key-file "${f.default.key}"; sni { cert-file "${f.api.cert}"; key-file "${f.api.key}"; }`))
    const ok = await run(["test", "-c", good])
    expect(ok.stderr).toBe("")
    expect(ok.stdout).toContain("listener s: https://127.0.0.1:0")
    certs.cleanup()
  })

  it.skipIf(!hasOpenssl)("`sentinel validate` warns about a certificate expiring within 30 days and fails on an expired one", async () => {
    const certs = standardCerts(join(tmp(), "certs"))
    const f = certs.files
    const file = join(certs.dir, "dates.kdl")
    writeFileSync(file, https(`cert-file "${f.soon.cert}"; key-file "${f.soon.key}"; sni { cert-file "${f.expired.cert}"; key-file "${f.expired.key}"; }`))
    const r = await run(["validate", "-c", file, "--skip-network"])
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`warning: listener "s" tls: ${f.soon.cert} expires on .* \\(in \\d+ days; renew it\\)`))
    expect(r.stderr).toMatch(new RegExp(`error: listener "s" tls sni #1: ${f.expired.cert} expired on `))
    expect(r.stderr).toContain("configuration validation failed (1 problem)")
    certs.cleanup()
  })
})

describe("sentinel lint", { timeout: 60_000 }, () => {
  it("prints best-practice warnings and exits 0", async () => {
    const dir = tmp()
    const file = join(dir, "lint.kdl")
    writeFileSync(
      file,
      `system { graceful-shutdown-timeout-secs 0 }
listeners { listener "main" { address "0.0.0.0:0"; admin #true } }
upstreams {
  upstream "used" { target "127.0.0.1:1"; target "127.0.0.1:2" }
  upstream "spare" { target "127.0.0.1:3" }
}
routes {
  route "a" { matches { path-prefix "/" }; upstream "used"; cache { enabled #true } }
  route "b" { matches { path-prefix "/" }; upstream "used" }
}
cache { enabled #false }
`
    )
    const r = await run(["lint", "-c", file])
    expect(r.status).toBe(0)
    for (const rule of ["orphan-upstream", "shadowed-route", "no-health-check", "public-admin-listener", "metrics-disabled", "no-graceful-shutdown", "cache-disabled"]) {
      expect(r.stdout).toContain(`warning[${rule}]`)
    }
    expect(r.stdout).toMatch(/warning\[orphan-upstream\]: upstream "spare": no route uses it/)
    expect(r.stdout).toMatch(/\d+ warnings: /)
  })
})
