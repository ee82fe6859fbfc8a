/**
 * `system { user; group; working-directory }` on the binary: the process changes to the working
 * directory before starting (a relative static root resolves against it), and once its listeners
 * are bound it runs as the configured user and group (read from /proc), still serving, and its
 * configuration still reloads. Started as another user than root, the switch is refused with a
 * warning and the process keeps its user (nginx's behaviour).
 */
import { afterEach, describe, expect, it } from "vitest"
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import { join } from "node:path"
import { listenerPort, startSentinel, tempDir } from "./sentinelProcess.js"

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const get = (port: number, p: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: p, agent: false }, (res) => {
        let body = ""
        res.on("data", (c: Buffer) => (body += c.toString()))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
      })
      .on("error", reject)
  })

/** Real and effective uid and gid of a process (/proc/<pid>/status). */
const ids = (pid: number) => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s+(\\d+)\\s+(\\d+)`, "m"))!.slice(1, 3).map(Number)
  return { uid: field("Uid"), gid: field("Gid") }
}

describe("system user, group, working-directory", { timeout: 60_000 }, () => {
  it("serves from the working directory and, started as root, runs as the configured user and group", async () => {
    const dir = tempDir()
    // the unprivileged user must be able to read the config (reload) and the served files
    chmodSync(dir, 0o755)
    mkdirSync(join(dir, "www", "files"), { recursive: true })
    writeFileSync(join(dir, "www", "files", "hello.txt"), "hello from the working directory\n")
    const file = join(dir, "sentinel.kdl")
    writeFileSync(
      file,
      `system { user "nobody"; group "nogroup"; working-directory "${dir}" }
listeners { listener "main" { address "127.0.0.1:0" } }
routes { route "files" { matches { path-prefix "/files" }; static-files { root "www" } } }
observability { logging { access-log { enabled #false } } }
`
    )
    const p = startSentinel(["run", "-c", file], { SENTINEL_NO_RESPAWN: "1" })
    cleanups.push(() => p.stop())
    const port = await listenerPort(p)
    // the relative root "www" resolved against working-directory
    const r = await get(port, "/files/hello.txt")
    expect([r.status, r.body]).toEqual([200, "hello from the working directory\n"])
    if (process.getuid?.() === 0) {
      await p.waitFor(/"running as user"[^\n]*"user":"nobody"/)
      expect(ids(p.pid)).toEqual({ uid: [65534, 65534], gid: [65534, 65534] })
      // a reload still reads the configuration (as the new user)
      p.child.kill("SIGHUP")
      await p.waitFor(/"configuration reloaded"/)
      expect((await get(port, "/files/hello.txt")).status).toBe(200)
    } else {
      await p.waitFor(/only a process started as root can switch user/)
      expect(ids(p.pid).uid[0]).toBe(process.getuid?.())
    }
  })
})
