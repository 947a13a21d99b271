/**
 * Mirrors (SPAN) that select a VM's ports. A VM's mirror row lists only its
 * own ports; on a destination the ports are added to a mirror of the same
 * name (created if missing, with the same output port name or VLAN); on
 * release they are taken out, and a mirror left selecting nothing is deleted.
 */
import { BackendError } from "../../../protocol/errors.js";
import type { MirrorRow } from "../../../protocol/state/tables.js";
import type { Inventory, OvsMirror, VmIface } from "./inventory.js";
import { named, set, uuid } from "./ovsdb-data.js";
import type { OvsdbOp } from "./ovsdb-client.js";

export function readMirrors(ifaces: VmIface[], inv: Inventory): MirrorRow[] {
  const byPort = new Map(ifaces.map((i) => [i.port.uuid, i.ifaceId]));
  const out: MirrorRow[] = [];
  for (const m of inv.mirrors.values()) {
    const src = m.selectSrc.map((p) => byPort.get(p)).filter((x): x is string => x !== undefined).sort();
    const dst = m.selectDst.map((p) => byPort.get(p)).filter((x): x is string => x !== undefined).sort();
    if (src.length === 0 && dst.length === 0) continue;
    out.push({
      name: m.name,
      selectSrc: [...new Set(src)],
      selectDst: [...new Set(dst)],
      outputPort: m.outputPort ? (inv.ports.get(m.outputPort)?.name ?? "") : "",
      outputVlan: m.outputVlan,
    });
  }
  return out;
}

function findMirror(inv: Inventory, name: string): OvsMirror | undefined {
  for (const m of inv.mirrors.values()) if (m.name === name) return m;
  return undefined;
}

/** Ops that make this host's mirror `row.name` select the VM's ports (by ifaceId → port uuid). */
export function mirrorOps(row: MirrorRow, portOf: (ifaceId: string) => string | undefined, inv: Inventory, vmId: string, n: number): OvsdbOp[] {
  const src = row.selectSrc.map(portOf).filter((x): x is string => x !== undefined);
  const dst = row.selectDst.map(portOf).filter((x): x is string => x !== undefined);
  const existing = findMirror(inv, row.name);
  if (existing) {
    const muts: unknown[] = [];
    if (src.length) muts.push(["select_src_port", "insert", set(src.map(uuid))]);
    if (dst.length) muts.push(["select_dst_port", "insert", set(dst.map(uuid))]);
    return muts.length ? [{ op: "mutate", table: "Mirror", where: [["_uuid", "==", uuid(existing.uuid)]], mutations: muts }] : [];
  }
  const r: Record<string, unknown> = {
    name: row.name,
    select_src_port: set(src.map(uuid)),
    select_dst_port: set(dst.map(uuid)),
    external_ids: ["map", [["netmig-vm-id", vmId]]],
  };
  if (row.outputPort) {
    const out = inv.portsByName.get(row.outputPort);
    if (!out) throw new BackendError(`mirror ${row.name} outputs to port ${row.outputPort}, which does not exist on bridge`, { vmId });
    r.output_port = uuid(out.uuid);
  } else if (row.outputVlan > 0) r.output_vlan = row.outputVlan;
  return [
    { op: "insert", table: "Mirror", "uuid-name": `nmmirror${n}`, row: r },
    { op: "mutate", table: "Bridge", where: [["_uuid", "==", uuid(inv.bridgeUuid)]], mutations: [["mirrors", "insert", set([named(`nmmirror${n}`)])]] },
  ];
}

/** Ops that take the VM's ports out of every mirror (deleting mirrors left empty). */
export function releaseMirrorOps(portUuids: Set<string>, inv: Inventory): OvsdbOp[] {
  const ops: OvsdbOp[] = [];
  for (const m of inv.mirrors.values()) {
    const src = m.selectSrc.filter((p) => portUuids.has(p));
    const dst = m.selectDst.filter((p) => portUuids.has(p));
    if (src.length === 0 && dst.length === 0) continue;
    const leftSrc = m.selectSrc.length - src.length;
    const leftDst = m.selectDst.length - dst.length;
    if (!m.selectAll && leftSrc === 0 && leftDst === 0) {
      ops.push({ op: "mutate", table: "Bridge", where: [["_uuid", "==", uuid(inv.bridgeUuid)]], mutations: [["mirrors", "delete", set([uuid(m.uuid)])]] });
      continue;
    }
    const muts: unknown[] = [];
    if (src.length) muts.push(["select_src_port", "delete", set(src.map(uuid))]);
    if (dst.length) muts.push(["select_dst_port", "delete", set(dst.map(uuid))]);
    ops.push({ op: "mutate", table: "Mirror", where: [["_uuid", "==", uuid(m.uuid)]], mutations: muts });
  }
  return ops;
}
