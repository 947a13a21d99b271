/**
 * Makes the switch hold a VM's wanted state, touching only what differs from
 * what it holds now: ports (waiting for libvirt to plug the VM's own), QoS and
 * mirrors in OVSDB transactions, ACL flows in one OpenFlow bundle (or as a
 * change), and fdb entries, held static until the VM is active here.
 */
import type { Tables } from "../../../protocol/state/model.js";
import { BackendError } from "../../../protocol/errors.js";
import { canonicalJson } from "../../../protocol/state/digest.js";
import { keyOf } from "../../../protocol/state/tables.js";
import type { Fdb } from "./fdb.js";
import { toHost, type FlowPortMap, type FlowTable } from "./flows.js";
import type { Footprint, FootprintStore } from "./footprint.js";
import { Inventory, type VmIface } from "./inventory.js";
import { releaseMirrorOps, mirrorOps, readMirrors } from "./mirrors.js";
import type { OvsdbClient, OvsdbOp } from "./ovsdb-client.js";
import type { ResolvedOvsOptions } from "./options.js";
import { deletePortsOp, portOps } from "./ports.js";
import { clearQosOps, qosOps, readQos } from "./qos.js";

/** What a live read of a VM on the switch found. */
export interface LiveRead {
  tables: Tables;
  inv: Inventory;
  ifaces: VmIface[];
  cookie: bigint;
}

/** The parts of the backend that converging uses. */
export interface SwitchParts {
  db: OvsdbClient;
  flows: FlowTable;
  fdb: Fdb;
  footprints: FootprintStore;
  options: ResolvedOvsOptions;
  scheduleFdbRelease(vmId: string, fp: Footprint): void;
}

