/**
 * What a libvirt qemu hook invocation means for netmig. libvirt runs the hook
 * as `<hook> <vm-name> <operation> <sub-operation> <extra>` (domain XML on
 * stdin). The ones that matter to a migration:
 *
 *   destination  migrate begin -      incoming migration starts; stdout replaces
 *                                     the domain XML, non-zero exit cancels
 *   destination  prepare begin -, start begin -, started begin -
 *                                     QEMU set up and started, paused, waiting
 *                                     for the memory stream
 *   source       stopped end -        QEMU gone after the guest moved (or after
 *                                     any other stop)
 *   source       release end migrated resources released (reason since libvirt
 *                                     10.5; "-" before)
 *   destination  release end failed   the incoming migration failed
 *
 * No hook fires when the source pauses or the destination resumes; those come
 * from lifecycle events (lifecycle-watch.ts).
 */

export interface HookInvocation {
  vmName: string;
  operation: string;
  subOperation: string;
  /** The fourth argument: "-" or, for `release end`, the reason (libvirt ≥ 10.5). */
  extra: string;
}

/**
 * What netmig does for an invocation, before it knows the host's role.
 * - `prepare`: destination `migrate begin`; PrepareMigration (the filter:
 *   echo the XML; exit code per policy).
 * - `started`: `started begin`; nothing to call (on a migration destination
 *   QEMU is paused waiting for memory), logged at debug.
 * - `stopped`: `stopped end`; on the source of the VM's migration, Complete
 *   (unless complete_on = release); elsewhere nothing.
 * - `released`: `release end <reason>`; on the source, Complete if the reason
 *   is "migrated" (or "-" from libvirt < 10.5); on the destination, Abort.
 * - `ignore`: everything else (plain start/stop, attach, reconnect, restore…).
 */
export type HookAction =
  | { type: "prepare" }
  | { type: "started" }
  | { type: "stopped" }
  | { type: "released"; reason: string }
  | { type: "ignore" };

/** Reads libvirt's argv (without the program name). Missing arguments read as "". */
export function parseInvocation(argv: readonly string[]): HookInvocation {
  return { vmName: argv[0] ?? "", operation: argv[1] ?? "", subOperation: argv[2] ?? "", extra: argv[3] ?? "" };
}

export function actionFor(inv: HookInvocation): HookAction {
  const { operation: op, subOperation: sub } = inv;
  if (op === "migrate" && sub === "begin") return { type: "prepare" };
  if (op === "started" && sub === "begin") return { type: "started" };
  if (op === "stopped" && sub === "end") return { type: "stopped" };
  if (op === "release" && sub === "end") return { type: "released", reason: inv.extra || "-" };
  return { type: "ignore" };
}

/** Whether a `release end` reason means the guest moved away (source side). "-" is libvirt < 10.5, which gives no reason. */
export function releaseMeansMigrated(reason: string): boolean {
  return reason === "migrated" || reason === "-";
}
