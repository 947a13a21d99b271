/**
 * The per-VM state model, declared once as table descriptors.
 *
 * A VM's network state is a set of tables (ports, ACLs, QoS, ... conntrack).
 * Every row is flat: scalar fields plus a few `json` fields for small nested
 * values. The descriptors below drive everything generic: validation, the
 * canonical digest, the columnar wire codec and the JSON document form.
 *
 * Host-local fields (`local: true`) are identifiers that differ per host
 * (OVS port name and OpenFlow port number, conntrack zone). They are remapped
 * by the destination, never copied, and are left out of the digest.
 *
 * Rows reference a VM's port by its `ifaceId` (portable), never by port name.
 */
import { canonicalIp } from "./ip.js";

/**
 * Column types. Integers are range-checked; `str` is interned on the wire;
 * `ip` is an IPv4 or IPv6 address, held as 4 bytes while its column holds
 * only IPv4 and 16 otherwise (see ip-column.ts), and read back in canonical
 * text form.
 */
export type FieldType = "str" | "ip" | "u8" | "u16" | "u32" | "f64" | "bool" | "json";

export interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  /** Host-local: remapped on the destination, excluded from the digest. */
  readonly local?: boolean;
}

export interface TableSpec {
  readonly name: TableName;
  /** `slow` = configuration, `fast` = live state (the split of the OVS note). */
  readonly kind: "slow" | "fast";
  readonly fields: readonly FieldSpec[];
  /** The row's identity within its table: these portable fields, joined by "|". */
  readonly keyFields: readonly string[];
}

// ---------------------------------------------------------------- row types

/** A VM network port (an OVS Interface, a tap device). */
export interface PortRow {
  ifaceId: string;
  mac: string;
  ips: string[];
  /** Access VLAN tag; 0 = untagged. */
  vlanTag: number;
  trunks: number[];
  /** "" (none), "gre", "vxlan" or "geneve". */
  tunnelType: string;
  tunnelKey: number;
  tunnelRemoteIp: string;
  externalIds: Record<string, string>;
  /** Host-local: port/interface name (e.g. vnet3). */
  name: string;
  /** Host-local: OpenFlow port number; 0 = not assigned. */
  ofport: number;
  /** Host-local: conntrack zone used for this port's connections. */
  ctZone: number;
}

/** One ACL / security rule of the VM (an OpenFlow flow in the ovs backend). */
export interface AclRow {
  id: string;
  /** "ingress" (to the VM) or "egress" (from the VM). */
  direction: string;
  priority: number;
  table: number;
  /** Match in ovs-ofctl syntax, ports by ifaceId in `in_port=@<ifaceId>` form. */
  match: string;
  /** Actions in ovs-ofctl syntax. */
  actions: string;
}

export interface QosQueue {
  id: number;
  minRateBps: number;
  maxRateBps: number;
  dscp?: number;
}

export interface QosRow {
  ifaceId: string;
  ingressPolicingRateKbps: number;
  ingressPolicingBurstKb: number;
  /** "" (none), "linux-htb", "linux-hfsc", "egress-policer"... */
  qosType: string;
  maxRateBps: number;
  queues: QosQueue[];
  /** DSCP value marked on egress; 0 = none. */
  dscpMark: number;
}

export interface MirrorRow {
  name: string;
  /** ifaceIds whose received traffic is mirrored. */
  selectSrc: string[];
  /** ifaceIds whose sent traffic is mirrored. */
  selectDst: string[];
  /** Output port name (on the host) or "" when mirroring to a VLAN. */
  outputPort: string;
  outputVlan: number;
}

export interface MonitoringRow {
  /** "sflow", "netflow" or "ipfix". */
  kind: string;
  targets: string[];
  sampling: number;
  pollingSec: number;
}

/** An L2 learning (fdb) entry. */
export interface FdbRow {
  mac: string;
  vlan: number;
  /** ifaceId of the port the MAC was learned on. */
  ifaceId: string;
  ageSec: number;
  static: boolean;
}

/** A neighbour (ARP/ND) entry. */
export interface NeighbourRow {
  ip: string;
  mac: string;
  ifaceId: string;
  /** "REACHABLE", "STALE", "PERMANENT"... */
  state: string;
}

/**
 * A connection-tracking entry. Original and reply tuples are both kept, so
 * NAT survives the move. For ICMP, ports are 0 and icmp* fields are used.
 */
export interface ConntrackRow {
  /** IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 icmpv6, 132 sctp. */
  proto: number;
  origSrc: string;
  origDst: string;
  origSport: number;
  origDport: number;
  replySrc: string;
  replyDst: string;
  replySport: number;
  replyDport: number;
  icmpType: number;
  icmpCode: number;
  icmpId: number;
  /** TCP state ("ESTABLISHED", "TIME_WAIT"...), "" for other protocols. */
  state: string;
  /** conntrack status bits (IPS_*), e.g. ASSURED = 4, SEEN_REPLY = 2. */
  status: number;
  mark: number;
  /** ct label as 32 hex digits, "" = none. */
  labels: string;
  timeoutSec: number;
  /** Host-local: conntrack zone (remapped through the port's ctZone). */
  zone: number;
}

/** Port counters (informational; carried so graphs don't reset). */
export interface CounterRow {
  ifaceId: string;
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
}

