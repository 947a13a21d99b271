/**
 * Host evacuation: a host's VMs migrated off it, `concurrency` at a time, to
 * the destinations in turn, with progress after each VM. The coordinator
 * checks the request and starts each migration (`migrate`); the host gate
 * keeps every VM's freeze window clear of the others' bulk copies.
 */
import { asNetmigError } from "../protocol/errors.js";
import type { Logger } from "../protocol/log.js";
import { Phase } from "./phases.js";
import type { MigrationRecord } from "./record.js";

export interface EvacuationProgress {
  total: number;
  done: number;
  failed: number;
  finished: boolean;
  /** The migration that just ended, if any. */
  migration: MigrationRecord | null;
}

/**
 * Migrates `vms` to `dsts` round-robin, at most `concurrency` at once; a VM
 * that cannot be migrated counts as failed and the others go on. Resolves
 * with the final progress (also the last one reported).
 */
export async function evacuateVms(
  vms: readonly string[], dsts: readonly string[], concurrency: number,
  migrate: (vmId: string, dst: string) => Promise<MigrationRecord>, onProgress: (p: EvacuationProgress) => void, log: Logger,
): Promise<EvacuationProgress> {
  const p: EvacuationProgress = { total: vms.length, done: 0, failed: 0, finished: false, migration: null };
  let next = 0;
  const worker = async () => {
    while (next < vms.length) {
      const i = next++;
      const vmId = vms[i]!;
      let r: MigrationRecord | null = null;
      try {
        r = await migrate(vmId, dsts[i % dsts.length]!);
        if (r.phase === Phase.Done) p.done++;
        else p.failed++;
      } catch (err) {
        p.failed++;
        log.warn({ vmId, err: asNetmigError(err).message }, "evacuation could not migrate a VM");
      }
      onProgress({ ...p, migration: r });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, vms.length)) }, worker));
  const last = { ...p, finished: true, migration: null };
  onProgress(last);
  return last;
}
