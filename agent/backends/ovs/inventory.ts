/**
 * One consistent read of the bridge's OVSDB rows (Bridge, Port, Interface,
 * QoS, Queue, Mirror) in a single transaction, indexed for the VM-level
 * readers (ports, QoS, mirrors) and for recognising VMs.
 */
import { BackendError } from "../../../protocol/errors.js";
import type { OvsdbClient } from "./ovsdb-client.js";
import { mapOf, optInt, setOf, uuidOf, uuidsOf, type OvsRow } from "./ovsdb-data.js";
import type { ResolvedOvsOptions } from "./options.js";

export interface OvsPort {
  uuid: string;
  name: string;
  interfaces: string[];
  tag: number | null;
  trunks: number[];
  qos: string | null;
  row: OvsRow;
}

export interface OvsInterface {
  uuid: string;
  name: string;
  type: string;
  options: Record<string, string>;
  externalIds: Record<string, string>;
  ofport: number;
  policingRateKbps: number;
  policingBurstKb: number;
  /** The Port this interface belongs to. */
  port: OvsPort;
}

/** A VM port as recognised on this host. */
export interface VmIface extends OvsInterface {
  vmId: string;
  ifaceId: string;
  /** Zone from `zoneKey`, 0 if none. */
  zone: number;
}

export interface OvsMirror {
  uuid: string;
  name: string;
  selectAll: boolean;
  selectSrc: string[];
  selectDst: string[];
  outputPort: string | null;
  outputVlan: number;
}

export const TABLE_COLUMNS: Record<string, string[]> = {
  Bridge: ["name", "ports", "mirrors", "datapath_type"],
  Port: ["name", "interfaces", "tag", "trunks", "qos", "external_ids"],
  Interface: ["name", "type", "options", "external_ids", "ofport", "ingress_policing_rate", "ingress_policing_burst"],
  QoS: ["type", "queues", "other_config", "external_ids"],
  Queue: ["dscp", "other_config", "external_ids"],
  Mirror: ["name", "select_all", "select_src_port", "select_dst_port", "output_port", "output_vlan"],
};

export class Inventory {
  bridgeUuid = "";
  readonly ports = new Map<string, OvsPort>();
  readonly portsByName = new Map<string, OvsPort>();
  readonly ifaces = new Map<string, OvsInterface>();
  readonly ifacesByName = new Map<string, OvsInterface>();
  readonly ifacesByOfport = new Map<number, OvsInterface>();
  readonly qos = new Map<string, OvsRow>();
  readonly queues = new Map<string, OvsRow>();
  readonly mirrors = new Map<string, OvsMirror>();
  /** All Port rows in the database (QoS sharing spans bridges). */
  readonly allPortQos = new Map<string, string | null>();
  /** VM ports by vmId. */
  readonly vms = new Map<string, VmIface[]>();

  static async read(db: OvsdbClient, o: ResolvedOvsOptions): Promise<Inventory> {
    const rows = await db.selectAll(TABLE_COLUMNS);
    const inv = new Inventory();
    const bridge = rows.Bridge!.find((b) => b.name === o.bridge);
    if (!bridge) throw new BackendError(`ovs: bridge ${o.bridge} does not exist (ovsdb ${o.ovsdbSocket})`);
    inv.bridgeUuid = uuidOf(bridge._uuid);
    const bridgePorts = new Set(uuidsOf(bridge.ports));
    const portRows = new Map(rows.Port!.map((p) => [uuidOf(p._uuid), p]));
    const ifaceRows = new Map(rows.Interface!.map((i) => [uuidOf(i._uuid), i]));
    for (const [u, p] of portRows) inv.allPortQos.set(u, optUuid(p.qos));
    for (const pu of bridgePorts) {
      const p = portRows.get(pu);
      if (!p) continue;
      const port: OvsPort = {
        uuid: pu,
        name: String(p.name),
        interfaces: uuidsOf(p.interfaces),
        tag: optInt(p.tag),
        trunks: setOf(p.trunks).map(Number).sort((a, b) => a - b),
        qos: optUuid(p.qos),
        row: p,
      };
      inv.ports.set(pu, port);
      inv.portsByName.set(port.name, port);
      for (const iu of port.interfaces) {
        const i = ifaceRows.get(iu);
        if (!i) continue;
        const iface: OvsInterface = {
          uuid: iu,
          name: String(i.name),
          type: String(i.type ?? ""),
          options: mapOf(i.options),
          externalIds: mapOf(i.external_ids),
          ofport: optInt(i.ofport) ?? 0,
          policingRateKbps: Number(i.ingress_policing_rate ?? 0),
          policingBurstKb: Number(i.ingress_policing_burst ?? 0),
          port,
        };
        inv.ifaces.set(iu, iface);
        inv.ifacesByName.set(iface.name, iface);
        if (iface.ofport > 0) inv.ifacesByOfport.set(iface.ofport, iface);
        const vmId = iface.externalIds[o.recognition.vmIdKey];
        const ifaceId = iface.externalIds[o.recognition.ifaceIdKey];
        if (vmId && ifaceId) {
          const z = Number(iface.externalIds[o.recognition.zoneKey] ?? 0);
          const vi: VmIface = { ...iface, vmId, ifaceId, zone: Number.isInteger(z) && z > 0 && z <= 65535 ? z : 0 };
          const list = inv.vms.get(vmId) ?? [];
          list.push(vi);
          inv.vms.set(vmId, list);
        }
      }
    }
    for (const q of rows.QoS!) inv.qos.set(uuidOf(q._uuid), q);
    for (const q of rows.Queue!) inv.queues.set(uuidOf(q._uuid), q);
    const bridgeMirrors = new Set(uuidsOf(bridge.mirrors));
    for (const m of rows.Mirror!) {
      const u = uuidOf(m._uuid);
      if (!bridgeMirrors.has(u)) continue;
      inv.mirrors.set(u, {
        uuid: u,
        name: String(m.name),
        selectAll: m.select_all === true,
        selectSrc: uuidsOf(m.select_src_port),
        selectDst: uuidsOf(m.select_dst_port),
        outputPort: optUuid(m.output_port),
        outputVlan: optInt(m.output_vlan) ?? 0,
      });
    }
    for (const list of inv.vms.values()) list.sort((a, b) => (a.ifaceId < b.ifaceId ? -1 : a.ifaceId > b.ifaceId ? 1 : 0));
    return inv;
  }

  vmIfaces(vmId: string): VmIface[] {
    return this.vms.get(vmId) ?? [];
  }

  /** The interface carrying an ifaceId on this bridge (any VM), or undefined. */
  ifaceById(ifaceId: string, ifaceIdKey: string): OvsInterface | undefined {
    for (const i of this.ifaces.values()) if (i.externalIds[ifaceIdKey] === ifaceId) return i;
    return undefined;
  }

  /** Zones in use by any interface on the bridge. */
  usedZones(zoneKey: string): Set<number> {
    const out = new Set<number>();
    for (const i of this.ifaces.values()) {
      const z = Number(i.externalIds[zoneKey] ?? 0);
      if (z > 0) out.add(z);
    }
    return out;
  }
}

function optUuid(v: unknown): string | null {
  const s = setOf(v);
  return s.length ? uuidOf(s[0]) : null;
}
