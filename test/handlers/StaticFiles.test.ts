import * as fc from "fast-check"
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { defaultStaticFilesConfig, serveStatic, type StaticFilesConfig, type StaticResult } from "../../src/handlers/StaticFiles.js"
import { resolveStaticPath } from "../../src/handlers/StaticPath.js"

const token = "CANARY-" + randomBytes(8).toString("hex")
let tmp = ""
let root = ""
let config: StaticFilesConfig
let server: http.Server
let port = 0
let results: Array<StaticResult & { readonly url: string }> = []
let waiters: Array<() => void> = []

/** Resolves with the handler's result for `url` once serveStatic has settled (event-driven, no sleeps). */
const resultFor = (url: string): Promise<StaticResult> =>
  new Promise((resolve) => {
    const check = () => {
      const r = results.find((x) => x.url === url)
      if (r !== undefined) resolve(r)
      else waiters.push(check)
    }
    check()
  })

const bigJs = "function f(){return 42}\n".repeat(200) // 4.8 KB, compressible
const bigBin = randomBytes(8 * 1024 * 1024)

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-static-"))
  root = path.join(tmp, "root")
  fs.mkdirSync(root)
  fs.writeFileSync(path.join(tmp, "outside-canary.txt"), token)
  fs.mkdirSync(path.join(tmp, "outside-dir"))
  fs.writeFileSync(path.join(tmp, "outside-dir", "secret.txt"), token)
  fs.mkdirSync(path.join(tmp, "root-sibling"))
  fs.writeFileSync(path.join(tmp, "root-sibling", "x.txt"), token)
  fs.writeFileSync(path.join(root, "index.html"), "<h1>home</h1>")
  fs.writeFileSync(path.join(root, "a.txt"), "hello world")
  fs.writeFileSync(path.join(root, "big.js"), bigJs)
  fs.writeFileSync(path.join(root, "big.bin"), bigBin)
  fs.writeFileSync(path.join(root, "pre.css"), "body{}".repeat(300))
  fs.writeFileSync(path.join(root, "pre.css.br"), "BROTLI-PRECOMPRESSED")
  fs.writeFileSync(path.join(root, "pre.css.gz"), "GZIP-PRECOMPRESSED")
  fs.writeFileSync(path.join(root, "image.png"), randomBytes(4000))
  fs.writeFileSync(path.join(root, ".env"), "SECRET=dotenv")
  fs.writeFileSync(path.join(root, "café.txt"), "unicode")
  fs.writeFileSync(path.join(root, "<script>x.txt"), "x")
  fs.mkdirSync(path.join(root, "sub"))
  fs.writeFileSync(path.join(root, "sub", "b.txt"), "bee")
  fs.mkdirSync(path.join(root, "app"))
  fs.writeFileSync(path.join(root, "app", "index.html"), "<app/>")
  fs.mkdirSync(path.join(root, ".git"))
  fs.writeFileSync(path.join(root, ".git", "config"), "[core]")
  fs.mkdirSync(path.join(root, ".well-known"))
  fs.writeFileSync(path.join(root, ".well-known", "security.txt"), "Contact: x")
  fs.symlinkSync(path.join(tmp, "outside-canary.txt"), path.join(root, "link-out"))
  fs.symlinkSync(path.join(tmp, "outside-dir"), path.join(root, "linkdir-out"))
  fs.symlinkSync("../root-sibling", path.join(root, "sibling"))
  fs.symlinkSync("a.txt", path.join(root, "link-in"))
  fs.symlinkSync(".env", path.join(root, "env-link"))
  execFileSync("mkfifo", [path.join(root, "fifo")])
  // sparse 256 MiB file: more than loopback socket buffers can absorb, so an abort is mid-body
  fs.writeFileSync(path.join(root, "huge.bin"), "")
  fs.truncateSync(path.join(root, "huge.bin"), 256 * 1024 * 1024)

  server = http.createServer((req, res) => {
    serveStatic(config, req, res).then((r) => {
      results.push({ ...r, url: req.url ?? "" })
      for (const w of waiters.splice(0)) w()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  port = (server.address() as net.AddressInfo).port
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  fs.rmSync(tmp, { recursive: true, force: true })
})

beforeEach(() => {
  config = defaultStaticFilesConfig(root)
  results = []
})

interface Resp {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: Buffer
}

const request = (p: string, headers: http.OutgoingHttpHeaders = {}, method = "GET"): Promise<Resp> =>
  new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: p, method, headers, agent: false }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on("error", reject)
    })
    req.on("error", reject)
    req.end()
  })

