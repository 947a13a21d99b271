/**
 * The `memory` backend: the embedded default. VM state lives in memory,
 * persisted to a state directory (snapshot + journal per VM and per staging
 * area) so a restart loses nothing. Host-local ids (port names, OpenFlow
 * ports, ct zones) are allocated per host and remapped on staging.
 *
 *   <stateDir>/vms/<vmId>.{snap,journal}               live VMs
 *   <stateDir>/staged/<vmId>~<stagingId>.{snap,journal} staging areas
 *   <stateDir>/local-ids.log                            host-local ids
 *
 * Unsealed staging areas are dropped on restart: the migration they belonged
 * to will be aborted or restarted with a full snapshot.
 */
import { join } from "node:path";
import { BadRequestError, InvalidStateError, UnknownVmError, VmMigratingError } from "../../../protocol/errors.js";
import type { StateDelta } from "../../../protocol/state/model.js";
import type { TableName } from "../../../protocol/state/tables.js";
import type { Backend, Change, ReadResult, RemapContext, StagedSummary, VmSummary } from "../backend.js";
import type { TableSizes } from "../../../protocol/agent-api.js";
import { startChurn, type ChurnOptions } from "./churn.js";
import { LocalIds } from "./local-ids.js";
import { ensureDir, listSets, SetFile } from "./store.js";
import { RowBlock } from "../../../protocol/state/row-block.js";
import { TableSet } from "../../../protocol/state/table-set.js";

export interface MemoryBackendOptions {
  /** Directory for persisted state; null = nothing persisted (benchmarks). */
  stateDir: string | null;
  /** First conntrack zone this host allocates. Default 1. */
  firstZone?: number;
  /** Churn every active VM at this rate (demos, benchmarks). Default off. */
  churn?: ChurnOptions;
  /** Called when churn hits an unexpected error. */
  onChurnError?: (err: unknown) => void;
  /** How often journals are checked for compaction, ms. Default 5000. */
  maintenanceMs?: number;
}

interface Live {
  set: TableSet;
  frozen: boolean;
  file: SetFile | null;
  stopChurn: (() => void) | null;
}

interface Staged {
  vmId: string;
  stagingId: string;
  set: TableSet;
  sealed: boolean;
  file: SetFile | null;
  /** A journal write failed: memory and disk may differ, so the area takes no more chunks. */
  broken?: string;
}

type Row = Record<string, unknown>;

/** Rows indexed per event-loop turn in the background (a few ms). */
const INDEX_SLICE_ROWS = 1024;
/** Rows copied per event-loop turn when an export (a copy-on-write read) left a set's columns shared (about a millisecond). */
const UNSHARE_SLICE_ROWS = 16384;
/** Bytes of a staging reservation touched per event-loop turn (a few ms where a page's first touch costs ~13 µs). */
const TOUCH_SLICE_BYTES = 1 << 20;
/** Touch stride: the smallest page size of the platforms Node runs on. */
const PAGE_BYTES = 4096;
/**
 * A reservation stops touching after this long (the rest faults in as the
 * round comes), so a prepare answers well within the coordinator's 5 s
 * deadline for control commands however big the VM (~8M conntrack entries
 * touched here).
 */
const TOUCH_BUDGET_MS = 2000;

export class MemoryBackend implements Backend {
  readonly kind = "memory";
  private readonly live = new Map<string, Live>();
  private readonly stagedAreas = new Map<string, Staged>();
  private readonly ids: LocalIds;
  private readonly vmsDir: string | null;
  private readonly stagedDir: string | null;
  private closed = false;
  /** Sets with background work left (see `inBackground`), in the order they take turns. */
  private readonly background = new Map<TableSet, { done: Promise<void>; resolve: () => void }>();
  private backgroundScheduled = false;
  private maintenance: NodeJS.Timeout | null = null;

  constructor(private readonly opts: MemoryBackendOptions) {
    this.vmsDir = opts.stateDir ? ensureDir(join(opts.stateDir, "vms")) : null;
    this.stagedDir = opts.stateDir ? ensureDir(join(opts.stateDir, "staged")) : null;
    this.ids = new LocalIds(opts.stateDir ? join(opts.stateDir, "local-ids.log") : null, opts.firstZone ?? 1);
  }

