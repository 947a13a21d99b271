/**
 * VM ports: Interface/Port rows recognised by their external_ids, with VLAN
 * tag/trunks and tunnel config (GRE/VXLAN/Geneve with options:key and
 * options:remote_ip). The zone key is host-local and never copied.
 */
import type { PortRow } from "../../../protocol/state/tables.js";
import type { Inventory, VmIface } from "./inventory.js";
import { map, named, set, uuid } from "./ovsdb-data.js";
import type { OvsdbOp } from "./ovsdb-client.js";
import type { ResolvedOvsOptions } from "./options.js";

export const TUNNEL_TYPES = new Set(["gre", "vxlan", "geneve"]);

export function readPorts(ifaces: VmIface[], o: ResolvedOvsOptions): PortRow[] {
  const r = o.recognition;
  return ifaces.map((i) => {
    const ext = { ...i.externalIds };
    delete ext[r.zoneKey];
    const tunnel = TUNNEL_TYPES.has(i.type);
    const key = Number(i.options.key ?? 0);
    return {
      ifaceId: i.ifaceId,
      mac: i.externalIds[r.macKey] ?? "",
      ips: [],
      vlanTag: i.port.tag ?? 0,
      trunks: i.port.trunks,
      tunnelType: tunnel ? i.type : "",
      tunnelKey: tunnel && Number.isInteger(key) && key >= 0 && key <= 0xffffffff ? key : 0,
      tunnelRemoteIp: tunnel ? (i.options.remote_ip ?? "") : "",
      externalIds: Object.fromEntries(Object.entries(ext).sort(([a], [b]) => (a < b ? -1 : 1))),
      name: i.name,
      ofport: i.ofport,
      ctZone: i.zone,
    };
  });
}

/** A name for a tunnel port created on this host: the source's, unless taken. */
export function tunnelName(row: PortRow, inv: Inventory): string {
  if (row.name && !inv.portsByName.has(row.name) && /^[A-Za-z0-9_.-]{1,15}$/.test(row.name)) return row.name;
  let h = 0x811c9dc5;
  for (let i = 0; i < row.ifaceId.length; i++) h = Math.imul(h ^ row.ifaceId.charCodeAt(i), 0x01000193);
  for (let n = 0; n < 1000; n++) {
    const name = `nmt${((h + n) >>> 0).toString(16).padStart(8, "0")}`;
    if (!inv.portsByName.has(name)) return name;
  }
  return `nmt${Date.now().toString(16).slice(-8)}`;
}

/**
 * OVSDB ops that make a port on this host carry a row's configuration:
 * updates an existing VM port (tag, trunks, external_ids with this host's
 * zone) or creates a tunnel port.
 */
export function portOps(row: PortRow, vmId: string, existing: VmIface | undefined, zone: number, inv: Inventory, o: ResolvedOvsOptions, n = 0): OvsdbOp[] {
  const r = o.recognition;
  const ext: Record<string, string> = { ...row.externalIds, [r.vmIdKey]: vmId, [r.ifaceIdKey]: row.ifaceId };
  if (zone > 0) ext[r.zoneKey] = String(zone);
  const portCols = { tag: row.vlanTag > 0 ? row.vlanTag : set([]), trunks: set(row.trunks) };
  if (existing) {
    const ops: OvsdbOp[] = [
      { op: "update", table: "Port", where: [["_uuid", "==", uuid(existing.port.uuid)]], row: portCols },
      { op: "update", table: "Interface", where: [["_uuid", "==", uuid(existing.uuid)]], row: { external_ids: map(ext) } },
    ];
    if (row.tunnelType && TUNNEL_TYPES.has(row.tunnelType)) {
      ops.push({
        op: "update", table: "Interface", where: [["_uuid", "==", uuid(existing.uuid)]],
        row: { type: row.tunnelType, options: map(tunnelOptions(row, existing.options)) },
      });
    }
    return ops;
  }
  if (!row.tunnelType) return [];
  const name = tunnelName(row, inv);
  return [
    { op: "insert", table: "Interface", "uuid-name": `nmif${n}`, row: { name, type: row.tunnelType, options: map(tunnelOptions(row, {})), external_ids: map(ext) } },
    { op: "insert", table: "Port", "uuid-name": `nmport${n}`, row: { name, interfaces: set([named(`nmif${n}`)]), ...portCols } },
    { op: "mutate", table: "Bridge", where: [["_uuid", "==", uuid(inv.bridgeUuid)]], mutations: [["ports", "insert", set([named(`nmport${n}`)])]] },
  ];
}

function tunnelOptions(row: PortRow, current: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = { ...current };
  if (row.tunnelKey > 0) out.key = String(row.tunnelKey);
  else delete out.key;
  if (row.tunnelRemoteIp) out.remote_ip = row.tunnelRemoteIp;
  return out;
}

/** Removes Port rows from the bridge (their Interfaces go with them). */
export function deletePortsOp(portUuids: string[], inv: Inventory): OvsdbOp[] {
  if (portUuids.length === 0) return [];
  return [{ op: "mutate", table: "Bridge", where: [["_uuid", "==", uuid(inv.bridgeUuid)]], mutations: [["ports", "delete", set(portUuids.map(uuid))]] }];
}