export function sameRows(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function converge(
sw: SwitchParts,
vmId: string,
  cur: LiveRead,
  want: Tables,
  zones: Record<string, number>,
  opt: { portWaitMs: number; holdFdb: boolean; replaceFlows: boolean },
): Promise<VmIface[]> {
  const o = sw.options;
  // 1. Ports: VM ports must be plugged (by libvirt); tunnel ports are ours to create.
  let inv = cur.inv;
  const findIface = (inv2: Inventory, ifaceId: string) => inv2.ifaceById(ifaceId, o.recognition.ifaceIdKey);
  const missing = () => want.ports.filter((p) => !p.tunnelType && !findIface(inv, p.ifaceId));
  const deadline = Date.now() + opt.portWaitMs;
  for (let i = 0; missing().length && Date.now() < deadline && i < 10_000; i++) {
    await sleep(50);
    inv = await Inventory.read(sw.db, o);
  }
  const still = missing();
  if (still.length) {
    throw new BackendError(`VM ${vmId}: port(s) ${still.map((p) => p.ifaceId).join(", ")} not plugged into ${o.bridge} (waited ${opt.portWaitMs} ms)`, { vmId });
  }
  const curPorts = new Map(cur.tables.ports.map((p) => [p.ifaceId, p]));
  const portTxn: OvsdbOp[] = [];
  want.ports.forEach((p, n) => {
    const iface = findIface(inv, p.ifaceId);
    const existing = iface ? ({ ...iface, vmId, ifaceId: p.ifaceId, zone: zones[p.ifaceId] ?? 0 } as VmIface) : undefined;
    const old = curPorts.get(p.ifaceId);
    const zone = zones[p.ifaceId] ?? 0;
    const zoneKnown = iface && Number(iface.externalIds[o.recognition.zoneKey] ?? 0) === zone;
    if (old && sameRows({ ...old, name: "", ofport: 0, ctZone: 0 }, { ...p, name: "", ofport: 0, ctZone: 0 }) && zoneKnown && iface.externalIds[o.recognition.vmIdKey] === vmId) return;
    portTxn.push(...portOps(p, vmId, existing, zone, inv, o, n));
  });
  const wantIds = new Set(want.ports.map((p) => p.ifaceId));
  const gone = cur.ifaces.filter((i) => !wantIds.has(i.ifaceId)).map((i) => i.port.uuid);
  portTxn.push(...deletePortsOp(gone, inv));
  if (portTxn.length) await sw.db.transact(portTxn, `ports of VM ${vmId}`);
  // Wait for ovs-vswitchd to give every port an OpenFlow number.
  let ifaces: VmIface[] = [];
  for (let i = 0; i < 400; i++) {
    inv = await Inventory.read(sw.db, o);
    ifaces = inv.vmIfaces(vmId);
    if (ifaces.length >= want.ports.length && ifaces.every((x) => x.ofport > 0)) break;
    await sleep(25);
  }
  if (!ifaces.every((x) => x.ofport > 0)) throw new BackendError(`VM ${vmId}: ovs-vswitchd did not add its ports`, { vmId });
  const ifaceOf = new Map(ifaces.map((i) => [i.ifaceId, i]));

  // 2. QoS and mirrors.
  const txn: OvsdbOp[] = [];
  const curQos = new Map(cur.tables.qos.map((q) => [q.ifaceId, q]));
  const wantQos = new Map(want.qos.map((q) => [q.ifaceId, q]));
  let n = 0;
  for (const i of ifaces) {
    const w = wantQos.get(i.ifaceId) ?? null;
    const c = readQos([i], inv)[0] ?? curQos.get(i.ifaceId) ?? null;
    if (sameRows(w, c)) continue;
    txn.push(...(w ? qosOps(i, w, vmId, inv, n++) : clearQosOps(i, inv, vmId)));
  }
  const curMirrors = new Map(readMirrors(ifaces, inv).map((m) => [m.name, m]));
  const wantMirrors = new Map(want.mirrors.map((m) => [m.name, m]));
  const releaseNames = [...curMirrors.keys()].filter((name) => !sameRows(curMirrors.get(name), wantMirrors.get(name)));
  if (releaseNames.length) {
    const rel = new Set(releaseNames);
    const portsToRelease = new Set(ifaces.map((i) => i.port.uuid));
    const sub = new Inventory();
    sub.bridgeUuid = inv.bridgeUuid;
    for (const [u, m] of inv.mirrors) if (rel.has(m.name)) sub.mirrors.set(u, m);
    await sw.db.transact([...txn.splice(0), ...releaseMirrorOps(portsToRelease, sub)], `QoS of VM ${vmId}`);
    inv = await Inventory.read(sw.db, o);
    for (const name of releaseNames) curMirrors.delete(name);
  }
  for (const m of want.mirrors) {
    if (curMirrors.has(m.name)) continue;
    txn.push(...mirrorOps(m, (id) => ifaceOf.get(id)?.port.uuid, inv, vmId, n++));
  }
  if (txn.length) await sw.db.transact(txn, `QoS and mirrors of VM ${vmId}`);

  // 3. Flows: one bundle.
  const pm: FlowPortMap = { nameOf: new Map(ifaces.map((i) => [i.ifaceId, i.name])), zoneOf: new Map(Object.entries(zones)) };
  const host = toHost(pm, vmId);
  if (opt.replaceFlows) {
    await sw.flows.apply(sw.flows.bundle(cur.cookie, want.acls, host, true));
  } else {
    const curById = new Map(cur.tables.acls.map((a) => [a.id, a]));
    const wantById = new Map(want.acls.map((a) => [a.id, a]));
    const removed = cur.tables.acls.filter((a) => !sameRows(a, wantById.get(a.id)));
    const added = want.acls.filter((a) => !sameRows(a, curById.get(a.id)));
    if (removed.length || added.length) await sw.flows.change(cur.cookie, removed, added, host);
  }

  // 4. fdb entries.
  const curFdb = new Map(cur.tables.fdb.map((f) => [keyOf("fdb", f), f]));
  const wantFdb = new Map(want.fdb.map((f) => [keyOf("fdb", f), f]));
  const dels: [number, string][] = [];
  for (const [k, f] of curFdb) {
    const w = wantFdb.get(k);
    if (!w || w.ifaceId !== f.ifaceId || w.static !== f.static) dels.push([f.vlan, f.mac]);
  }
  const adds: [string, number, string][] = [];
  const held: [number, string][] = [];
  for (const [k, f] of wantFdb) {
    const c = curFdb.get(k);
    if (c && c.ifaceId === f.ifaceId && c.static === f.static) continue;
    const i = ifaceOf.get(f.ifaceId);
    if (!i) continue;
    adds.push([i.name, f.vlan, f.mac]);
    if (!f.static) held.push([f.vlan, f.mac]);
  }
  if (dels.length) await sw.fdb.del(dels);
  if (adds.length) await sw.fdb.add(adds, vmId);
  const fp = await sw.footprints.load(vmId);
  fp.zones = { ...zones };
  fp.mirrors = [...new Set([...fp.mirrors, ...want.mirrors.map((m) => m.name)])].sort();
  if (opt.holdFdb && held.length) {
    fp.heldFdb = held;
    fp.holdUntilMs = Date.now() + o.fdbHoldMs;
  } else if (!opt.holdFdb && held.length) {
    // Dynamic entries written through the API: release them at once.
    await sw.fdb.del(held);
  }
  await sw.footprints.save(vmId, fp);
  if (fp.heldFdb.length) sw.scheduleFdbRelease(vmId, fp);
  return ifaces;
}
