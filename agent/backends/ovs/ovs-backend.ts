/**
 * The `ovs` dataplane backend: a VM's ports, ACL flows, QoS, mirrors and fdb
 * entries on an Open vSwitch integration bridge, plus its kernel conntrack
 * entries (selected by its ports' zones).
 *
 * Live reads are diffed against a shadow copy (common/shadow.ts) to give
 * generations and deltas. Staging on a destination keeps rows in a staging
 * area and loads only conntrack entries into the kernel, in zones allocated
 * to the incoming ports (no packet uses them before activation); ports,
 * QoS, mirrors, flows (one OpenFlow bundle) and fdb entries are installed
 * at activation, once the VM's ports are plugged here.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Backend, Change, BlockRead, RemapContext, StagedSummary, VmSummary } from "../backend.js";
import { BackendError, NotStagedError, UnknownVmError, VmMigratingError } from "../../../protocol/errors.js";
import { emptyTables, tableCounts, type StateDelta, type Tables } from "../../../protocol/state/model.js";
import { RowBlock } from "../../../protocol/state/row-block.js";
import { keyOf, TABLE_NAMES, type AclRow, type ConntrackRow, type FdbRow, type MirrorRow, type PortRow, type QosRow, type TableName } from "../../../protocol/state/tables.js";
import { HostExec } from "../common/command.js";
import { Shadow } from "../common/shadow.js";
import { StagingArea, StagingAreas } from "../common/staging-area.js";
import { KernelConntrack } from "../conntrack/kernel-table.js";
import { ZoneRemapper } from "../conntrack/remap.js";
import { stageWithConntrack } from "../conntrack/stage.js";
import type { CtOp } from "../conntrack/ctnetlink-helper.js";
import type { ConntrackSelector } from "../conntrack/selector.js";
import { vmCookie } from "./cookie.js";
import { Fdb, fdbRow } from "./fdb.js";
import { FlowTable, parseFlows, toPortable, type FlowPortMap } from "./flows.js";
import { FootprintStore, type Footprint } from "./footprint.js";
import { Inventory } from "./inventory.js";
import { releaseMirrorOps, readMirrors } from "./mirrors.js";
import { OvsdbClient, type OvsdbOp } from "./ovsdb-client.js";
import { uuidMapOf } from "./ovsdb-data.js";
import { resolveOvsOptions, type OvsBackendOptions, type ResolvedOvsOptions } from "./options.js";
import { deletePortsOp, readPorts } from "./ports.js";
import { clearQosOps, readQos } from "./qos.js";
import { UnixctlClient } from "./unixctl-client.js";
import { converge, type LiveRead, type SwitchParts } from "./converge.js";

interface LiveVm {
  shadow: Shadow;
  frozen: boolean;
}




export class OvsBackend implements Backend {
  readonly kind = "ovs";
  readonly options: ResolvedOvsOptions;
  private readonly db: OvsdbClient;
  private ctl: UnixctlClient | null = null;
  private readonly flows: FlowTable;
  private readonly fdb: Fdb;
  private readonly ct: KernelConntrack | null;
  private readonly footprints: FootprintStore;
  private readonly live = new Map<string, LiveVm>();
  private readonly areas: StagingAreas;
  private readonly holdTimers = new Map<string, NodeJS.Timeout>();
  /** Serialises operations per VM (reads and writes of one VM never interleave). */
  private readonly locks = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(opts: OvsBackendOptions) {
    const o = (this.options = resolveOvsOptions(opts));
    this.db = new OvsdbClient(o.ovsdbSocket, o.timeoutMs);
    // OVS sockets are paths: reachable from any namespace. Only conntrack needs the netns.
    this.flows = new FlowTable(new HostExec(null), o.ofctlTarget, o.ofctlBin, o.cookieMask, o.timeoutMs);
    this.fdb = new Fdb(() => this.unixctl(), o.bridge);
    this.ct = o.conntrack ? new KernelConntrack(new HostExec(o.netns), o.conntrackOptions) : null;
    this.footprints = new FootprintStore(o.stateDir);
    this.areas = new StagingAreas(o.stateDir);
  }

  private async unixctl(): Promise<UnixctlClient> {
    if (this.ctl) return this.ctl;
    let path = this.options.vswitchdCtl;
    if (!path) {
      const pidFile = join(this.options.runDir, "ovs-vswitchd.pid");
      const pid = (await readFile(pidFile, "utf8").catch(() => "")).trim();
      if (!/^\d+$/.test(pid)) throw new BackendError(`ovs: cannot read ovs-vswitchd's pid from ${pidFile}; set vswitchdCtl`);
      path = join(this.options.runDir, `ovs-vswitchd.${pid}.ctl`);
    }
    this.ctl = new UnixctlClient(path, this.options.timeoutMs);
    return this.ctl;
  }

  /** The VM's conntrack entries: its ports' zones, narrowed by the configured mark. */
  private ctSelector(zones: Record<string, number>): ConntrackSelector {
    const m = this.options.conntrackMark;
    return m ? { zones, mark: m.mark, ...(m.markMask !== undefined ? { markMask: m.markMask } : {}) } : { zones };
  }

  private lock<T>(vmId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(vmId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(vmId, tail);
    void tail.then(() => {
      if (this.locks.get(vmId) === tail) this.locks.delete(vmId);
    });
    return next;
  }

  // ------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    await mkdir(this.options.stateDir, { recursive: true });
    await Inventory.read(this.db, this.options); // the bridge must exist
    this.ct?.warm();
    await this.areas.load();
    for (const vmId of await this.footprints.list()) {
      const fp = await this.footprints.load(vmId);
      if (fp.heldFdb.length) this.scheduleFdbRelease(vmId, fp);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.locks.values()]);
    for (const t of this.holdTimers.values()) clearTimeout(t);
    this.holdTimers.clear();
    this.db.close();
    this.ctl?.close();
    this.ct?.close();
  }

  // ------------------------------------------------------------ reading

  /**
   * Reads a VM's live state. `conntrackRows`, when given, stands in for the
   * kernel read (activation: the entries were loaded and confirmed at stage).
   */
  private async readLive(vmId: string, conntrackRows?: ConntrackRow[]): Promise<LiveRead> {
    const o = this.options;
    const inv = await Inventory.read(this.db, o);
    const ifaces = inv.vmIfaces(vmId);
    const override = ifaces.map((i) => i.externalIds[o.recognition.cookieKey]).find((v) => v !== undefined);
    const cookie = vmCookie(vmId, o.cookieMask, override);
    const fp = await this.footprints.load(vmId);
    const ports = readPorts(ifaces, o);
    const pm: FlowPortMap = { nameOf: new Map(ifaces.map((i) => [i.ifaceId, i.name])), zoneOf: new Map(ifaces.map((i) => [i.ifaceId, i.zone])) };
    const zones: Record<string, number> = Object.fromEntries(ifaces.filter((i) => i.zone > 0).map((i) => [i.ifaceId, i.zone]));
    const [flowText, fdbEntries, conntrack] = await Promise.all([
      this.flows.dump(cookie),
      ifaces.length ? this.fdb.show() : Promise.resolve([]),
      conntrackRows ? Promise.resolve(conntrackRows)
        : this.ct && Object.keys(zones).length ? this.ct.list(this.ctSelector(zones)) : Promise.resolve([] as ConntrackRow[]),
    ]);
    const acls = parseFlows(flowText, toPortable(pm), new Set(ifaces.map((i) => i.ifaceId)));
    const byOfport = new Map(ifaces.filter((i) => i.ofport > 0).map((i) => [i.ofport, i.ifaceId]));
    const held = new Set(fp.heldFdb.map(([v, m]) => `${m}|${v}`));
    const fdb: FdbRow[] = [];
    for (const e of fdbEntries) {
      const ifaceId = byOfport.get(e.ofport);
      if (ifaceId === undefined) continue;
      const row = fdbRow(e, ifaceId);
      if (held.has(`${e.mac}|${e.vlan}`)) row.static = false;
      fdb.push(row);
    }
    const tables = emptyTables();
    tables.ports = ports;
    tables.acls = acls;
    tables.qos = readQos(ifaces, inv);
    tables.mirrors = readMirrors(ifaces, inv);
    tables.fdb = fdb;
    tables.conntrack = conntrack;
    if (ifaces.length) {
      const qosRows = ifaces.map((i) => i.port.qos).filter((q): q is string => q !== null);
      const queueRows = qosRows.flatMap((q) => [...uuidMapOf(inv.qos.get(q)?.queues).values()]);
      await this.footprints.save(vmId, {
        ...fp,
        zones: { ...fp.zones, ...zones },
        mirrors: [...new Set([...fp.mirrors, ...tables.mirrors.map((m) => m.name)])].sort(),
        qosRows: [...new Set(qosRows)].sort(),
        queueRows: [...new Set(queueRows)].sort(),
      });
    }
    return { tables, inv, ifaces, cookie };
  }

  private exists(r: LiveRead): boolean {
    return r.ifaces.length > 0 || r.tables.acls.length > 0;
  }

  /**
   * A VM on its way to this host: staged here and not yet activated. Its
   * port may already be plugged (libvirt plugs the destination's tap when the
   * incoming QEMU starts), but it is not live here until activation.
   */
  private incoming(vmId: string): boolean {
    return !this.live.has(vmId) && this.areas.hasVm(vmId);
  }

  /** Fresh read into the VM's shadow; null when the VM has no live state here. */
  private async refresh(vmId: string): Promise<LiveVm | null> {
    if (this.incoming(vmId)) return null;
    const r = await this.readLive(vmId);
    let vm = this.live.get(vmId);
    if (!this.exists(r)) {
      if (vm && !vm.frozen) this.live.delete(vmId);
      if (!vm) return null;
    }
    if (!vm) {
      vm = { shadow: new Shadow(), frozen: false };
      this.live.set(vmId, vm);
    }
    vm.shadow.observe(r.tables);
    return vm;
  }

  private summary(vmId: string, vm: LiveVm): VmSummary {
    return { vmId, gen: vm.shadow.gen, digest: vm.shadow.digest.toString(), tables: vm.shadow.digest.tables(), counts: vm.shadow.counts(), frozen: vm.frozen };
  }

  /**
   * Every VM on the bridge, as last observed: heartbeats call this, so it
   * reads only OVSDB, and the dataplane just for VMs not seen before or gone
   * from the bridge since. `describe` and `read` always read it fresh.
   */
  async listVms(): Promise<VmSummary[]> {
    const inv = await Inventory.read(this.db, this.options);
    const ids = new Set([...inv.vms.keys(), ...this.live.keys()]);
    const out: VmSummary[] = [];
    for (const vmId of [...ids].sort()) {
      const vm = this.live.get(vmId);
      const s = vm && inv.vms.has(vmId) ? this.summary(vmId, vm) : await this.describe(vmId);
      if (s) out.push(s);
    }
    return out;
  }

  describe(vmId: string, fresh = true): Promise<VmSummary | null> {
    return this.lock(vmId, async () => {
      const known = fresh ? undefined : this.live.get(vmId);
      const vm = known ?? (await this.refresh(vmId));
      return vm ? this.summary(vmId, vm) : null;
    });
  }

  read(vmId: string, sinceGen: number | null): Promise<BlockRead> {
    return this.lock(vmId, async () => {
      const vm = await this.refresh(vmId);
      if (!vm) throw new UnknownVmError(`VM ${vmId} has no state on bridge ${this.options.bridge}`, { vmId });
      return vm.shadow.read(vmId, sinceGen);
    });
  }

  async endTracking(vmId: string): Promise<void> {
    this.live.get(vmId)?.shadow.endTracking();
  }

  async portZones(vmId: string): Promise<Record<string, number>> {
    const inv = await Inventory.read(this.db, this.options);
    return Object.fromEntries(inv.vmIfaces(vmId).map((i) => [i.ifaceId, i.zone]));
  }

  async setFrozen(vmId: string, frozen: boolean): Promise<void> {
    await this.lock(vmId, async () => {
      let vm = this.live.get(vmId);
      if (!vm) vm = (await this.refresh(vmId)) ?? undefined;
      if (!vm) throw new UnknownVmError(`VM ${vmId} has no state on bridge ${this.options.bridge}`, { vmId });
      vm.frozen = frozen;
    });
  }

  // ------------------------------------------------------------ writing

  write(vmId: string, change: Change, create: boolean): Promise<number> {
    return this.lock(vmId, async () => {
      const vm = this.live.get(vmId);
      if (vm?.frozen) throw new VmMigratingError(`VM ${vmId} is migrating: its network state is frozen`, { vmId });
      if (this.incoming(vmId)) throw new VmMigratingError(`VM ${vmId} is migrating to host bridge ${this.options.bridge}: write to its source until it is activated here`, { vmId });
      const cur = await this.readLive(vmId);
      if (!this.exists(cur) && !create) throw new UnknownVmError(`VM ${vmId} has no state on bridge ${this.options.bridge}`, { vmId });
      const want = applyChange(cur.tables, change);
      const zones = Object.fromEntries(cur.ifaces.map((i) => [i.ifaceId, i.zone]));
      for (const p of want.ports) if (p.ctZone > 0) zones[p.ifaceId] = p.ctZone;
      await converge(this.switchParts(), vmId, cur, want, zones, { portWaitMs: 0, holdFdb: false, replaceFlows: false });
      if (this.ct) {
        const ops: [CtOp, ConntrackRow][] = [];
        for (const key of change.deletes.conntrack ?? []) {
          const old = cur.tables.conntrack.find((r) => keyOf("conntrack", r) === key);
          if (old) ops.push(["D", old]);
        }
        for (const r of change.upserts.conntrack ?? []) ops.push(["R", r]);
        if (ops.length) await this.ct.write(ops, `write VM ${vmId}`);
      }
      const after = await this.refresh(vmId);
      return after?.shadow.gen ?? 0;
    });
  }

  /**
   * Brings this host's dataplane from `cur` to `want` for one VM (all tables
   * but conntrack): ports, then QoS and mirrors, then flows, then fdb.
   */
  private switchParts(): SwitchParts {
    return { db: this.db, flows: this.flows, fdb: this.fdb, footprints: this.footprints, options: this.options, scheduleFdbRelease: (vmId, fp) => this.scheduleFdbRelease(vmId, fp) };
  }

  /** Returns held fdb entries to normal learning (deletes the static copies) at `holdUntilMs`. */
  private scheduleFdbRelease(vmId: string, fp: Footprint): void {
    const old = this.holdTimers.get(vmId);
    if (old) clearTimeout(old);
    const delay = Math.max(0, fp.holdUntilMs - Date.now());
    const t = setTimeout(() => {
      this.holdTimers.delete(vmId);
      void this.lock(vmId, async () => {
        const cur = await this.footprints.load(vmId);
        if (!cur.heldFdb.length) return;
        await this.fdb.del(cur.heldFdb).catch(() => undefined);
        cur.heldFdb = [];
        cur.holdUntilMs = 0;
        await this.footprints.save(vmId, cur);
      }).catch(() => undefined);
    }, delay);
    t.unref();
    this.holdTimers.set(vmId, t);
  }

  // ------------------------------------------------------------ staging

  /** This host's zone for an incoming port: the plugged port's, else one allocated for it. */
  private async zoneFor(area: StagingArea, ifaceId: string, inv: Inventory): Promise<number> {
    const zones = (area.meta.zones ??= {}) as Record<string, number>;
    if (zones[ifaceId]) return zones[ifaceId]!;
    const iface = inv.ifaceById(ifaceId, this.options.recognition.ifaceIdKey);
    const own = Number(iface?.externalIds[this.options.recognition.zoneKey] ?? 0);
    if (own > 0) return (zones[ifaceId] = own);
    const used = inv.usedZones(this.options.recognition.zoneKey);
    for (const z of this.areas.zones()) used.add(z);
    for (const vmId of await this.footprints.list()) for (const z of Object.values((await this.footprints.load(vmId)).zones)) used.add(z);
    const [lo, hi] = this.options.zoneRange;
    for (let z = lo; z <= hi; z++) if (!used.has(z)) return (zones[ifaceId] = z);
    throw new BackendError(`no free conntrack zone in ${lo}..${hi}`, { vmId: area.vmId });
  }

  private metaFile(vmId: string, stagingId: string): string {
    return `${StagingArea.fileName(this.options.stateDir, vmId, stagingId)}.meta.json`;
  }

  stage(vmId: string, stagingId: string, delta: StateDelta, remap: RemapContext): Promise<void> {
    return this.lock(vmId, async () => {
      const area = this.areas.open(vmId, stagingId);
      const inv = await Inventory.read(this.db, this.options);
      // Zones for every port the source knows (conntrack rows refer to them).
      for (const ifaceId of Object.keys(remap.srcPortZones)) await this.zoneFor(area, ifaceId, inv);
      for (const p of delta.upserts.ports ?? []) await this.zoneFor(area, p.ifaceId, inv);
      const zones = area.meta.zones as Record<string, number>;
      await mkdir(join(this.options.stateDir, "staging"), { recursive: true });
      await writeFile(this.metaFile(vmId, stagingId), JSON.stringify({ zones }));
      const remapper = new ZoneRemapper(remap.srcPortZones, (id) => zones[id] ?? 0);
      const upserts = { ...delta.upserts };
      if (upserts.ports) upserts.ports = RowBlock.of("ports", upserts.ports.rows().map((p) => ({ ...p, ofport: 0, ctZone: zones[p.ifaceId] ?? 0 })));
      if (upserts.conntrack) upserts.conntrack = remapper.remap(upserts.conntrack, vmId);
      await stageWithConntrack(this.ct, area, { ...delta, upserts }, `stage VM ${vmId}`);
    });
  }

  seal(vmId: string, stagingId: string): Promise<void> {
    return this.lock(vmId, () => this.areas.seal(vmId, stagingId));
  }

  async staged(vmId: string, stagingId: string): Promise<StagedSummary | null> {
    return this.areas.summary(vmId, stagingId);
  }

  async listStaged(): Promise<StagedSummary[]> {
    return this.areas.list();
  }

  activate(vmId: string, stagingId: string): Promise<VmSummary> {
    return this.lock(vmId, async () => {
      const area = this.areas.get(vmId, stagingId);
      if (!area) {
        const vm = this.live.get(vmId) ?? (await this.refresh(vmId));
        if (vm) return this.summary(vmId, vm); // already activated
        throw new NotStagedError(`no staging area ${stagingId} for VM ${vmId}`, { vmId });
      }
      const want = area.snapshot();
      const zones = { ...((area.meta.zones ?? {}) as Record<string, number>) };
      const cur = await this.readLive(vmId);
      await converge(this.switchParts(), vmId, cur, want, zones, { portWaitMs: this.options.portWaitMs, holdFdb: true, replaceFlows: true });
      // Seed the live shadow with the staged rows (so the digest matches what
      // was transferred), then observe what the dataplane really holds.
      const shadow = new Shadow();
      const atMs = new Map<string, number>();
      for (const [k, t] of area.loadedAt) if (k.startsWith("conntrack|")) atMs.set(k.slice("conntrack|".length), t);
      shadow.observe(want, Date.now(), atMs);
      const vm: LiveVm = { shadow, frozen: false };
      this.live.set(vmId, vm);
      // Conntrack was loaded (every entry confirmed) at stage: re-reading
      // 100k entries here would only lengthen activation. The next read sees
      // the kernel's own view (timeouts that ran down, entries that ended).
      const fresh = await this.readLive(vmId, this.ct ? want.conntrack : []);
      shadow.observe(fresh.tables);
      await this.areas.delete(vmId, stagingId);
      await rm(this.metaFile(vmId, stagingId), { force: true });
      return this.summary(vmId, vm);
    });
  }

  discard(vmId: string, stagingId: string): Promise<void> {
    return this.lock(vmId, async () => {
      const area = this.areas.get(vmId, stagingId);
      if (this.ct) {
        if (area) {
          const rows = area.rows("conntrack");
          if (rows.length) await this.ct.write(rows.map((r) => ["D", r] as [CtOp, ConntrackRow]), `discard VM ${vmId}`);
        } else {
          // Lost before it was sealed (agent restart): its zones were allocated for it alone.
          const meta = await readFile(this.metaFile(vmId, stagingId), "utf8").catch(() => null);
          if (meta) {
            const zones = (JSON.parse(meta) as { zones?: Record<string, number> }).zones ?? {};
            const inv = await Inventory.read(this.db, this.options);
            const inUse = inv.usedZones(this.options.recognition.zoneKey);
            const own = Object.fromEntries(Object.entries(zones).filter(([, z]) => !inUse.has(z)));
            await this.ct.flush({ zones: own });
          }
        }
      }
      await this.areas.delete(vmId, stagingId);
      await rm(this.metaFile(vmId, stagingId), { force: true });
    });
  }

  // ------------------------------------------------------------ release

  remove(vmId: string): Promise<void> {
    return this.lock(vmId, async () => {
      const o = this.options;
      const inv = await Inventory.read(this.db, o);
      const ifaces = inv.vmIfaces(vmId);
      const fp = await this.footprints.load(vmId);
      const override = ifaces.map((i) => i.externalIds[o.recognition.cookieKey]).find((v) => v !== undefined);
      const cookie = vmCookie(vmId, o.cookieMask, override);
      // Flows: exactly the VM's cookie.
      await this.flows.deleteCookie(cookie);
      // fdb: entries learned on the VM's ports, and those held static for it.
      const ofports = new Set(ifaces.map((i) => i.ofport).filter((p) => p > 0));
      const entries = ofports.size ? (await this.fdb.show()).filter((e) => ofports.has(e.ofport)) : [];
      const dels: [number, string][] = [...entries.map((e) => [e.vlan, e.mac] as [number, string]), ...fp.heldFdb];
      if (dels.length) await this.fdb.del(dels);
      // Conntrack: the VM's zones (from its ports, or remembered).
      if (this.ct) {
        const zones = { ...fp.zones, ...Object.fromEntries(ifaces.filter((i) => i.zone > 0).map((i) => [i.ifaceId, i.zone])) };
        // Never flush a zone another VM's port uses now.
        const others = new Set<number>();
        for (const [id, list] of inv.vms) if (id !== vmId) for (const i of list) if (i.zone > 0) others.add(i.zone);
        const own = Object.fromEntries(Object.entries(zones).filter(([, z]) => z > 0 && !others.has(z)));
        // Never by mark alone: without zones, a mark selects every VM's entries.
        if (Object.keys(own).length) await this.ct.flush(this.ctSelector(own));
      }
      // OVSDB: mirrors, QoS, ports in one transaction.
      const portUuids = new Set(ifaces.map((i) => i.port.uuid));
      const txn: OvsdbOp[] = [...releaseMirrorOps(portUuids, inv)];
      for (const m of inv.mirrors.values()) {
        // Mirrors of this VM left empty after its ports were deleted by someone else.
        if (fp.mirrors.includes(m.name) && !m.selectAll && m.selectSrc.length === 0 && m.selectDst.length === 0) {
          txn.push({ op: "mutate", table: "Bridge", where: [["_uuid", "==", ["uuid", inv.bridgeUuid]]], mutations: [["mirrors", "delete", ["set", [["uuid", m.uuid]]]]] });
        }
      }
      for (const i of ifaces) txn.push(...clearQosOps(i, inv, vmId));
      // QoS rows the VM used whose ports are already gone (root rows do not vanish with them).
      const referenced = new Set([...inv.allPortQos.values()].filter((q): q is string => q !== null));
      const dropping = new Set(ifaces.map((i) => i.port.qos).filter((q): q is string => q !== null));
      for (const q of fp.qosRows) {
        if (inv.qos.has(q) && !referenced.has(q) && !dropping.has(q)) {
          dropping.add(q);
          txn.push({ op: "delete", table: "QoS", where: [["_uuid", "==", ["uuid", q]]] });
        }
      }
      const queueUsed = new Set<string>();
      for (const [u, r] of inv.qos) if (!dropping.has(u)) for (const qu of uuidMapOf(r.queues).values()) queueUsed.add(qu);
      for (const qu of fp.queueRows) {
        if (inv.queues.has(qu) && !queueUsed.has(qu) && !txn.some((op) => op.table === "Queue" && JSON.stringify(op.where).includes(qu))) {
          txn.push({ op: "delete", table: "Queue", where: [["_uuid", "==", ["uuid", qu]]] });
        }
      }
      const toDelete = ifaces.filter((i) => o.removePorts || i.type !== "system" && i.type !== "").map((i) => i.port.uuid);
      txn.push(...deletePortsOp([...new Set(toDelete)], inv));
      if (txn.length) await this.db.transact(txn, `release of VM ${vmId}`);
      const t = this.holdTimers.get(vmId);
      if (t) clearTimeout(t);
      this.holdTimers.delete(vmId);
      this.live.delete(vmId);
      await this.footprints.delete(vmId);
    });
  }
}

/** The tables a change leads to (rows replaced by key, keys deleted). */
export function applyChange(cur: Tables, change: Change): Tables {
  const out = emptyTables();
  for (const t of TABLE_NAMES) {
    const m = new Map<string, unknown>(((cur[t] ?? []) as unknown[]).map((r) => [keyOf(t, r), r]));
    for (const k of change.deletes[t] ?? []) m.delete(k);
    for (const r of (change.upserts[t] ?? []) as Iterable<unknown>) m.set(keyOf(t, r), r);
    (out as Record<TableName, unknown[]>)[t] = [...m.values()];
  }
  return out;
}

export function countsOf(t: Tables): Record<TableName, number> {
  return tableCounts(t);
}

export type { PortRow, AclRow, QosRow, MirrorRow };
