/**
 * The reference agents as processes: each built agent is started with
 * `node dist/agents-bin/<name>/main.js --socket ...` and exercised over its
 * socket by a raw protocol client. Needs `npm run build` first (`npm test`
 * runs it as pretest).
 */
import * as ChildProcess from "node:child_process"
import { generateKeyPairSync } from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as jose from "jose"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MessageType } from "../../src/agents/Protocol.js"
import { RawAgentClient, requestBodyEvent, requestHeadersEvent } from "./sdkClient.js"

const root = Path.resolve(__dirname, "../..")
const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "agents-"))

interface Running {
  readonly proc: ChildProcess.ChildProcess
  readonly socketPath: string
  readonly output: () => string
  readonly exited: Promise<number | null>
  client: RawAgentClient
}

const running: Array<Running> = []

const start = async (name: string, args: Array<string>, label = name): Promise<Running> => {
  const main = Path.join(root, "dist/agents-bin", name, "main.js")
  if (!Fs.existsSync(main)) throw new Error(`${main} missing: run 'npm run build' first`)
  const socketPath = Path.join(dir, `${label}.sock`)
  const proc = ChildProcess.spawn(process.execPath, [main, "--socket", socketPath, ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  proc.stdout!.on("data", (d) => (out += d))
  proc.stderr!.on("data", (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)))
  let client: RawAgentClient
  try {
    client = await RawAgentClient.connectWhenReady(socketPath, 25_000)
  } catch (e) {
    proc.kill("SIGKILL")
    throw new Error(`agent ${label} did not start: ${(e as Error).message}\n${out}`)
  }
  const hs = await client.handshake()
  expect(hs.success, out).toBe(true)
  const r: Running = { proc, socketPath, output: () => out, exited, client }
  running.push(r)
  return r
}

const ask = async (r: Running, over: Parameters<typeof requestHeadersEvent>[0] = {}) => {
  const ev = requestHeadersEvent(over)
  r.client.send(MessageType.RequestHeaders, ev)
  return r.client.answerFor(ev.correlation_id)
}

/** Polls `probe` until it returns true, at most `timeoutMs` (waiting on an external effect: a file reload). */
const eventually = async (probe: () => Promise<boolean>, timeoutMs = 8000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time")
    await new Promise((r) => setTimeout(r, 50))
  }
}

const writeAtomically = (file: string, text: string) => {
  Fs.writeFileSync(`${file}.tmp`, text)
  Fs.renameSync(`${file}.tmp`, file)
}

// Keys and files for the agents.
const secret = "reference-test-secret-0123456789abcdef"
const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
const pemFile = Path.join(dir, "rsa.pem")
const apiKeysFile = Path.join(dir, "api-keys.txt")
const listWatched = Path.join(dir, "deny-watched.txt")
const listHup = Path.join(dir, "deny-hup.json")

let echo: Running, denyWatched: Running, denyHup: Running, waf: Running, auth: Running, ratelimit: Running

beforeAll(async () => {
  Fs.writeFileSync(pemFile, publicKey.export({ type: "spki", format: "pem" }))
  Fs.writeFileSync(apiKeysFile, "key-abc service-a\n")
  Fs.writeFileSync(listWatched, "10.0.0.0/8\n2001:db8::/32\npath /admin/*\nua sqlmap\n")
  Fs.writeFileSync(listHup, JSON.stringify({ ips: ["10.0.0.0/8"] }))
  // Started together: each process spends most of its start-up loading modules.
  ;[echo, denyWatched, denyHup, waf, auth, ratelimit] = await Promise.all([
    start("echo", []),
    start("denylist", ["--list", listWatched], "denylist-watched"),
    start("denylist", ["--list", listHup, "--watch", "false"], "denylist-hup"),
    start("waf", ["--threshold", "5"]),
    start("auth", ["--secret", secret, "--public-key-file", pemFile, "--api-keys", apiKeysFile, "--issuer", "https://idp.test", "--leeway", "5"]),
    start("ratelimit", ["--rate", "1", "--burst", "3"])
  ])
}, 60_000)

afterAll(async () => {
  for (const r of running) {
    r.client.close()
    if (r.proc.exitCode === null) r.proc.kill("SIGKILL")
  }
  Fs.rmSync(dir, { recursive: true, force: true })
})

