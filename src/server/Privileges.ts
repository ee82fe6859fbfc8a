/**
 * `system { user; group; working-directory }`, as nginx applies them:
 * - `working-directory`: the serving process changes to it after reading its configuration and
 *   before starting, so the configuration's relative paths (certificates, logs, static roots)
 *   resolve against it; the configuration file itself keeps the path it was given (made
 *   absolute first, so that reloads find it);
 * - `user` and `group`: once the listeners (and the metrics listener) are bound, the serving
 *   process (the single process, or each worker; a cluster primary keeps its user, as nginx's
 *   master does) sets its groups to `group` (default: the group named like the user, nginx's
 *   rule), then its user. Only root can: started as another user, this is a warning and the
 *   process keeps its user (nginx: "the user directive makes sense only if the master process
 *   runs with super-user privileges"). Log files opened before stay writable; after a drop, a
 *   reload cannot bind a privileged port it did not have, and SIGUSR1 reopens log files as the
 *   new user.
 */
import * as path from "node:path"
import type { SystemConfig } from "../config/Schema.js"

/** Changes to `working-directory`; throws a clear error when it cannot. Returns the config path made absolute first. */
export const enterWorkingDirectory = (system: SystemConfig, configFile: string | undefined): string | undefined => {
  const absolute = configFile === undefined ? undefined : path.resolve(configFile)
  const dir = system.workingDirectory
  if (dir !== undefined) {
    try {
      process.chdir(dir)
    } catch (e) {
      throw new Error(`cannot change to working-directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  return absolute
}

export type DropOutcome =
  | { readonly _tag: "Kept" }
  | { readonly _tag: "NotRoot"; readonly uid: number }
  | { readonly _tag: "Dropped"; readonly user: string; readonly group: string }

/** Switches to `user`/`group` (see above); throws a clear error when root cannot (unknown user or group). */
export const dropPrivileges = (system: SystemConfig): DropOutcome => {
  const user = system.user
  const group = system.group ?? user
  if (user === undefined && group === undefined) return { _tag: "Kept" }
  const uid = process.getuid?.() ?? -1
  if (uid !== 0) return { _tag: "NotRoot", uid }
  const id = (v: string): string | number => (/^\d+$/.test(v) ? Number(v) : v)
  try {
    if (group !== undefined) {
      // the user's supplementary groups plus `group` (POSIX initgroups; node has it, its types may not)
      const initgroups = (process as { initgroups?: (user: string, extra: string | number) => void }).initgroups
      if (user !== undefined && !/^\d+$/.test(user) && initgroups !== undefined) initgroups(user, id(group))
      else process.setgroups?.([id(group)])
      process.setgid?.(id(group))
    }
    if (user !== undefined) process.setuid?.(id(user))
  } catch (e) {
    throw new Error(`cannot switch to user ${user ?? "-"} and group ${group ?? "-"}: ${(e as Error).message}`)
  }
  return { _tag: "Dropped", user: user ?? String(process.getuid?.()), group: group ?? String(process.getgid?.()) }
}
