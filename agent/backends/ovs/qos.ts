/**
 * QoS of a VM port: Interface ingress_policing_rate/burst, and the Port's
 * QoS row (type, other_config:max-rate) with its Queue rows (min-rate,
 * max-rate, dscp). QoS and Queue are root tables in OVSDB: netmig deletes
 * the rows it no longer references, unless another port still uses them.
 */
import type { QosQueue, QosRow } from "../../../protocol/state/tables.js";
import type { Inventory, VmIface } from "./inventory.js";
import { map, mapOf, named, optInt, uuid, uuidMapOf } from "./ovsdb-data.js";
import type { OvsdbOp } from "./ovsdb-client.js";

/** QoS external_ids key carrying QosRow.dscpMark (OVS has no column for it). */
const DSCP_MARK_KEY = "netmig-dscp-mark";

export function readQos(ifaces: VmIface[], inv: Inventory): QosRow[] {
  const out: QosRow[] = [];
  for (const i of ifaces) {
    const qosRow = i.port.qos ? inv.qos.get(i.port.qos) : undefined;
    if (i.policingRateKbps === 0 && i.policingBurstKb === 0 && !qosRow) continue;
    const queues: QosQueue[] = [];
    let qosType = "";
    let maxRateBps = 0;
    let dscpMark = 0;
    if (qosRow) {
      qosType = String(qosRow.type ?? "");
      const oc = mapOf(qosRow.other_config);
      maxRateBps = Number(oc["max-rate"] ?? 0) || 0;
      dscpMark = Number(mapOf(qosRow.external_ids)[DSCP_MARK_KEY] ?? 0) || 0;
      for (const [id, qu] of [...uuidMapOf(qosRow.queues)].sort((a, b) => a[0] - b[0])) {
        const q = inv.queues.get(qu);
        if (!q) continue;
        const qoc = mapOf(q.other_config);
        const entry: QosQueue = { id, minRateBps: Number(qoc["min-rate"] ?? 0) || 0, maxRateBps: Number(qoc["max-rate"] ?? 0) || 0 };
        const dscp = optInt(q.dscp);
        if (dscp !== null) entry.dscp = dscp;
        queues.push(entry);
      }
    }
    out.push({
      ifaceId: i.ifaceId,
      ingressPolicingRateKbps: i.policingRateKbps,
      ingressPolicingBurstKb: i.policingBurstKb,
      qosType,
      maxRateBps,
      queues,
      dscpMark,
    });
  }
  return out;
}

/** Ops that delete a port's QoS row and queues if nothing else references them. */
function dropQosOps(port: VmIface["port"], inv: Inventory): OvsdbOp[] {
  if (!port.qos) return [];
  const ops: OvsdbOp[] = [];
  const sharedQos = [...inv.allPortQos].some(([pu, q]) => pu !== port.uuid && q === port.qos);
  if (sharedQos) return ops;
  ops.push({ op: "delete", table: "QoS", where: [["_uuid", "==", uuid(port.qos)]] });
  const qosRow = inv.qos.get(port.qos);
  if (qosRow) {
    for (const qu of uuidMapOf(qosRow.queues).values()) {
      const shared = [...inv.qos].some(([u, r]) => u !== port.qos && [...uuidMapOf(r.queues).values()].includes(qu));
      if (!shared) ops.push({ op: "delete", table: "Queue", where: [["_uuid", "==", uuid(qu)]] });
    }
  }
  return ops;
}

/** Ops that make a port carry a QoS row (null = no QoS at all). */
export function qosOps(iface: VmIface, row: QosRow | null, vmId: string, inv: Inventory, n: number): OvsdbOp[] {
  const ops: OvsdbOp[] = [
    {
      op: "update", table: "Interface", where: [["_uuid", "==", uuid(iface.uuid)]],
      row: { ingress_policing_rate: row?.ingressPolicingRateKbps ?? 0, ingress_policing_burst: row?.ingressPolicingBurstKb ?? 0 },
    },
  ];
  // Clear the reference first, then drop the old rows, then insert the new ones.
  if (iface.port.qos) {
    ops.push({ op: "update", table: "Port", where: [["_uuid", "==", uuid(iface.port.uuid)]], row: { qos: ["set", []] } });
    ops.push(...dropQosOps(iface.port, inv));
  }
  if (row && row.qosType) {
    const queues: [number, unknown][] = [];
    row.queues.forEach((q, k) => {
      const name = `nmq${n}_${k}`;
      const oc: Record<string, string> = {};
      if (q.minRateBps) oc["min-rate"] = String(q.minRateBps);
      if (q.maxRateBps) oc["max-rate"] = String(q.maxRateBps);
      ops.push({
        op: "insert", table: "Queue", "uuid-name": name,
        row: { other_config: map(oc), dscp: q.dscp === undefined ? ["set", []] : q.dscp, external_ids: map({ "netmig-vm-id": vmId }) },
      });
      queues.push([q.id, named(name)]);
    });
    const oc: Record<string, string> = {};
    if (row.maxRateBps) oc["max-rate"] = String(row.maxRateBps);
    const ext: Record<string, string> = { "netmig-vm-id": vmId };
    if (row.dscpMark) ext[DSCP_MARK_KEY] = String(row.dscpMark);
    ops.push({
      op: "insert", table: "QoS", "uuid-name": `nmqos${n}`,
      row: { type: row.qosType, other_config: map(oc), queues: ["map", queues], external_ids: map(ext) },
    });
    ops.push({ op: "update", table: "Port", where: [["_uuid", "==", uuid(iface.port.uuid)]], row: { qos: named(`nmqos${n}`) } });
  }
  return ops;
}

/** Ops that remove a port's QoS (release). */
export function clearQosOps(iface: VmIface, inv: Inventory, vmId: string): OvsdbOp[] {
  if (iface.policingRateKbps === 0 && iface.policingBurstKb === 0 && !iface.port.qos) return [];
  return qosOps(iface, null, vmId, inv, 0);
}
