/**
 * A real `redis-server` for a test: on a free port (Redis cannot take port 0: a port is picked
 * by binding a server to 0 and closing it), nothing saved to disk, killed and restarted on the
 * same port on demand. A machine without `redis-server` fails the test with the command that
 * installs it: these tests never skip.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"

export const REDIS_MISSING =
  "redis-server is not installed: the distributed rate-limit tests need a real Redis. " +
  "Install it with `apt-get install -y redis-server` (the README's set-up and .ci/run do)."

/** Throws REDIS_MISSING unless `redis-server` runs here. */
export const requireRedisServer = (): void => {
  const r = spawnSync("redis-server", ["--version"], { encoding: "utf8" })
  if (r.error !== undefined || r.status !== 0) throw new Error(REDIS_MISSING)
}

/** A port free right now (bound to 0, then released). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const connectable = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1")
    c.once("connect", () => {
      c.destroy()
      resolve(true)
    })
    c.once("error", () => resolve(false))
  })

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** A client of the test's own (lazy; closed by `stop`). */
  readonly client: () => Redis
  /** SIGKILL, and wait for the exit. */
  readonly kill: () => Promise<void>
  /** Starts it again on the same port (empty: nothing is saved), resolves once it accepts connections. */
  readonly restart: () => Promise<void>
  readonly stop: () => Promise<void>
}

export const startRedis = async (): Promise<RedisServer> => {
  requireRedisServer()
  const dir = mkdtempSync(join(tmpdir(), "sentinel-redis-"))
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  let port = 0
  let stderr = ""
  const launch = async (): Promise<void> => {
    const c = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    child = c
    c.stdout!.on("data", () => {})
    c.stderr!.on("data", (b: Buffer) => (stderr += b.toString()))
    let gone = false
    exited = new Promise((resolve) => c.once("exit", () => {
      gone = true
      resolve()
    }))
    const deadline = Date.now() + 10_000
    while (!(await connectable(port))) {
      if (gone) throw new Error(`redis-server exited at start (port ${port}): ${stderr}`)
      if (Date.now() > deadline) throw new Error(`redis-server did not accept connections on ${port} within 10 s`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  // another process may take the free port first: try a few
  for (let attempt = 0; ; attempt++) {
    port = await freePort()
    try {
      await launch()
      break
    } catch (e) {
      if (attempt >= 4) throw e
    }
  }
  let client: Redis | undefined
  const kill = async () => {
    child?.kill("SIGKILL")
    await exited
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    client: () => {
      if (client === undefined) {
        client = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(n * 50, 500) })
        // the tests kill and restart the server: the test's own client reconnects quietly
        client.on("error", () => {})
      }
      return client
    },
    kill,
    restart: launch,
    stop: async () => {
      client?.disconnect()
      await kill()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
