/** The version reported by `--version`, the status page and `sentinel_build_info`. */
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
export const VERSION: string = (require("../package.json") as { version: string }).version
