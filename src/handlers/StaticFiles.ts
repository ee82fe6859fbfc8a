/**
 * `static-files { ... }` route handler: serves files under a root over node:http.
 *
 * Security (edge-security.md §5): the path is decoded once, NUL / bad encoding / `..` / backslash
 * are answered 400, the file's realpath must stay inside the root's realpath (symlinks escaping
 * it are 404), the descriptor is re-checked after open, dotfiles are denied unless allowed, only
 * GET/HEAD are served, and only regular files are ever opened (a FIFO would block the read).
 * Streaming goes through `stream.pipeline`, so back-pressure is honoured and a client abort
 * destroys the file stream.
 */
import { constants as fsConstants, promises as fsp, type Stats } from "node:fs"
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http"
import * as nodePath from "node:path"
import { PassThrough, type Readable } from "node:stream"
import { abortResponse } from "../http/Response.js"
import { pipeline } from "node:stream/promises"
import type * as MimeTypes from "mime-types"
import { lazyModule } from "../LazyModule.js"
import { renderDirectoryListing } from "./DirectoryListing.js"
import {
  ifRangeAllows,
  isCompressible,
  makeEtag,
  notModified,
  parseRange,
  type RangeResult
} from "./HttpConditional.js"
import { fdInsideRoot, resolveStaticPath, resolveUnderRoot } from "./StaticPath.js"
import { createEncoder } from "../filters/Compress.js"
import { negotiateEncoding } from "../http/ContentCoding.js"

/** Codings served, brotli first (a sibling or on the fly). */
const STATIC_CODINGS: ReadonlyArray<"br" | "gzip"> = ["br", "gzip"]

export interface StaticFilesConfig {
  /** KDL `root` (required): directory served. Resolved with realpath once; files must stay inside it. */
  readonly root: string
  /** KDL `index`: file served for a directory. Default "index.html". */
  readonly index: string
  /** KDL `directory-listing`: HTML listing for a directory without index. Default #false. */
  readonly directoryListing: boolean
  /** KDL `cache-control`: Cache-Control on every file response. Default "public, max-age=3600". */
  readonly cacheControl: string
  /** KDL `compress`: serve `.br`/`.gz` siblings, else compress compressible types on the fly. Default #true. */
  readonly compress: boolean
  /** KDL `compress-min-size` (Sentinel's fixed 1 KiB): smallest file compressed on the fly. Default 1024. */
  readonly compressMinSize: number
  /** KDL `fallback`: URL path served (200) when the file does not exist, e.g. "/index.html" for an SPA. Default none. */
  readonly fallback: string | null
  /** KDL `allow-dotfiles`: serve names starting with "." (`.well-known` is always allowed). Default #false. */
  readonly allowDotfiles: boolean
}

export const defaultStaticFilesConfig = (root: string): StaticFilesConfig => ({
  root,
  index: "index.html",
  directoryListing: false,
  cacheControl: "public, max-age=3600",
  compress: true,
  compressMinSize: 1024,
  fallback: null,
  allowDotfiles: false
})

export interface StaticResult {
  /** Status sent to the client. */
  readonly status: number
  /** Body bytes written to the response (after compression). */
  readonly bytes: number
  /** The client went away before the body was complete (log as 499). */
  readonly aborted: boolean
  /** Real path of the file served, when one was. */
  readonly file: string | null
  /** Why a 4xx was answered (for logs), null otherwise. */
  readonly reason: string | null
}

const rootCache = new Map<string, Promise<string>>()

/** realpath of the configured root, cached per root string (a failure is not cached). */
const rootRealpath = (root: string): Promise<string> => {
  let p = rootCache.get(root)
  if (p === undefined) {
    p = fsp.realpath(root)
    rootCache.set(root, p)
    p.catch(() => rootCache.delete(root))
  }
  return p
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  416: "Range Not Satisfiable",
  500: "Internal Server Error"
}

const sendSimple = (
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  reason: string | null,
  headers: OutgoingHttpHeaders = {}
): StaticResult => {
  const body = `${status} ${STATUS_TEXT[status] ?? ""}\n`
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "x-content-type-options": "nosniff",
    ...headers
  })
  const send = req.method !== "HEAD" && status !== 304
  res.end(send ? body : undefined)
  return { status, bytes: send ? Buffer.byteLength(body) : 0, aborted: false, file: null, reason }
}

const firstHeader = (v: string | ReadonlyArray<string> | undefined): string | undefined =>
  typeof v === "string" ? v : v?.[0]

