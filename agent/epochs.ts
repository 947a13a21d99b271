/**
 * The agent's fencing memory: per VM, the highest epoch seen, and where the
 * VM stands when that is not visible in the backend (frozen by which
 * migration, released with which epoch). Persisted so a restarted agent
 * still refuses commands from a superseded coordinator.
 *
 *   <stateDir>/epochs.log   one JSON line per change: [vmId, fence]
 *
 * A change is one append (write(2), like the backends' journals: a killed
 * process leaves it in the page cache), never a rewrite and rename in the
 * freeze window. The log is compacted to one line per VM when it loads and
 * when it grows past a few times the number of VMs. A torn last line (a
 * machine crash mid-write) is ignored on load. An `epochs.json` written by
 * an older netmig is read once and folded into the log.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { StaleEpochError } from "../protocol/errors.js";

export interface VmFence {
  epoch: number;
  /** The migration that froze the VM here (source side). */
  frozenBy?: string;
  /** Set when the VM's state left this host (a tombstone). */
  releasedBy?: string;
}

/** Compact once the log holds this many lines more than there are VMs... */
const COMPACT_SLACK_LINES = 4096;
/** ...and more than this many times as many. */
const COMPACT_FACTOR = 4;

export class EpochStore {
  private readonly fences = new Map<string, VmFence>();
  private readonly file: string | null;
  private fd: number | null = null;
  private lines = 0;

  constructor(stateDir: string | null) {
    this.file = stateDir ? join(stateDir, "epochs.log") : null;
    if (!stateDir || !this.file) return;
    const legacy = join(stateDir, "epochs.json");
    if (existsSync(legacy)) {
      for (const [vmId, f] of Object.entries(JSON.parse(readFileSync(legacy, "utf8")) as Record<string, VmFence>)) this.fences.set(vmId, f);
    }
    if (existsSync(this.file)) {
      for (const line of readFileSync(this.file, "utf8").split("\n")) {
        if (!line) continue;
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch {
          continue; // a torn last line
        }
        if (Array.isArray(rec) && typeof rec[0] === "string" && rec[1] && typeof rec[1] === "object") this.fences.set(rec[0], rec[1] as VmFence);
      }
    }
    if (this.fences.size > 0) this.compact();
    rmSync(legacy, { force: true });
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

  /** Applies a patch (an undefined field is removed); persists it only when something changed. */
  update(vmId: string, patch: Partial<VmFence>): void {
    const cur = this.fences.get(vmId);
    const next: VmFence = { ...(cur ?? { epoch: 0 }), ...patch };
    for (const k of Object.keys(patch) as (keyof VmFence)[]) if (patch[k] === undefined) delete next[k];
    if (cur && (Object.keys(patch) as (keyof VmFence)[]).every((k) => cur[k] === next[k])) return;
    this.fences.set(vmId, next);
    if (!this.file) return;
    if (this.fd === null) {
      mkdirSync(dirname(this.file), { recursive: true });
      this.fd = openSync(this.file, "a");
    }
    writeSync(this.fd, `${JSON.stringify([vmId, next])}\n`);
    if (++this.lines > Math.max(COMPACT_SLACK_LINES, COMPACT_FACTOR * this.fences.size)) this.compact();
  }

  /** Rewrites the log as one line per VM (tmp + rename). */
  private compact(): void {
    if (!this.file) return;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    const tmp = `${this.file}.tmp`;
    mkdirSync(dirname(this.file), { recursive: true });
    writeFileSync(tmp, Array.from(this.fences, ([vmId, f]) => `${JSON.stringify([vmId, f])}\n`).join(""));
    renameSync(tmp, this.file);
    this.lines = this.fences.size;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
