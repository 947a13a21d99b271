/**
 * The standalone `conntrack` backend: only a VM's kernel conntrack entries,
 * for hosts where switching state is handled elsewhere. Which entries belong
 * to a VM comes from configuration (zones per port and/or a mark); VMs that
 * arrive by migration get zones allocated here, remembered in the state
 * directory.
 *
 * Staging loads entries into the kernel in the destination's zones (no
 * packet uses them before the VM runs here); activation only makes the VM
 * live in this backend's books.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Backend, Change, BlockRead, RemapContext, StagedSummary, VmSummary } from "../backend.js";
import { BadRequestError, BackendError, NotStagedError, UnknownVmError, VmMigratingError } from "../../../protocol/errors.js";
import { emptyTables, type StateDelta } from "../../../protocol/state/model.js";
import { keyOf, type ConntrackRow } from "../../../protocol/state/tables.js";
import { HostExec } from "../common/command.js";
import { Shadow } from "../common/shadow.js";
import { StagingArea, StagingAreas } from "../common/staging-area.js";
import type { CtOp } from "./ctnetlink-helper.js";
import { KernelConntrack, type KernelConntrackOptions } from "./kernel-table.js";
import { ZoneRemapper } from "./remap.js";
import { stageWithConntrack } from "./stage.js";
import { isEmptySelector, selectorZones, type ConntrackSelector } from "./selector.js";

export interface ConntrackBackendOptions {
  /** Where allocated selectors and staging areas are kept. Required. */
  stateDir: string;
  /** Network namespace whose conntrack table is used (default: the agent's own). */
  netns?: string;
  /** VMs on this host and how their entries are recognised. */
  vms?: Record<string, ConntrackSelector>;
  /** Zones that may be allocated to ports of incoming VMs. Default [4096, 65000]. */
  zoneRange?: [number, number];
  /** conntrack/python3 binaries, helper parallelism, deadlines. */
  kernel?: KernelConntrackOptions;
}

interface LiveVm {
  shadow: Shadow;
  frozen: boolean;
}


export class ConntrackBackend implements Backend {
  readonly kind = "conntrack";
  private readonly ct: KernelConntrack;
  private readonly selectors = new Map<string, ConntrackSelector>();
  private readonly live = new Map<string, LiveVm>();
  private readonly areas: StagingAreas;
  private readonly zoneRange: [number, number];

  constructor(private readonly opts: ConntrackBackendOptions) {
    if (!opts?.stateDir) throw new BadRequestError("conntrack backend: stateDir is required");
    this.ct = new KernelConntrack(new HostExec(opts.netns ?? null), opts.kernel ?? {});
    this.zoneRange = opts.zoneRange ?? [4096, 65000];
    this.areas = new StagingAreas(opts.stateDir);
    for (const [vmId, sel] of Object.entries(opts.vms ?? {})) this.selectors.set(vmId, sel);
  }

  private get selectorsFile(): string {
    return join(this.opts.stateDir, "conntrack-vms.json");
  }

  async start(): Promise<void> {
    await mkdir(this.opts.stateDir, { recursive: true });
    const saved = await readFile(this.selectorsFile, "utf8").catch(() => null);
    if (saved) for (const [vmId, sel] of Object.entries(JSON.parse(saved) as Record<string, ConntrackSelector>)) if (!this.selectors.has(vmId)) this.selectors.set(vmId, sel);
    await this.areas.load();
    this.ct.warm();
  }

  private async saveSelectors(): Promise<void> {
    const out = Object.fromEntries([...this.selectors].filter(([vmId]) => !(this.opts.vms ?? {})[vmId]));
    await writeFile(`${this.selectorsFile}.tmp`, JSON.stringify(out));
    await rename(`${this.selectorsFile}.tmp`, this.selectorsFile);
  }

  async close(): Promise<void> {
    this.ct.close();
  }

  private selector(vmId: string): ConntrackSelector {
    const sel = this.selectors.get(vmId);
    if (!sel || isEmptySelector(sel)) throw new UnknownVmError(`VM ${vmId} has no conntrack selector on this host`, { vmId });
    return sel;
  }

  private async refresh(vmId: string): Promise<LiveVm> {
    const rows = await this.ct.list(this.selector(vmId));
    let vm = this.live.get(vmId);
    if (!vm) this.live.set(vmId, (vm = { shadow: new Shadow(), frozen: false }));
    vm.shadow.observe({ conntrack: rows });
    return vm;
  }

  private summary(vmId: string, vm: LiveVm): VmSummary {
    return { vmId, gen: vm.shadow.gen, digest: vm.shadow.digest.toString(), tables: vm.shadow.digest.tables(), counts: vm.shadow.counts(), frozen: vm.frozen };
  }

  /** Every selected VM, as last observed (heartbeats call this); `describe` reads the kernel. */
  async listVms(): Promise<VmSummary[]> {
    const out: VmSummary[] = [];
    for (const vmId of [...this.selectors.keys()].sort()) out.push((await this.describe(vmId, false))!);
    return out;
  }

  async describe(vmId: string, fresh = true): Promise<VmSummary | null> {
    if (!this.selectors.has(vmId)) return null;
    return this.summary(vmId, (fresh ? undefined : this.live.get(vmId)) ?? (await this.refresh(vmId)));
  }

  async read(vmId: string, sinceGen: number | null): Promise<BlockRead> {
    return (await this.refresh(vmId)).shadow.read(vmId, sinceGen);
  }

