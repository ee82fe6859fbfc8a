/**
 * Certificates for TLS tests, made at test time with the `openssl` command
 * (EC P-256 keys: fast). `makeCerts` writes a directory with one
 * `<name>.crt` / `<name>.key` pair per spec and returns their paths;
 * `standardCerts` makes the usual set (a CA, server certificates with SANs, a
 * wildcard, an expired one, a client certificate, a mismatched key).
 */
import { execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface CertSpec {
  /** Subject CN. Default: the entry's name. */
  readonly cn?: string
  /** DNS names of the subjectAltName (an entry "IP:1.2.3.4" is an IP SAN). Default none. */
  readonly sans?: ReadonlyArray<string>
  /** Name of the CA entry (spec with `ca: true`, listed before) that signs it. Default: the first CA of the set. */
  readonly issuer?: string
  /** A CA certificate (self-signed, basicConstraints CA:TRUE). */
  readonly ca?: boolean
  /** A client certificate (extendedKeyUsage clientAuth) rather than a server one. */
  readonly client?: boolean
  /** Expiry, in days from now; negative = already expired. Default 365. */
  readonly notAfterDays?: number
  /** Write the key of this other entry (listed before) as this entry's key: a key that does not match. */
  readonly keyOf?: string
  /** An OCSP responder URL in the certificate's Authority Information Access. */
  readonly ocspUrl?: string
  /** Append the issuer's certificate to the `.crt` file (a chain, as a served cert-file has). */
  readonly chain?: boolean
}

export interface CertFiles {
  readonly cert: string
  readonly key: string
}

export interface CertSet<K extends string> {
  readonly dir: string
  readonly files: { readonly [N in K]: CertFiles }
  /** The signing CA's database (`openssl ca` index), e.g. for an `openssl ocsp` responder. */
  readonly index: string
  /** Removes the directory. */
  readonly cleanup: () => void
}

export const opensslMissing = "openssl is required for the TLS tests (apt-get install -y openssl)"

let checked = false
const requireOpenssl = (): void => {
  if (checked) return
  const r = spawnSync("openssl", ["version"], { stdio: "ignore" })
  if (r.error !== undefined || r.status !== 0) throw new Error(opensslMissing)
  checked = true
}

const openssl = (args: ReadonlyArray<string>, cwd: string): void => {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] })
  } catch (e) {
    const err = e as { code?: string; stderr?: Buffer }
    if (err.code === "ENOENT") throw new Error(opensslMissing)
    throw new Error(`openssl ${args.join(" ")} failed: ${err.stderr?.toString() ?? String(e)}`)
  }
}

/** openssl's `ca` date format (UTC): YYYYMMDDHHMMSSZ. */
const asn1Date = (d: Date): string => d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z")

/**
 * Makes a directory (in `dir`, or a new temporary one) with `<name>.crt` and `<name>.key` for each
 * spec, in order. Throws "openssl is required for the TLS tests (apt-get install -y openssl)" when
 * the command is missing.
 */
