#!/usr/bin/env node
/**
 * The bundled service, the last step of `npm run build` before the stamp: esbuild from
 * src/Launch.ts into dist/bundle/ (main.js and chunks/), which `dist/main.js` runs.
 *
 * Why: the same code as ~500 separate modules keeps each one's source text (effect's stored two
 * bytes per character: its doc comments), its module record and its scope; one minified bundle
 * of our code and effect holds about 10 MiB less old space in every process (bench/README.md,
 * "Memory"). The tsc modules in dist/ stay what the library API (`main`, `exports`, types) and
 * the in-process tests use.
 *
 * - Code splitting keeps the dynamic imports lazy: `Program` after the re-exec (the supervising
 *   parent loads Cli and RuntimeFlags only), @effect/opentelemetry when tracing is on.
 * - Inlined: our code, effect and @effect/* (one copy of effect, whose runtime checks identity),
 *   and the small pure-ESM helpers. External: what is loaded on first use through
 *   `createRequire` (LazyModule.ts, Undici.ts: their CommonJS stays out of an idle proxy),
 *   what only tracing loads (@opentelemetry/*), and prom-client: CommonJS, whose inlining
 *   measured no better (peak and start RSS within 1 MiB) and would need a `require` shim.
 * - Whitespace and syntax minified; identifiers are not, so error logs and stack traces name our
 *   functions (a name two modules share gets a digit: `parse2`). No `keepNames`: it wraps every
 *   function expression in a `__name()` call, run again each time a closure is made, which cost
 *   CPU and peak memory per request (bench/README.md). Linked source maps: `node
 *   --enable-source-maps dist/main.js` maps traces to src/. Licence comments go to `*.LEGAL.txt`
 *   beside the chunks.
 *
 *   node scripts/bundle.mjs [--metafile]   (--metafile: print what each output holds)
 *
 * Also writes dist/bundle/inputs.json: each chunk's source files.
 */
import * as esbuild from "esbuild"
import { rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"

const root = process.cwd()
const outdir = join(root, "dist", "bundle")

/** Packages left to node's resolver at run time (everything else imported is bundled). */
const EXTERNAL = [
  "undici",
  "ioredis",
  "@grpc/*",
  "protobufjs",
  "mime-types",
  "http-cache-semantics",
  "@opentelemetry/*",
  "prom-client"
]

rmSync(outdir, { recursive: true, force: true })
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { main: "src/Launch.ts" },
  outdir,
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  external: EXTERNAL,
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: "linked",
  legalComments: "external",
  metafile: true,
  logLevel: "warning"
})

// which sources each chunk holds (test/ops/Footprint.test.ts checks what a running proxy loaded)
const inputs = Object.fromEntries(
  Object.entries(result.metafile.outputs)
    .filter(([file]) => file.endsWith(".js"))
    .map(([file, out]) => [file.slice("dist/bundle/".length), Object.keys(out.inputs).filter((i) => out.inputs[i].bytesInOutput > 0)])
)
writeFileSync(join(outdir, "inputs.json"), `${JSON.stringify(inputs, null, 1)}\n`)

if (process.argv.includes("--metafile")) {
  const pkgOf = (input) => {
    const i = input.lastIndexOf("node_modules/")
    if (i < 0) return "(ours)"
    const parts = input.slice(i + 13).split("/")
    return parts[0].startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]
  }
  for (const [file, out] of Object.entries(result.metafile.outputs)) {
    if (file.endsWith(".map")) continue
    const by = new Map()
    for (const [input, v] of Object.entries(out.inputs)) by.set(pkgOf(input), (by.get(pkgOf(input)) ?? 0) + v.bytesInOutput)
    const parts = [...by].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${(v / 1024).toFixed(0)}`)
    process.stdout.write(`${file} ${(out.bytes / 1024).toFixed(0)} KiB: ${parts.join(", ")}\n`)
  }
}
