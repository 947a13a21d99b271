/**
 * The agent's fencing memory: per VM, the highest epoch seen, and where the
 * VM stands when that is not visible in the backend (frozen by which
 * migration, released with which epoch). Persisted so a restarted agent
 * still refuses commands from a superseded coordinator.
 *
 *   <stateDir>/epochs.log   one JSON line per change: [vmId, fence] (see keyed-log.ts)
 *
 * A change is one append, never a rewrite and rename in the freeze window.
 * An `epochs.json` written by an older netmig is read once and folded into
 * the log.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { StaleEpochError } from "../protocol/errors.js";
import { KeyedLog } from "./keyed-log.js";

export interface VmFence {
  epoch: number;
  /** The migration that froze the VM here (source side). */
  frozenBy?: string;
  /** Set when the VM's state left this host (a tombstone). */
  releasedBy?: string;
}

function isFence(v: unknown): v is VmFence {
  return v !== null && typeof v === "object" && typeof (v as VmFence).epoch === "number";
}

export class EpochStore {
  private readonly fences: KeyedLog<VmFence>;

  constructor(stateDir: string | null) {
    this.fences = new KeyedLog(stateDir ? join(stateDir, "epochs.log") : null, isFence);
    if (!stateDir) return;
    const legacy = join(stateDir, "epochs.json");
    if (existsSync(legacy)) {
      for (const [vmId, f] of Object.entries(JSON.parse(readFileSync(legacy, "utf8")) as Record<string, VmFence>)) if (!this.fences.get(vmId)) this.fences.set(vmId, f);
      rmSync(legacy, { force: true });
    }
  }

  get(vmId: string): VmFence | undefined {
    return this.fences.get(vmId);
  }

  all(): [string, VmFence][] {
    return this.fences.entries();
  }

  /** Refuses an epoch below the highest seen; records a higher one. */
  check(vmId: string, epoch: number, what: string, hostId: string): void {
    const f = this.fences.get(vmId);
    if (f && epoch < f.epoch) {
      throw new StaleEpochError(`${what} for VM ${vmId} carries epoch ${epoch}, but this host has seen epoch ${f.epoch}: the command comes from a superseded migration`, { vmId, hostId });
    }
    if (!f || epoch > f.epoch) this.update(vmId, { epoch });
  }

  /** Applies a patch (an undefined field is removed); persists it only when something changed. */
  update(vmId: string, patch: Partial<VmFence>): void {
    const cur = this.fences.get(vmId);
    const next: VmFence = { ...(cur ?? { epoch: 0 }), ...patch };
    for (const k of Object.keys(patch) as (keyof VmFence)[]) if (patch[k] === undefined) delete next[k];
    if (cur && (Object.keys(patch) as (keyof VmFence)[]).every((k) => cur[k] === next[k])) return;
    this.fences.set(vmId, next);
  }

  close(): void {
    this.fences.close();
  }
}