export interface RowTypes {
  ports: PortRow;
  acls: AclRow;
  qos: QosRow;
  mirrors: MirrorRow;
  monitoring: MonitoringRow;
  fdb: FdbRow;
  neighbours: NeighbourRow;
  conntrack: ConntrackRow;
  counters: CounterRow;
}
export type TableName = keyof RowTypes;

// ---------------------------------------------------------------- descriptors

const f = (name: string, type: FieldType, local = false): FieldSpec => (local ? { name, type, local } : { name, type });

export const TABLES: { readonly [T in TableName]: TableSpec } = {
  ports: {
    name: "ports",
    kind: "slow",
    fields: [
      f("ifaceId", "str"), f("mac", "str"), f("ips", "json"), f("vlanTag", "u16"), f("trunks", "json"),
      f("tunnelType", "str"), f("tunnelKey", "u32"), f("tunnelRemoteIp", "str"), f("externalIds", "json"),
      f("name", "str", true), f("ofport", "u32", true), f("ctZone", "u16", true),
    ],
    keyFields: ["ifaceId"],
  },
  acls: {
    name: "acls",
    kind: "slow",
    fields: [f("id", "str"), f("direction", "str"), f("priority", "u16"), f("table", "u8"), f("match", "str"), f("actions", "str")],
    keyFields: ["id"],
  },
  qos: {
    name: "qos",
    kind: "slow",
    fields: [
      f("ifaceId", "str"), f("ingressPolicingRateKbps", "u32"), f("ingressPolicingBurstKb", "u32"),
      f("qosType", "str"), f("maxRateBps", "f64"), f("queues", "json"), f("dscpMark", "u8"),
    ],
    keyFields: ["ifaceId"],
  },
  mirrors: {
    name: "mirrors",
    kind: "slow",
    fields: [f("name", "str"), f("selectSrc", "json"), f("selectDst", "json"), f("outputPort", "str"), f("outputVlan", "u16")],
    keyFields: ["name"],
  },
  monitoring: {
    name: "monitoring",
    kind: "slow",
    fields: [f("kind", "str"), f("targets", "json"), f("sampling", "u32"), f("pollingSec", "u32")],
    keyFields: ["kind"],
  },
  fdb: {
    name: "fdb",
    kind: "fast",
    fields: [f("mac", "str"), f("vlan", "u16"), f("ifaceId", "str"), f("ageSec", "u32"), f("static", "bool")],
    keyFields: ["mac", "vlan"],
  },
  neighbours: {
    name: "neighbours",
    kind: "fast",
    fields: [f("ip", "str"), f("mac", "str"), f("ifaceId", "str"), f("state", "str")],
    keyFields: ["ip", "ifaceId"],
  },
  conntrack: {
    name: "conntrack",
    kind: "fast",
    fields: [
      f("proto", "u8"), f("origSrc", "ip"), f("origDst", "ip"), f("origSport", "u16"), f("origDport", "u16"),
      f("replySrc", "ip"), f("replyDst", "ip"), f("replySport", "u16"), f("replyDport", "u16"),
      f("icmpType", "u8"), f("icmpCode", "u8"), f("icmpId", "u16"),
      f("state", "str"), f("status", "u32"), f("mark", "u32"), f("labels", "str"), f("timeoutSec", "u32"),
      f("zone", "u16", true),
    ],
    keyFields: ["proto", "origSrc", "origSport", "origDst", "origDport", "icmpType", "icmpCode", "icmpId"],
  },
  counters: {
    name: "counters",
    kind: "fast",
    fields: [f("ifaceId", "str"), f("rxPackets", "f64"), f("rxBytes", "f64"), f("txPackets", "f64"), f("txBytes", "f64")],
    keyFields: ["ifaceId"],
  },
};

/** Table names in their canonical order (slow state first). */
export const TABLE_NAMES: readonly TableName[] = [
  "ports", "acls", "qos", "mirrors", "monitoring", "fdb", "neighbours", "conntrack", "counters",
];

export function isTableName(name: string): name is TableName {
  return Object.prototype.hasOwnProperty.call(TABLES, name);
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
for (const t of TABLE_NAMES) {
  const spec = TABLES[t];
  for (const fl of spec.fields) if (!IDENT.test(fl.name)) throw new Error(`table ${t}: field name ${JSON.stringify(fl.name)} is not a plain identifier`);
  for (const k of spec.keyFields) {
    const fl = spec.fields.find((x) => x.name === k);
    if (!fl || fl.local || fl.type === "json") throw new Error(`table ${t}: key field ${k} must be a portable scalar field`);
  }
}

/**
 * A table's key as one template literal over named fields (generated from
 * `keyFields`, which were checked above to be plain field names). Addresses
 * enter it in canonical form, as stored rows give them back, so a key built
 * from "2001:DB8::1" finds the row stored from it.
 */
const KEY_FNS = Object.fromEntries(
  TABLE_NAMES.map((t) => {
    const parts = TABLES[t].keyFields.map((k) => (TABLES[t].fields.find((f) => f.name === k)!.type === "ip" ? `\${canonicalIp(r.${k})}` : `\${r.${k}}`));
    return [t, new Function("canonicalIp", `"use strict"; return function (r) { return \`${parts.join("|")}\`; };`)(canonicalIp)];
  }),
) as Record<TableName, (r: unknown) => string>;

/** The key of a row of a table (see TableSpec.keyFields). */
export function keyOf(table: TableName, row: unknown): string {
  return KEY_FNS[table](row);
}