  /** Compacts journals of live, unfrozen VMs that outgrew their snapshots. */
  private maintain(): void {
    for (const [vmId, l] of this.live) {
      if (!l.frozen && l.file?.wantsCompaction) {
        l.file.compact(l.set, { frozen: false, sealed: false }).catch((err) => this.opts.onChurnError?.(new Error(`compacting VM ${vmId}'s journal failed: ${(err as Error).message}`)));
      }
    }
  }

  async start(): Promise<void> {
    this.maintenance = setInterval(() => this.maintain(), this.opts.maintenanceMs ?? 5000);
    this.maintenance.unref();
    if (this.vmsDir) {
      for (const name of listSets(this.vmsDir)) {
        const file = new SetFile(this.vmsDir, name);
        const loaded = file.load();
        if (!loaded) continue;
        this.addLive(decodeURIComponent(name), loaded.set, loaded.meta.frozen, file);
      }
    }
    if (this.stagedDir) {
      for (const name of listSets(this.stagedDir)) {
        const file = new SetFile(this.stagedDir, name);
        const loaded = file.load();
        const [vm, sid] = name.split("~").map(decodeURIComponent);
        if (!loaded || !loaded.meta.sealed || !vm || !sid) {
          file.remove();
          continue;
        }
        this.stagedAreas.set(stageKey(vm, sid), { vmId: vm, stagingId: sid, set: loaded.set, sealed: true, file });
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.maintenance) clearInterval(this.maintenance);
    for (const l of this.live.values()) {
      l.stopChurn?.();
      await l.file?.settle();
      l.file?.close();
    }
    for (const s of this.stagedAreas.values()) s.file?.close();
    this.ids.close();
  }

  private addLive(vmId: string, set: TableSet, frozen: boolean, file: SetFile | null): Live {
    const l: Live = { set, frozen, file, stopChurn: null };
    this.live.set(vmId, l);
    if (this.opts.churn) {
      // A frozen VM is skipped, not just refused: a tick would build its change inside a freeze window for nothing.
      const churning = () => {
        const cur = this.live.get(vmId);
        return cur && !cur.frozen ? cur.set : undefined;
      };
      l.stopChurn = startChurn((c) => void this.writeSync(vmId, c, false), churning, this.opts.churn, (e) => this.opts.onChurnError?.(e));
    }
    return l;
  }

  private getLive(vmId: string): Live {
    const l = this.live.get(vmId);
    if (!l) throw new UnknownVmError(`VM ${vmId} has no state on this host`, { vmId });
    return l;
  }

  private summary(vmId: string, l: Live, brief = false): VmSummary {
    return { vmId, gen: l.set.gen, ...digestsOf(l.set, brief), frozen: l.frozen };
  }

  async listVms(brief = false): Promise<VmSummary[]> {
    return Array.from(this.live, ([vmId, l]) => this.summary(vmId, l, brief));
  }

  /** Not fresh: without digests, but with the counts (they cost nothing here). */
  async describe(vmId: string, fresh = true): Promise<VmSummary | null> {
    const l = this.live.get(vmId);
    if (!l) return null;
    const s = this.summary(vmId, l, !fresh);
    return fresh ? s : { ...s, counts: l.set.counts() };
  }

  async read(vmId: string, sinceGen: number | null, track = true): Promise<ReadResult> {
    const l = this.getLive(vmId);
    const at = { digest: l.set.digest.toString(), tables: l.set.digest.tables() };
    if (sinceGen !== null) {
      const c = l.set.since(sinceGen);
      return { vmId, baseGen: sinceGen, gen: l.set.gen, upserts: c.upserts, deletes: c.deletes, ...at };
    }
    if (track && !l.set.tracking) l.set.startTracking();
    if (track || l.frozen) {
      // A migration's full round reads the live tables as it sends them:
      // no second copy of a big VM's tables. A frozen VM does not change
      // meanwhile; a running one does, and its tracking names every row
      // the round may have got wrong for the next round to resend.
      return { vmId, baseGen: null, gen: l.set.gen, upserts: l.set.liveRead(), deletes: {}, ...at, digest: l.frozen ? at.digest : "" };
    }
    // An export of a running VM must be exact on its own: it shares the set's
    // columns (copy on write), copied back a slice at a time from now on, so
    // the next write has nothing to copy.
    void this.inBackground(l.set);
    return { vmId, baseGen: null, gen: l.set.gen, upserts: l.set.full(), deletes: {}, ...at };
  }

  async endTracking(vmId: string): Promise<void> {
    this.live.get(vmId)?.set.stopTracking();
  }

  async portZones(vmId: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const p of this.getLive(vmId).set.rows("ports")) out[p.ifaceId as string] = p.ctZone as number;
    return out;
  }