describe("echo agent", () => {
  it("adds X-Agent-Processed: true and copies the correlation id", async () => {
    const ev = requestHeadersEvent({ uri: "/hello" })
    echo.client.send(MessageType.RequestHeaders, ev)
    const ans = await echo.client.answerFor(ev.correlation_id)
    expect(ans).toMatchObject({ version: 2, decision: "allow", request_headers: [{ set: { name: "X-Agent-Processed", value: "true" } }] })
  })

  it("exits 0 on SIGTERM and removes its socket", async () => {
    echo.proc.kill("SIGTERM")
    expect(await echo.exited).toBe(0)
    expect(Fs.existsSync(echo.socketPath)).toBe(false)
  })
})

describe("denylist agent", () => {
  it("blocks listed IPs (v4, v4-mapped, v6), paths and user agents with 403 and rule ids; allows the rest", async () => {
    const cases: Array<[Parameters<typeof requestHeadersEvent>[0], string]> = [
      [{ clientIp: "10.9.8.7" }, "denylist-ip"],
      [{ clientIp: "::ffff:10.9.8.7" }, "denylist-ip"],
      [{ clientIp: "2001:db8::42" }, "denylist-ip"],
      [{ uri: "/admin/users?x=1" }, "denylist-path"],
      [{ headers: { "user-agent": ["sqlmap/1.7"] } }, "denylist-user-agent"]
    ]
    const base = { clientIp: "192.0.2.1" }
    for (const [over, rule] of cases) {
      const ans = await ask(denyWatched, { ...base, ...over })
      expect(ans.decision, JSON.stringify(over)).toEqual({ block: { status: 403, body: "Forbidden", headers: null } })
      expect(ans.audit.rule_ids).toEqual([rule])
    }
    expect((await ask(denyWatched, { clientIp: "192.0.2.1", uri: "/public" })).decision).toBe("allow")
  })

  it("reloads its list when the file changes", async () => {
    expect((await ask(denyWatched, { clientIp: "198.51.100.7" })).decision).toBe("allow")
    writeAtomically(listWatched, "10.0.0.0/8\n198.51.100.0/24\n")
    await eventually(async () => (await ask(denyWatched, { clientIp: "198.51.100.7" })).decision !== "allow")
    // The old entries not in the new file are gone.
    expect((await ask(denyWatched, { uri: "/admin/users", clientIp: "192.0.2.1" })).decision).toBe("allow")
  })

  it("keeps the previous list when the new file is invalid", async () => {
    writeAtomically(listWatched, "10.0.0.0/8\nnot-an-ip\n")
    await eventually(async () => denyWatched.output().includes("keeping the previous list"))
    expect((await ask(denyWatched, { clientIp: "198.51.100.7" })).decision).not.toBe("allow")
  })

  it("reloads on SIGHUP (file watching off)", async () => {
    writeAtomically(listHup, JSON.stringify({ ips: ["10.0.0.0/8", "203.0.113.0/24"] }))
    expect((await ask(denyHup, { clientIp: "203.0.113.9" })).decision).toBe("allow")
    denyHup.proc.kill("SIGHUP")
    await eventually(async () => (await ask(denyHup, { clientIp: "203.0.113.9" })).decision !== "allow")
  })
})