const encodePath = (urlPath: string): string => urlPath.split("/").map(encodeURIComponent).join("/")

/**
 * Serves `urlPath` (default: `req.url`; the query is ignored) from `config.root`.
 * Never rejects for request reasons: every outcome is a response. Rejects only if writing the
 * response itself throws (headers already sent by someone else).
 */
export const serveStatic = async (
  config: StaticFilesConfig,
  req: IncomingMessage,
  res: ServerResponse,
  urlPath?: string
): Promise<StaticResult> => {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return sendSimple(req, res, 405, "method", { allow: "GET, HEAD" })
  }
  const target = urlPath ?? req.url ?? "/"
  const q = target.indexOf("?")
  const rawPath = q < 0 ? target : target.slice(0, q)
  let rootReal: string
  try {
    rootReal = await rootRealpath(config.root)
  } catch {
    return sendSimple(req, res, 404, "root-missing")
  }
  const resolved = await resolveStaticPath(rootReal, rawPath, config.allowDotfiles)
  if (resolved._tag !== "Resolved") {
    if (resolved._tag === "NotFound" && config.fallback !== null) return serveFallback(config, rootReal, req, res)
    return sendSimple(req, res, resolved.status, resolved.reason)
  }
  if (resolved.stats.isDirectory()) {
    if (!resolved.urlPath.endsWith("/")) {
      // urlPath is rebuilt from segments: one leading "/", so never a `//evil.example` open redirect
      return sendSimple(req, res, 301, "directory-redirect", { location: encodePath(resolved.urlPath) + "/" })
    }
    const index = await resolveUnderRoot(resolved.realPath, [config.index], config.allowDotfiles)
    if (!("_tag" in index) && index.stats.isFile() && index.realPath.startsWith(rootReal)) {
      return serveFile(config, rootReal, index.realPath, index.stats, req, res)
    }
    if (config.directoryListing) return serveListing(config, resolved.realPath, resolved.urlPath, req, res)
    if (config.fallback !== null) return serveFallback(config, rootReal, req, res)
    return sendSimple(req, res, 404, "directory")
  }
  if (!resolved.stats.isFile()) return sendSimple(req, res, 404, "not-regular-file")
  return serveFile(config, rootReal, resolved.realPath, resolved.stats, req, res)
}

const serveFallback = async (
  config: StaticFilesConfig,
  rootReal: string,
  req: IncomingMessage,
  res: ServerResponse
): Promise<StaticResult> => {
  const r = await resolveStaticPath(rootReal, config.fallback ?? "/", config.allowDotfiles)
  if (r._tag !== "Resolved" || !r.stats.isFile()) return sendSimple(req, res, 404, "fallback-missing")
  return serveFile(config, rootReal, r.realPath, r.stats, req, res)
}

const serveListing = async (
  config: StaticFilesConfig,
  dirReal: string,
  urlPath: string,
  req: IncomingMessage,
  res: ServerResponse
): Promise<StaticResult> => {
  let entries
  try {
    entries = await fsp.readdir(dirReal, { withFileTypes: true })
  } catch {
    return sendSimple(req, res, 404, "directory-unreadable")
  }
  const html = renderDirectoryListing(urlPath, entries, (n) => config.allowDotfiles || !n.startsWith("."))
  const body = Buffer.from(html, "utf8")
  res.writeHead(200, {
    "content-type": "text/html; charset=utf-8",
    "content-length": body.length,
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff"
  })
  res.end(req.method === "HEAD" ? undefined : body)
  return { status: 200, bytes: req.method === "HEAD" ? 0 : body.length, aborted: false, file: dirReal, reason: null }
}

interface Variant {
  readonly file: string
  readonly stats: Stats
  readonly encoding: "br" | "gzip" | null
  readonly onTheFly: boolean
  readonly etag: string
}

/** Picks identity, a precompressed sibling (`.br`/`.gz`, itself inside the root) or on-the-fly compression. */
const chooseVariant = async (
  config: StaticFilesConfig,
  rootReal: string,
  file: string,
  stats: Stats,
  contentType: string,
  req: IncomingMessage,
  ranged: boolean
): Promise<Variant> => {
  const identity: Variant = { file, stats, encoding: null, onTheFly: false, etag: makeEtag(stats.size, stats.mtimeMs) }
  if (!config.compress || ranged || !isCompressible(contentType)) return identity
  const enc = negotiateEncoding(req.headers["accept-encoding"], STATIC_CODINGS)
  if (enc === null) return identity
  const sibling = `${file}.${enc === "br" ? "br" : "gz"}`
  try {
    const real = await fsp.realpath(sibling)
    if (real.startsWith(rootReal + nodePath.sep)) {
      const s = await fsp.stat(real)
      if (s.isFile()) return { file: real, stats: s, encoding: enc, onTheFly: false, etag: makeEtag(s.size, s.mtimeMs, enc) }
    }
  } catch {
    // no precompressed sibling
  }
  if (stats.size < config.compressMinSize) return identity
  return { file, stats, encoding: enc, onTheFly: true, etag: "W/" + makeEtag(stats.size, stats.mtimeMs, enc) }
}