  /** The change with its port rows' host-local fields filled with this host's ids. */
  private localizePorts(change: Change): Change {
    const ports = change.upserts.ports;
    if (!ports) return { upserts: { ...change.upserts }, deletes: change.deletes };
    const rows = ports.rows().map((row) => ({ ...row, ...this.ids.assign(row.ifaceId) }));
    return { upserts: { ...change.upserts, ports: RowBlock.of("ports", rows) }, deletes: change.deletes };
  }

  /**
   * Conntrack rows with the source's zones (its port zones, by ifaceId)
   * replaced by this host's zones for the same ports.
   */
  private remapZones(block: RowBlock<"conntrack">, srcPortZones: Record<string, number>): RowBlock<"conntrack"> {
    const zoneToIface = new Map<number, string>();
    for (const [iface, z] of Object.entries(srcPortZones)) zoneToIface.set(z, iface);
    return block.mapColumn("zone", (z) => {
      const iface = zoneToIface.get(z);
      return iface === undefined ? z : this.ids.assign(iface).ctZone;
    });
  }

  private writeSync(vmId: string, change: Change, create: boolean): number {
    let l = this.live.get(vmId);
    if (!l) {
      if (!create) throw new UnknownVmError(`VM ${vmId} has no state on this host`, { vmId });
      if (this.stagedFor(vmId).length > 0) throw new BadRequestError(`VM ${vmId} is being received by a migration`, { vmId });
      l = this.addLive(vmId, new TableSet(), false, this.vmsDir ? new SetFile(this.vmsDir, encodeURIComponent(vmId)) : null);
      l.file?.snapshot(l.set, { frozen: false, sealed: false });
    }
    if (l.frozen) throw new VmMigratingError(`VM ${vmId} is migrating: its network state is frozen and cannot be changed`, { vmId });
    const stored = this.localizePorts(change);
    const gen = l.set.apply(stored);
    l.file?.append(l.set, stored);
    return gen;
  }

  async write(vmId: string, change: Change, create: boolean): Promise<number> {
    const l = this.live.get(vmId);
    if (l) await this.indexed(l.set);
    return this.writeSync(vmId, change, create);
  }

  async setFrozen(vmId: string, frozen: boolean): Promise<void> {
    const l = this.getLive(vmId);
    if (l.frozen === frozen) return;
    l.frozen = frozen;
    l.file?.append(l.set, null, { frozen });
  }

  private stagedFor(vmId: string): Staged[] {
    return Array.from(this.stagedAreas.values()).filter((s) => s.vmId === vmId);
  }