export const makeCerts = <K extends string>(specs: { readonly [N in K]: CertSpec }, dir?: string): CertSet<K> => {
  requireOpenssl()
  const root = dir ?? mkdtempSync(join(tmpdir(), "sentinel-certs-"))
  mkdirSync(root, { recursive: true })
  const work = mkdtempSync(join(root, ".ca-"))
  writeFileSync(join(work, "index.txt"), "")
  writeFileSync(join(work, "serial"), "1000\n")
  writeFileSync(
    join(work, "ca.cnf"),
    [
      "[ca]", "default_ca=testca", "[testca]", `database=${join(work, "index.txt")}`, `new_certs_dir=${work}`, `serial=${join(work, "serial")}`,
      "default_md=sha256", "policy=any", "unique_subject=no", "copy_extensions=none", "[any]", "commonName=supplied", ""
    ].join("\n")
  )
  const files: Record<string, CertFiles> = {}
  const cas: Array<string> = []
  const now = Date.now()
  for (const [name, spec] of Object.entries(specs) as Array<[K, CertSpec]>) {
    const cert = join(root, `${name}.crt`)
    const key = join(root, `${name}.key`)
    const ownKey = join(work, `${name}.key`)
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ownKey], work)
    const sans = (spec.sans ?? []).map((s) => (s.startsWith("IP:") ? s : `DNS:${s}`))
    const ext = spec.ca
      ? ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign", "subjectKeyIdentifier=hash"]
      : [
        "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
        `extendedKeyUsage=${spec.client ? "clientAuth" : "serverAuth"}`, ...(sans.length > 0 ? [`subjectAltName=${sans.join(",")}`] : []),
        ...(spec.ocspUrl !== undefined ? [`authorityInfoAccess=OCSP;URI:${spec.ocspUrl}`] : [])
      ]
    const extFile = join(work, `${name}.ext`)
    writeFileSync(extFile, `[ext]\n${ext.join("\n")}\n`)
    const csr = join(work, `${name}.csr`)
    openssl(["req", "-new", "-key", ownKey, "-subj", `/CN=${spec.cn ?? name}`, "-out", csr], work)
    const notAfter = new Date(now + (spec.notAfterDays ?? 365) * 86_400_000)
    const notBefore = new Date(Math.min(now - 86_400_000, notAfter.getTime() - 86_400_000))
    const issuer = spec.ca ? undefined : spec.issuer ?? cas[0]
    const signing = issuer === undefined
      ? ["-selfsign", "-keyfile", ownKey]
      : ["-cert", files[issuer]?.cert ?? fail(`${name}: issuer ${issuer} is not a CA listed before it`), "-keyfile", join(work, `${issuer}.key`)]
    openssl([
      "ca", "-batch", "-notext", "-config", join(work, "ca.cnf"), "-in", csr, "-out", cert, ...signing,
      "-startdate", asn1Date(notBefore), "-enddate", asn1Date(notAfter), "-extfile", extFile, "-extensions", "ext"
    ], work)
    if (spec.keyOf !== undefined) {
      const other = files[spec.keyOf] ?? fail(`${name}: keyOf ${spec.keyOf} is not listed before it`)
      copyFileSync(other.key, key)
    } else copyFileSync(ownKey, key)
    if (spec.chain === true && issuer !== undefined) writeFileSync(cert, readFileSync(cert, "latin1") + readFileSync(files[issuer].cert, "latin1"))
    if (spec.ca) cas.push(name)
    files[name] = { cert, key }
  }
  return {
    dir: root,
    files: files as { readonly [N in K]: CertFiles },
    index: join(work, "index.txt"),
    cleanup: () => rmSync(root, { recursive: true, force: true })
  }
}

const fail = (message: string): never => {
  throw new Error(message)
}

/**
 * The usual set: `ca` (signs the rest), `default` (localhost, 127.0.0.1), `api` (api.example.com,
 * www.example.com), `wildcard` (*.example.com), `shared` (example.com, shared.example.com),
 * `expired` (expired.example.com, expired a day ago), `soon` (soon.example.com, expires in 10 days),
 * `client` (a client certificate), `mismatched` (api's certificate with default's key).
 */
export const standardCerts = (dir?: string) =>
  makeCerts({
    ca: { ca: true, cn: "Sentinel Test CA" },
    default: { cn: "default.test", sans: ["localhost", "IP:127.0.0.1"] },
    api: { cn: "api.example.com", sans: ["api.example.com", "www.example.com"] },
    wildcard: { cn: "*.example.com", sans: ["*.example.com"] },
    shared: { cn: "example.com", sans: ["example.com", "shared.example.com"] },
    expired: { sans: ["expired.example.com"], notAfterDays: -1 },
    soon: { sans: ["soon.example.com"], notAfterDays: 10 },
    client: { cn: "client-1", client: true },
    mismatched: { cn: "api.example.com", sans: ["api.example.com"], keyOf: "default" }
  }, dir)
