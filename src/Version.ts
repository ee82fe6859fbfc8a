/** The version reported by `--version`, the status page and `sentinel_build_info`. */
import { readFileSync } from "node:fs"
import { packagePath } from "./PackageRoot.js"

export const VERSION: string = (JSON.parse(readFileSync(packagePath("package.json"), "utf8")) as { version: string }).version