/** mime-types and its 200 KB database load with the first file served (about 1 MiB of heap a proxy without static routes never needs). */
const mime = lazyModule<typeof MimeTypes>("mime-types")

const serveFile = async (
  config: StaticFilesConfig,
  rootReal: string,
  file: string,
  stats: Stats,
  req: IncomingMessage,
  res: ServerResponse
): Promise<StaticResult> => {
  const contentType = mime().contentType(nodePath.extname(file)) || "application/octet-stream"
  const compressible = config.compress && isCompressible(contentType)
  const identityEtag = makeEtag(stats.size, stats.mtimeMs)
  let range: RangeResult = { _tag: "None" }
  if (req.headers.range !== undefined && ifRangeAllows(firstHeader(req.headers["if-range"]), identityEtag, stats.mtimeMs)) {
    range = parseRange(req.headers.range, stats.size)
  }
  const variant = await chooseVariant(config, rootReal, file, stats, contentType, req, range._tag !== "None")
  const headers: OutgoingHttpHeaders = {
    "content-type": contentType,
    etag: variant.etag,
    "last-modified": stats.mtime.toUTCString(),
    "cache-control": config.cacheControl,
    "accept-ranges": "bytes",
    "x-content-type-options": "nosniff"
  }
  if (compressible) headers.vary = "Accept-Encoding"
  const conditional = {
    "if-none-match": req.headers["if-none-match"],
    "if-modified-since": req.headers["if-modified-since"]
  }
  if (notModified(conditional, variant.etag, stats.mtimeMs)) {
    res.writeHead(304, headers)
    res.end()
    return { status: 304, bytes: 0, aborted: false, file, reason: null }
  }
  if (range._tag === "Unsatisfiable") {
    return sendSimple(req, res, 416, "range", { "content-range": `bytes */${stats.size}` })
  }

  let fh: fsp.FileHandle
  try {
    fh = await fsp.open(variant.file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return sendSimple(req, res, code === "EACCES" ? 403 : 404, code ?? "open")
  }
  if (!(await fdInsideRoot(rootReal, fh.fd))) {
    await fh.close()
    return sendSimple(req, res, 404, "swapped-outside-root")
  }

  let status = 200
  let start = 0
  let end = variant.stats.size - 1
  if (range._tag === "Single") {
    status = 206
    start = range.start
    end = range.end
    headers["content-range"] = `bytes ${start}-${end}/${stats.size}`
  }
  if (variant.encoding !== null) headers["content-encoding"] = variant.encoding
  if (!variant.onTheFly) headers["content-length"] = Math.max(0, end - start + 1)

  if (req.method === "HEAD" || variant.stats.size === 0) {
    await fh.close()
    res.writeHead(status, headers)
    res.end()
    return { status, bytes: 0, aborted: false, file, reason: null }
  }

  res.writeHead(status, headers)
  const source = fh.createReadStream({ start, end, highWaterMark: 64 * 1024, autoClose: true })
  const stages: Array<NodeJS.ReadWriteStream | Readable> = [source]
  if (variant.onTheFly) {
    // brotli quality 4: most of brotli's gain at a fraction of the default (11)'s CPU per request
    stages.push(createEncoder(variant.encoding!, variant.encoding === "br" ? 4 : 6, variant.stats.size))
  }
  let bytes = 0
  const counter = new PassThrough({ highWaterMark: 64 * 1024 })
  counter.on("data", (chunk: Buffer) => (bytes += chunk.length))
  stages.push(counter)
  try {
    await pipeline([...stages, res] as ReadonlyArray<NodeJS.ReadWriteStream | NodeJS.WritableStream | NodeJS.ReadableStream>)
    return { status, bytes, aborted: false, file, reason: null }
  } catch {
    // client abort (premature close) or read error after headers: pipeline destroyed every stage,
    // which closed the file handle; the response cannot change status any more
    if (!res.destroyed) abortResponse(res)
    return { status, bytes, aborted: true, file, reason: null }
  }
}