/** Raw request line: lets the test send bytes http.request would refuse. */
const rawGet = (target: string): Promise<string> =>
  new Promise((resolve, reject) => {
    // write, not end: a half-closed client makes node:http drop a response still being prepared
    const s = net.connect(port, "127.0.0.1", () =>
      s.write(Buffer.from(`GET ${target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`, "latin1"))
    )
    const chunks: Array<Buffer> = []
    s.on("data", (c) => chunks.push(c))
    s.on("error", reject)
    s.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")))
  })

describe("serveStatic: features", () => {
  it("serves a file with type, length, validators and cache-control", async () => {
    const r = await request("/a.txt")
    expect(r.status).toBe(200)
    expect(r.body.toString()).toBe("hello world")
    expect(r.headers["content-type"]).toBe("text/plain; charset=utf-8")
    expect(r.headers["content-length"]).toBe("11")
    expect(r.headers["cache-control"]).toBe("public, max-age=3600")
    expect(r.headers.etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/)
    expect(r.headers["last-modified"]).toBe(fs.statSync(path.join(root, "a.txt")).mtime.toUTCString())
    expect(r.headers["x-content-type-options"]).toBe("nosniff")
  })

  it("index.html for / and for a directory with a trailing slash; redirect without it", async () => {
    expect((await request("/")).body.toString()).toBe("<h1>home</h1>")
    expect((await request("/app/")).body.toString()).toBe("<app/>")
    const redirect = await request("/app?x=1")
    expect([redirect.status, redirect.headers.location]).toEqual([301, "/app/"])
  })

  it("the directory redirect cannot become a protocol-relative open redirect", async () => {
    const r = await request("//app")
    expect(r.headers.location).toBe("/app/")
  })

  it("directory without index: 404 by default, escaped listing when enabled (dotfiles hidden)", async () => {
    expect((await request("/sub/")).status).toBe(404)
    config = { ...defaultStaticFilesConfig(root), directoryListing: true }
    const r = await request("/")
    // root has an index.html, so list /sub/ and the root via a config without index
    expect(r.body.toString()).toBe("<h1>home</h1>")
    config = { ...defaultStaticFilesConfig(root), directoryListing: true, index: "none.html" }
    const listing = (await request("/")).body.toString()
    expect(listing).toContain("&lt;script&gt;x.txt")
    expect(listing).not.toContain("<script>")
    expect(listing).toContain('href="./caf%C3%A9.txt"')
    expect(listing).not.toContain(".env")
  })

  it("SPA fallback serves the fallback file for missing paths only", async () => {
    config = { ...defaultStaticFilesConfig(root), fallback: "/index.html" }
    const r = await request("/some/client/route")
    expect([r.status, r.body.toString()]).toEqual([200, "<h1>home</h1>"])
    expect((await request("/.env")).status).toBe(404)
    expect((await request("/a.txt")).body.toString()).toBe("hello world")
  })

  it("If-None-Match and If-Modified-Since answer 304", async () => {
    const first = await request("/a.txt")
    const etag = first.headers.etag as string
    const inm = await request("/a.txt", { "if-none-match": `W/${etag}, "other"` })
    expect([inm.status, inm.body.length, inm.headers.etag]).toEqual([304, 0, etag])
    expect((await request("/a.txt", { "if-none-match": '"nope"' })).status).toBe(200)
    const ims = await request("/a.txt", { "if-modified-since": first.headers["last-modified"] as string })
    expect(ims.status).toBe(304)
    expect((await request("/a.txt", { "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" })).status).toBe(200)
    // If-None-Match wins over If-Modified-Since
    expect((await request("/a.txt", { "if-none-match": '"nope"', "if-modified-since": first.headers["last-modified"] as string })).status).toBe(200)
  })

  it("Range: 206 single range, suffix, open-ended; 416 unsatisfiable; multi-range falls back to 200", async () => {
    const r = await request("/a.txt", { range: "bytes=0-4" })
    expect([r.status, r.body.toString(), r.headers["content-range"]]).toEqual([206, "hello", "bytes 0-4/11"])
    expect((await request("/a.txt", { range: "bytes=-5" })).body.toString()).toBe("world")
    expect((await request("/a.txt", { range: "bytes=6-" })).body.toString()).toBe("world")
    const bad = await request("/a.txt", { range: "bytes=50-60" })
    expect([bad.status, bad.headers["content-range"]]).toEqual([416, "bytes */11"])
    const multi = await request("/a.txt", { range: "bytes=0-1,3-4" })
    expect([multi.status, multi.body.toString()]).toEqual([200, "hello world"])
    const stale = await request("/a.txt", { range: "bytes=0-4", "if-range": '"old"' })
    expect(stale.status).toBe(200)
  })

  it("HEAD sends headers without a body", async () => {
    const r = await request("/a.txt", {}, "HEAD")
    expect([r.status, r.headers["content-length"], r.body.length]).toEqual([200, "11", 0])
  })

  it("only GET and HEAD: 405 with Allow", async () => {
    const r = await request("/a.txt", {}, "POST")
    expect([r.status, r.headers.allow]).toEqual([405, "GET, HEAD"])
    expect((await request("/a.txt", {}, "DELETE")).status).toBe(405)
  })

  it("compression: precompressed sibling preferred, br over gzip, on-the-fly above 1 KiB for compressible types", async () => {
    const pre = await request("/pre.css", { "accept-encoding": "gzip, br" })
    expect([pre.headers["content-encoding"], pre.body.toString(), pre.headers.vary]).toEqual(["br", "BROTLI-PRECOMPRESSED", "Accept-Encoding"])
    const preGz = await request("/pre.css", { "accept-encoding": "gzip, br;q=0" })
    expect(preGz.body.toString()).toBe("GZIP-PRECOMPRESSED")
    const fly = await request("/big.js", { "accept-encoding": "br" })
    expect(fly.headers["content-encoding"]).toBe("br")
    expect(fly.headers["content-length"]).toBeUndefined()
    expect(zlib.brotliDecompressSync(fly.body).toString()).toBe(bigJs)
    const gz = await request("/big.js", { "accept-encoding": "gzip" })
    expect(zlib.gunzipSync(gz.body).toString()).toBe(bigJs)
    // small files, incompressible types, no Accept-Encoding, ranges and compress #false stay identity
    expect((await request("/a.txt", { "accept-encoding": "br" })).headers["content-encoding"]).toBeUndefined()
    expect((await request("/image.png", { "accept-encoding": "br" })).headers["content-encoding"]).toBeUndefined()
    expect((await request("/big.js")).body.toString()).toBe(bigJs)
    expect((await request("/big.js", { "accept-encoding": "br", range: "bytes=0-7" })).body.toString()).toBe("function")
    config = { ...defaultStaticFilesConfig(root), compress: false }
    expect((await request("/pre.css", { "accept-encoding": "br" })).headers["content-encoding"]).toBeUndefined()
  })

  it("each encoding has its own ETag, and 304 works for the encoded variant", async () => {
    const br = await request("/big.js", { "accept-encoding": "br" })
    const id = await request("/big.js")
    expect(br.headers.etag).not.toBe(id.headers.etag)
    const again = await request("/big.js", { "accept-encoding": "br", "if-none-match": br.headers.etag as string })
    expect(again.status).toBe(304)
  })

  it("MIME types come from mime-types", async () => {
    expect((await request("/big.js")).headers["content-type"]).toBe("text/javascript; charset=utf-8")
    expect((await request("/image.png")).headers["content-type"]).toBe("image/png")
    expect((await request("/pre.css")).headers["content-type"]).toBe("text/css; charset=utf-8")
  })

  it("streams a large file intact", async () => {
    const r = await request("/big.bin")
    expect(r.body.equals(bigBin)).toBe(true)
    expect(await resultFor("/big.bin")).toMatchObject({ status: 200, bytes: bigBin.length, aborted: false })
  })

  it("client abort destroys the file stream (no descriptor left open)", async () => {
    const bigPath = fs.realpathSync(path.join(root, "huge.bin"))
    const openFds = () =>
      fs.readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`) === bigPath
        } catch {
          return false
        }
      }).length
    await new Promise<void>((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: "/huge.bin", agent: false }, (res) => {
        res.once("data", () => {
          req.destroy()
          resolve()
        })
      })
      req.on("error", () => undefined)
    })
    const result = await resultFor("/huge.bin")
    expect(result).toMatchObject({ status: 200, aborted: true })
    expect(result.bytes).toBeLessThan(256 * 1024 * 1024)
    for (let i = 0; i < 100 && openFds() > 0; i++) await new Promise((r) => setImmediate(r))
    expect(openFds()).toBe(0)
  })
})

describe("serveStatic: security", () => {
  it("dotfiles denied by default, .well-known allowed, allow-dotfiles opens them", async () => {
    expect((await request("/.env")).status).toBe(404)
    expect((await request("/.git/config")).status).toBe(404)
    expect((await request("/env-link")).status).toBe(404) // symlink to a dotfile
    expect((await request("/.well-known/security.txt")).status).toBe(200)
    config = { ...defaultStaticFilesConfig(root), allowDotfiles: true }
    expect((await request("/.env")).status).toBe(200)
  })

  it("symlinks escaping the root are 404, symlinks inside work", async () => {
    expect((await request("/link-out")).status).toBe(404)
    expect((await request("/linkdir-out/secret.txt")).status).toBe(404)
    expect((await request("/sibling/x.txt")).status).toBe(404) // root-sibling shares the root's name prefix
    expect((await request("/link-in")).body.toString()).toBe("hello world")
  })

  it("named traversal vectors: 400 or 404, never the canary, never 5xx", async () => {
    const vectors = [
      "/../outside-canary.txt", "/..%2foutside-canary.txt", "/%2e%2e/outside-canary.txt", "/%2e%2e%2foutside-canary.txt",
      "/..%5coutside-canary.txt", "/%252e%252e%252foutside-canary.txt", "/%%32%65%%32%65/outside-canary.txt",
      "/%c0%ae%c0%ae/outside-canary.txt", "/%c0%af", "/%25c0%25ae%25c0%25ae/outside-canary.txt", "/a.txt%00.png",
      "/....//outside-canary.txt", "/linkdir-out/secret.txt", "/.%2e/outside-canary.txt", "//../outside-canary.txt",
      "/sub/..%2f..%2foutside-canary.txt", "/fifo", "/%"
    ]
    for (const v of vectors) {
      const resp = await rawGet(v)
      expect(resp, v).not.toContain(token)
      const status = Number(resp.slice(9, 12))
      expect(status, v).toBeGreaterThanOrEqual(400)
      expect(status, v).toBeLessThan(500)
    }
    expect(Number((await rawGet("/a.txt%00.png")).slice(9, 12))).toBe(400)
    expect(Number((await rawGet("/%c0%ae%c0%ae/x")).slice(9, 12))).toBe(400)
  })

  it("encoded unicode names are served (decoded once as UTF-8)", async () => {
    expect((await request("/caf%C3%A9.txt")).body.toString()).toBe("unicode")
    expect((await request("/sub%2fb.txt")).body.toString()).toBe("bee") // %2f maps to a separator, like Caddy
  })
})

describe("static path property: no path ever reads outside the root", () => {
  const piece = fc.constantFrom(
    "..", ".", "/", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%252e", "%25", "%c0%ae", "%c0%af", "%%32%65",
    "outside-canary.txt", "outside-dir", "secret.txt", "link-out", "linkdir-out", "sibling", "x.txt", "a.txt", "sub",
    ".env", ".git", "config", "é", "%C3%A9", "root", "..%2f", "%2e%2e%2f", "//", "fifo", "env-link"
  )
  const pathArb = fc.array(piece, { minLength: 1, maxLength: 10 }).map((xs) => "/" + xs.join(""))

  it("resolveStaticPath: any resolved file is inside the root and is not the canary (5000 runs)", async () => {
    const rootReal = fs.realpathSync(root)
    await fc.assert(
      fc.asyncProperty(pathArb, fc.boolean(), async (p, dot) => {
        const r = await resolveStaticPath(rootReal, p, dot)
        if (r._tag === "Resolved") {
          expect(r.realPath === rootReal || r.realPath.startsWith(rootReal + path.sep)).toBe(true)
          if (r.stats.isFile()) expect(fs.readFileSync(r.realPath, "utf8")).not.toContain(token)
          if (!dot) expect(path.relative(rootReal, r.realPath).split(path.sep).some((s) => s.startsWith(".") && s !== ".well-known")).toBe(false)
        } else expect([400, 403, 404]).toContain(r.status)
      }),
      { numRuns: 5000 }
    )
  })

  it("over HTTP: random encoded paths never return the canary and never 5xx (300 runs)", async () => {
    await fc.assert(
      fc.asyncProperty(pathArb, async (p) => {
        const target = Buffer.from(p, "utf8").toString("latin1") // raw UTF-8 bytes on the wire
        const resp = await rawGet(target)
        expect(resp).not.toContain(token)
        const status = Number(resp.slice(9, 12))
        expect(status === 200 || status === 301 || status === 304 || (status >= 400 && status < 500)).toBe(true)
      }),
      { numRuns: 300 }
    )
  })
})