  async stage(vmId: string, stagingId: string, delta: StateDelta, remap: RemapContext): Promise<void> {
    if (this.live.has(vmId)) throw new BadRequestError(`VM ${vmId} is already live on this host`, { vmId });
    const key = stageKey(vmId, stagingId);
    const s = this.stagingArea(vmId, stagingId);
    // Remap host-local ids now, so activation only flips a switch.
    const stored = this.localizePorts(delta);
    if (stored.upserts.conntrack) stored.upserts.conntrack = this.remapZones(stored.upserts.conntrack, remap.srcPortZones);
    if (delta.baseGen !== null) {
      await this.indexed(s.set);
      if (this.stagedAreas.get(key) !== s) throw new BadRequestError(`staging area ${stagingId} of VM ${vmId} was discarded`, { vmId });
    }
    if (s.broken) throw new InvalidStateError(`staging area ${stagingId} of VM ${vmId} lost a journal write (${s.broken}); the migration must start again`, { vmId });
    // A full snapshot's chunks hold distinct rows not staged yet: appended
    // without key lookups (the agent discards the area before a full round).
    const full = delta.baseGen === null && Object.values(delta.deletes).every((keys) => !keys?.length);
    if (full) {
      if (delta.sizes) s.set.reserve(delta.sizes);
      s.set.append(stored);
    }
    else s.set.apply(stored);
    const wasSealed = s.sealed;
    s.sealed = false;
    try {
      s.file?.append(s.set, stored, wasSealed ? { sealed: false } : {});
    } catch (err) {
      s.broken = (err as Error).message;
      throw err;
    }
  }

  /** The staging area, opened (empty, persisted as such) if there is none. */
  private stagingArea(vmId: string, stagingId: string): Staged {
    const key = stageKey(vmId, stagingId);
    let s = this.stagedAreas.get(key);
    if (!s) {
      s = { vmId, stagingId, set: new TableSet(), sealed: false, file: this.stagedDir ? new SetFile(this.stagedDir, `${encodeURIComponent(vmId)}~${encodeURIComponent(stagingId)}`) : null };
      s.file?.snapshot(s.set, { frozen: false, sealed: false });
      this.stagedAreas.set(key, s);
    }
    return s;
  }

  /**
   * Allocates an empty staging area's tables for a full round of these
   * sizes (with the headroom a full round's own reservation adds, so its
   * first chunk allocates nothing) and touches every page the round's rows
   * will fill, a slice per event-loop turn, for at most TOUCH_BUDGET_MS. On a virtual machine a page's
   * first touch costs 11–15 µs: a million conntrack entries' columns are
   * ~250 ms of page faults, which a stop-and-copy would otherwise pay in its
   * freeze window.
   */
  async reserveStaging(vmId: string, stagingId: string, sizes: TableSizes, beforeTouch?: (bytes: number) => void): Promise<void> {
    if (this.live.has(vmId)) throw new BadRequestError(`VM ${vmId} is already live on this host`, { vmId });
    const s = this.stagingArea(vmId, stagingId);
    s.set.reserve(sizes);
    // Nothing to touch in an area that already holds rows: fillRegions is empty then.
    const regions = s.set.fillRegions(sizes);
    beforeTouch?.(regions.reduce((sum, r) => sum + r.byteLength, 0));
    const deadline = performance.now() + TOUCH_BUDGET_MS;
    let budget = TOUCH_SLICE_BYTES;
    for (const r of regions) {
      for (let i = 0; i < r.byteLength; i += PAGE_BYTES) {
        // Rewrites the byte it reads: harmless whatever the area holds.
        r[i] = r[i]! | 0;
        if ((budget -= PAGE_BYTES) > 0) continue;
        budget = TOUCH_SLICE_BYTES;
        await new Promise((resolve) => setImmediate(resolve));
        if (this.stagedAreas.get(stageKey(vmId, stagingId)) !== s || performance.now() > deadline) return; // discarded meanwhile, or out of time
      }
    }
  }

  async seal(vmId: string, stagingId: string): Promise<void> {
    const s = this.stagedAreas.get(stageKey(vmId, stagingId));
    if (!s) throw new BadRequestError(`nothing is staged for VM ${vmId} under ${stagingId}`, { vmId });
    s.sealed = true;
    s.file?.append(s.set, null, { sealed: true });
    void this.inBackground(s.set);
  }