describe("waf agent", () => {
  it("blocks SQL injection, XSS, path traversal and command injection with rule ids and tags", async () => {
    for (const [uri, tag] of [
      ["/items?id=1%27%20OR%20%271%27%3D%271", "attack-sqli"],
      ["/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "attack-xss"],
      ["/static/..%2F..%2Fetc%2Fpasswd", "attack-path-traversal"],
      ["/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd", "attack-command-injection"]
    ]) {
      const ans = await ask(waf, { uri })
      expect(ans.decision, uri).toEqual({ block: { status: 403, body: "Forbidden", headers: null } })
      expect(ans.audit.tags, uri).toContain(tag)
      expect(ans.audit.rule_ids.length, uri).toBeGreaterThan(0)
      expect(ans.audit.reason_codes).toEqual(["WAF_ANOMALY_THRESHOLD"])
    }
  })

  it("passes benign requests", async () => {
    for (const uri of ["/", "/products?category=shoes&sort=price", "/search?q=union%20station", "/blog/o-reilly-books?page=2"]) {
      const ans = await ask(waf, { uri, headers: { "user-agent": ["Mozilla/5.0 (X11; Linux x86_64)"], accept: ["text/html;q=0.9,*/*;q=0.8"] } })
      expect(ans.decision, uri).toBe("allow")
      expect(ans.audit.rule_ids ?? [], uri).toEqual([]) // a default the SDK leaves out
    }
  })

  it("inspects request bodies (request_body event)", async () => {
    waf.client.send(MessageType.RequestBodyChunk, requestBodyEvent("body-sqli", '{"name":"x\' UNION SELECT password FROM users --"}'))
    expect((await waf.client.answerFor("body-sqli")).decision).toMatchObject({ block: { status: 403 } })
    waf.client.send(MessageType.RequestBodyChunk, requestBodyEvent("body-ok", '{"name":"Alice","note":"hello"}'))
    expect((await waf.client.answerFor("body-ok")).decision).toBe("allow")
  })
})

describe("auth agent", () => {
  const hs256 = (claims: jose.JWTPayload, key = secret) =>
    new jose.SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(key))
  const now = () => Math.floor(Date.now() / 1000)
  const bearer = (token: string) => ({ headers: { authorization: [`Bearer ${token}`] } })

  it("accepts a valid HS256 token and adds identity headers", async () => {
    const ans = await ask(auth, bearer(await hs256({ sub: "alice", iss: "https://idp.test", exp: now() + 60 })))
    expect(ans.decision).toBe("allow")
    expect(ans.request_headers).toEqual([
      { set: { name: "X-Auth-Subject", value: "alice" } },
      { set: { name: "X-Auth-Method", value: "jwt" } }
    ])
  })

  it("accepts a valid RS256 token", async () => {
    const token = await new jose.SignJWT({ sub: "bob", iss: "https://idp.test" })
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime(now() + 60)
      .sign(privateKey)
    const ans = await ask(auth, bearer(token))
    expect(ans.decision).toBe("allow")
    expect(ans.request_headers[0]).toEqual({ set: { name: "X-Auth-Subject", value: "bob" } })
  })

  it("rejects expired, badly signed, wrong-issuer and missing credentials with 401 and WWW-Authenticate", async () => {
    const cases: Array<[Parameters<typeof requestHeadersEvent>[0], string]> = [
      [bearer(await hs256({ sub: "a", iss: "https://idp.test", exp: now() - 120 })), "TOKEN_EXPIRED"],
      [bearer(await hs256({ sub: "a", iss: "https://idp.test" }, "some-other-secret-0123456789abcdef")), "BAD_SIGNATURE"],
      [bearer(await hs256({ sub: "a", iss: "https://evil.test" })), "CLAIM_INVALID"],
      [{ headers: {} }, "CREDENTIALS_MISSING"]
    ]
    for (const [over, code] of cases) {
      const ans = await ask(auth, over)
      expect(ans.decision.block, code).toMatchObject({ status: 401 })
      const challenge = ans.decision.block.headers["WWW-Authenticate"]
      expect(challenge).toMatch(/^Bearer realm="sentinel"/)
      if (code === "CREDENTIALS_MISSING") expect(challenge).toBe('Bearer realm="sentinel"')
      else expect(challenge).toContain('error="invalid_token"')
      expect(ans.audit.reason_codes).toEqual([code])
    }
  })

  it("accepts a known API key and rejects an unknown one", async () => {
    const ok = await ask(auth, { headers: { "x-api-key": ["key-abc"] } })
    expect(ok.decision).toBe("allow")
    expect(ok.request_headers).toContainEqual({ set: { name: "X-Auth-Subject", value: "service-a" } })
    expect((await ask(auth, { headers: { "x-api-key": ["key-zzz"] } })).decision).toMatchObject({ block: { status: 401 } })
  })
})

describe("ratelimit agent", () => {
  it("admits the burst, then answers 429 with Retry-After; other clients are unaffected", async () => {
    const ip = "198.51.100.50"
    const decisions = []
    for (let i = 0; i < 4; i++) decisions.push((await ask(ratelimit, { clientIp: ip })).decision)
    expect(decisions.slice(0, 3)).toEqual(["allow", "allow", "allow"])
    expect(decisions[3]).toEqual({
      block: { status: 429, body: "Too Many Requests", headers: { "Retry-After": "1", "X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0" } }
    })
    expect((await ask(ratelimit, { clientIp: "198.51.100.51" })).decision).toBe("allow")
  })
})
