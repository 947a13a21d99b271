/**
 * The agent's fencing memory: per VM, the highest epoch seen, and where the
 * VM stands when that is not visible in the backend (frozen by which
 * migration, released with which epoch). Persisted atomically to
 * <stateDir>/epochs.json on every change, so a restarted agent still refuses
 * commands from a superseded coordinator.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StaleEpochError } from "../protocol/errors.js";

export interface VmFence {
  epoch: number;
  /** The migration that froze the VM here (source side). */
  frozenBy?: string;
  /** Set when the VM's state left this host (a tombstone). */
  releasedBy?: string;
}

export class EpochStore {
  private readonly fences = new Map<string, VmFence>();
  private readonly file: string | null;

  constructor(stateDir: string | null) {
    this.file = stateDir ? join(stateDir, "epochs.json") : null;
    if (this.file && existsSync(this.file)) {
      for (const [vmId, f] of Object.entries(JSON.parse(readFileSync(this.file, "utf8")) as Record<string, VmFence>)) this.fences.set(vmId, f);
    }
  }

  get(vmId: string): VmFence | undefined {
    return this.fences.get(vmId);
  }

  all(): [string, VmFence][] {
    return Array.from(this.fences);
  }

  /** Refuses an epoch below the highest seen; records a higher one. */
  check(vmId: string, epoch: number, what: string, hostId: string): void {
    const f = this.fences.get(vmId);
    if (f && epoch < f.epoch) {
      throw new StaleEpochError(`${what} for VM ${vmId} carries epoch ${epoch}, but this host has seen epoch ${f.epoch}: the command comes from a superseded migration`, { vmId, hostId });
    }
    if (!f || epoch > f.epoch) this.update(vmId, { epoch });
  }

  /** Applies a patch (an undefined field is removed); writes the file only when something changed. */
  update(vmId: string, patch: Partial<VmFence>): void {
    const cur = this.fences.get(vmId);
    const next: VmFence = { ...(cur ?? { epoch: 0 }), ...patch };
    for (const k of Object.keys(patch) as (keyof VmFence)[]) if (patch[k] === undefined) delete next[k];
    if (cur && (Object.keys(patch) as (keyof VmFence)[]).every((k) => cur[k] === next[k])) return;
    this.fences.set(vmId, next);
    this.save();
  }

  private save(): void {
    if (!this.file) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.fences)));
    renameSync(tmp, this.file);
  }
}
