#!/usr/bin/env node
/**
 * `sentinel`: package.json's `bin`, `npm start`, the Dockerfile. It runs the bundled service,
 * dist/bundle/main.js, which `npm run build` writes (scripts/bundle.mjs) from `Launch.ts`: our
 * code and effect in a few minified chunks, about 10 MiB less resident memory than the same
 * code as ~500 separate modules (bench/README.md, "Memory"). The re-exec with the proxy's V8
 * flags and the cluster's workers run this same file (`process.argv[1]`), so the bundle too.
 */
import { existsSync } from "node:fs"

const bundle = new URL("./bundle/main.js", import.meta.url)
if (!existsSync(bundle)) {
  process.stderr.write(`sentinel: ${bundle.pathname} is missing: run \`npm run build\` (or run dist/Launch.js, the same from the modules)\n`)
  process.exit(2)
}
await import(bundle.href)