  /**
   * Builds the key index of rows a full snapshot appended, and copies
   * columns an export left shared, a slice per event-loop turn, so no one
   * turn pays for the whole table. One slice per turn for all sets together
   * (taken in turn), however many are being received: the turn's other work
   * (a freeze window's messages) never waits for more than one. Resolves
   * once the set's work is done.
   */
  private inBackground(set: TableSet): Promise<void> {
    let job = this.background.get(set);
    if (!job) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      this.background.set(set, (job = { done, resolve }));
      this.pumpBackground();
    }
    return job.done;
  }

  private pumpBackground(): void {
    if (this.backgroundScheduled || this.background.size === 0) return;
    this.backgroundScheduled = true;
    setImmediate(() => {
      this.backgroundScheduled = false;
      const next = this.background.entries().next();
      if (next.done) return;
      const [set, job] = next.value;
      this.background.delete(set);
      // A set that was discarded or removed meanwhile is not worth finishing.
      if (this.closed || !this.holds(set) || set.unshareSome(UNSHARE_SLICE_ROWS) + set.indexSome(INDEX_SLICE_ROWS) === 0) job.resolve();
      else this.background.set(set, job); // to the back of the line
      this.pumpBackground();
    });
  }

  private holds(set: TableSet): boolean {
    for (const l of this.live.values()) if (l.set === set) return true;
    for (const st of this.stagedAreas.values()) if (st.set === set) return true;
    return false;
  }

  /** Waits until a set can take keyed changes without indexing in one go. */
  private async indexed(set: TableSet): Promise<void> {
    if (set.unindexed > 0) await this.inBackground(set);
  }

  private stagedSummary(s: Staged, brief = false): StagedSummary {
    return { vmId: s.vmId, stagingId: s.stagingId, gen: s.set.gen, ...digestsOf(s.set, brief), sealed: s.sealed };
  }

  async staged(vmId: string, stagingId: string): Promise<StagedSummary | null> {
    const s = this.stagedAreas.get(stageKey(vmId, stagingId));
    return s ? this.stagedSummary(s) : null;
  }

  async listStaged(brief = false): Promise<StagedSummary[]> {
    return Array.from(this.stagedAreas.values(), (s) => this.stagedSummary(s, brief));
  }

  async activate(vmId: string, stagingId: string): Promise<VmSummary> {
    const key = stageKey(vmId, stagingId);
    const s = this.stagedAreas.get(key);
    const existing = this.live.get(vmId);
    if (!s) {
      if (existing) return this.summary(vmId, existing); // already activated
      throw new BadRequestError(`nothing is staged for VM ${vmId} under ${stagingId}`, { vmId });
    }
    if (existing) throw new BadRequestError(`VM ${vmId} is already live on this host`, { vmId });
    this.stagedAreas.delete(key);
    const file = s.file && this.vmsDir ? s.file.renameTo(this.vmsDir, encodeURIComponent(vmId)) : null;
    file?.adoptJournalAsBaseline();
    const l = this.addLive(vmId, s.set, false, file);
    return this.summary(vmId, l);
  }

  async discard(vmId: string, stagingId: string): Promise<void> {
    const key = stageKey(vmId, stagingId);
    const s = this.stagedAreas.get(key);
    if (!s) return;
    this.stagedAreas.delete(key);
    s.file?.remove();
    if (!this.live.has(vmId)) this.ids.release(Array.from(s.set.rows("ports"), (p) => p.ifaceId as string));
  }

  async remove(vmId: string): Promise<void> {
    const l = this.live.get(vmId);
    if (!l) return;
    l.stopChurn?.();
    this.live.delete(vmId);
    l.file?.remove();
    this.ids.release(Array.from(l.set.rows("ports"), (p) => p.ifaceId as string));
  }

  /** Direct access for tests and benchmarks: a live VM's rows of one table. */
  rowsOf(vmId: string, table: TableName): Row[] {
    return Array.from(this.getLive(vmId).set.rows(table));
  }
}

function stageKey(vmId: string, stagingId: string): string {
  return `${vmId}\u0000${stagingId}`;
}

/** A set's digests and row counts for a summary; left empty when `brief` (Backend.listVms): they cost ~30 µs a VM. */
function digestsOf(set: TableSet, brief: boolean): Pick<VmSummary, "digest" | "tables" | "counts"> {
  if (brief) return { digest: "", tables: {} as VmSummary["tables"], counts: {} as VmSummary["counts"] };
  return { digest: set.digest.toString(), tables: set.digest.tables(), counts: set.counts() };
}