  async endTracking(vmId: string): Promise<void> {
    this.live.get(vmId)?.shadow.endTracking();
  }

  async portZones(vmId: string): Promise<Record<string, number>> {
    return { ...this.selector(vmId).zones };
  }

  async write(vmId: string, change: Change, create: boolean): Promise<number> {
    if (this.live.get(vmId)?.frozen) throw new VmMigratingError(`VM ${vmId} is migrating: its network state is frozen`, { vmId });
    if (!this.selectors.has(vmId)) {
      if (!create) throw new UnknownVmError(`VM ${vmId} has no conntrack selector on this host`, { vmId });
      throw new BadRequestError(`VM ${vmId}: configure its conntrack zones or mark before writing entries`, { vmId });
    }
    const vm = await this.refresh(vmId);
    const cur = new Map(vm.shadow.rowsOf("conntrack").map((r) => [keyOf("conntrack", r), r]));
    const ops: [CtOp, ConntrackRow][] = [];
    for (const k of change.deletes.conntrack ?? []) {
      const r = cur.get(k);
      if (r) ops.push(["D", r]);
    }
    for (const r of change.upserts.conntrack ?? []) ops.push(["R", r]);
    if (ops.length) await this.ct.write(ops, `write VM ${vmId}`);
    return (await this.refresh(vmId)).shadow.gen;
  }

  async setFrozen(vmId: string, frozen: boolean): Promise<void> {
    const vm = this.live.get(vmId) ?? (await this.refresh(vmId));
    vm.frozen = frozen;
  }

  private allocate(area: StagingArea, ifaceId: string): number {
    const zones = (area.meta.zones ??= {}) as Record<string, number>;
    if (zones[ifaceId]) return zones[ifaceId]!;
    const own = this.selectors.get(area.vmId)?.zones[ifaceId];
    if (own) return (zones[ifaceId] = own);
    const used = new Set<number>();
    for (const s of this.selectors.values()) for (const z of selectorZones(s)) used.add(z);
    for (const z of this.areas.zones()) used.add(z);
    for (let z = this.zoneRange[0]; z <= this.zoneRange[1]; z++) if (!used.has(z)) return (zones[ifaceId] = z);
    throw new BackendError(`no free conntrack zone in ${this.zoneRange[0]}..${this.zoneRange[1]}`, { vmId: area.vmId });
  }

  async stage(vmId: string, stagingId: string, delta: StateDelta, remap: RemapContext): Promise<void> {
    const area = this.areas.open(vmId, stagingId);
    for (const ifaceId of Object.keys(remap.srcPortZones)) this.allocate(area, ifaceId);
    const zones = area.meta.zones as Record<string, number>;
    const remapper = new ZoneRemapper(remap.srcPortZones, (id) => zones[id] ?? 0);
    const conntrack = delta.upserts.conntrack && remapper.remap(delta.upserts.conntrack, vmId);
    await stageWithConntrack(this.ct, area, { ...delta, upserts: { conntrack }, deletes: { conntrack: delta.deletes.conntrack ?? [] } }, `stage VM ${vmId}`);
  }

  seal(vmId: string, stagingId: string): Promise<void> {
    return this.areas.seal(vmId, stagingId);
  }

  async staged(vmId: string, stagingId: string): Promise<StagedSummary | null> {
    return this.areas.summary(vmId, stagingId);
  }

  async listStaged(): Promise<StagedSummary[]> {
    return this.areas.list();
  }

  async activate(vmId: string, stagingId: string): Promise<VmSummary> {
    const area = this.areas.get(vmId, stagingId);
    if (!area) {
      const vm = this.live.get(vmId);
      if (vm) return this.summary(vmId, vm);
      throw new NotStagedError(`no staging area ${stagingId} for VM ${vmId}`, { vmId });
    }
    const prev = this.selectors.get(vmId);
    const sel: ConntrackSelector = { zones: { ...(area.meta.zones as Record<string, number>) } };
    if (prev?.mark !== undefined) {
      sel.mark = prev.mark;
      if (prev.markMask !== undefined) sel.markMask = prev.markMask;
    }
    if (isEmptySelector(sel)) throw new BadRequestError(`VM ${vmId} has no zones to select its entries by; configure its mark on this host`, { vmId });
    this.selectors.set(vmId, sel);
    await this.saveSelectors();
    const shadow = new Shadow();
    const atMs = new Map<string, number>();
    for (const [k, t] of area.loadedAt) atMs.set(k.slice("conntrack|".length), t);
    const tables = emptyTables();
    tables.conntrack = area.rows("conntrack");
    shadow.observe({ conntrack: tables.conntrack }, Date.now(), atMs);
    const vm = { shadow, frozen: false };
    this.live.set(vmId, vm);
    await this.refresh(vmId);
    await this.areas.delete(vmId, stagingId);
    return this.summary(vmId, vm);
  }

  async discard(vmId: string, stagingId: string): Promise<void> {
    const area = this.areas.get(vmId, stagingId);
    if (!area) return;
    const rows = area.rows("conntrack");
    if (rows.length) await this.ct.write(rows.map((r) => ["D", r] as [CtOp, ConntrackRow]), `discard VM ${vmId}`);
    await this.areas.delete(vmId, stagingId);
  }

  async remove(vmId: string): Promise<void> {
    const sel = this.selectors.get(vmId);
    if (sel && !isEmptySelector(sel)) await this.ct.flush(sel);
    this.live.delete(vmId);
    this.selectors.delete(vmId);
    await this.saveSelectors();
  }
}
