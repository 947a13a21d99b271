/**
 * Generates a realistic VM network state, deterministically from a seed, for
 * the demo, the tests and the benchmarks: ports with VLAN tags and a tunnel,
 * ACLs, QoS, a mirror, sFlow, MAC and neighbour entries, and conntrack
 * entries (TCP in several states, UDP, ICMP, some SNAT/DNAT).
 * Addresses come from 198.18.0.0/15 only.
 */
import { SCHEMA_VERSION, type VmState } from "./model.js";
import type { AclRow, ConntrackRow, CounterRow, FdbRow, MirrorRow, MonitoringRow, NeighbourRow, PortRow, QosRow } from "./tables.js";

export interface GenerateOptions {
  ports?: number;
  acls?: number;
  fdb?: number;
  neighbours?: number;
  conntrack?: number;
  /** Seed for the pseudo-random choices. Default 1. */
  seed?: number;
  /** First conntrack zone of the VM's ports. Default 10. */
  firstZone?: number;
}

function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

const hex2 = (n: number) => (n & 0xff).toString(16).padStart(2, "0");
const ip = (a: number, b: number) => `198.${18 + (a & 1)}.${(b >> 8) & 0xff}.${b & 0xff}`;
const mac = (a: number, b: number) => `52:54:${hex2(a)}:${hex2(b >> 16)}:${hex2(b >> 8)}:${hex2(b)}`;

export function generateVmState(vmId: string, o: GenerateOptions = {}): VmState {
  const rnd = prng(o.seed ?? 1);
  const nPorts = o.ports ?? 2;
  const firstZone = o.firstZone ?? 10;
  const vmIndex = Math.floor(rnd() * 200) + 1;
  const ports: PortRow[] = [];
  for (let i = 0; i < nPorts; i++) {
    ports.push({
      ifaceId: `${vmId}-if${i}`, mac: mac(vmIndex, i + 1), ips: [ip(0, vmIndex * 16 + i + 1)], vlanTag: 100 + i, trunks: [],
      tunnelType: i === 0 ? "vxlan" : "", tunnelKey: i === 0 ? 5000 + vmIndex : 0, tunnelRemoteIp: i === 0 ? ip(1, 1) : "",
      externalIds: { "iface-id": `${vmId}-if${i}`, "vm-id": vmId, "attached-mac": mac(vmIndex, i + 1), "iface-status": "active" },
      name: `vnet${i}`, ofport: i + 1, ctZone: firstZone + i,
    });
  }
  const acls: AclRow[] = [];
  for (let i = 0; i < (o.acls ?? 100); i++) {
    const p = ports[i % nPorts]!;
    const egress = i % 2 === 0;
    const port = 1 + ((i * 37) % 65000);
    acls.push({
      id: `acl-${i}`, direction: egress ? "egress" : "ingress", priority: 1000 + (i % 1000), table: 0,
      match: egress ? `in_port=@${p.ifaceId},tcp,tp_dst=${port}` : `tcp,nw_dst=${p.ips[0]},tp_dst=${port}`,
      actions: i % 10 === 0 ? "drop" : "NORMAL",
    });
  }
  const qos: QosRow[] = ports.map((p, i) => ({
    ifaceId: p.ifaceId, ingressPolicingRateKbps: 100_000 * (i + 1), ingressPolicingBurstKb: 10_000, qosType: "linux-htb", maxRateBps: 1e9,
    queues: [{ id: 0, minRateBps: 1e8, maxRateBps: 1e9 }, { id: 1, minRateBps: 1e7, maxRateBps: 5e8, dscp: 46 }], dscpMark: i === 0 ? 0 : 26,
  }));
  const mirrors: MirrorRow[] = [{ name: `${vmId}-span`, selectSrc: [ports[0]!.ifaceId], selectDst: [ports[0]!.ifaceId], outputPort: "", outputVlan: 999 }];
  const monitoring: MonitoringRow[] = [{ kind: "sflow", targets: [`${ip(1, 2)}:6343`], sampling: 1000, pollingSec: 10 }];
  const fdb: FdbRow[] = [];
  for (let i = 0; i < (o.fdb ?? 1000); i++) {
    const p = ports[i % nPorts]!;
    fdb.push({ mac: mac(0xa0 + (vmIndex & 0x3f), i), vlan: p.vlanTag, ifaceId: p.ifaceId, ageSec: Math.floor(rnd() * 300), static: i < 2 });
  }
  const neighbours: NeighbourRow[] = [];
  for (let i = 0; i < (o.neighbours ?? 64); i++) {
    neighbours.push({ ip: ip(1, 1000 + i), mac: mac(0xb0, i), ifaceId: ports[i % nPorts]!.ifaceId, state: i % 5 === 0 ? "STALE" : "REACHABLE" });
  }
  const conntrack: ConntrackRow[] = [];
  const tcpStates = ["ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "FIN_WAIT", "CLOSE_WAIT"];
  const n = o.conntrack ?? 5000;
  for (let i = 0; i < n; i++) {
    const p = ports[i % nPorts]!;
    const src = p.ips[0]!;
    const dst = ip(1, 2000 + (i % 50_000));
    const kind = rnd();
    const sport = 1024 + (i % 64000);
    const sub = Math.floor(i / 64000);
    const dport = [443, 80, 22, 5432, 6379][i % 5]! + sub * 7;
    const mark = i % 3 === 0 ? 0x10 : 0;
    const labels = i % 7 === 0 ? "0000000000000000000000000000000a" : "";
    // One object literal per row, every field in table order: the shape rows
    // have when an agent decodes them (a spread would put half the fields
    // out of line and make every pass over the rows several times slower).
    let row: ConntrackRow;
    if (kind < 0.8) {
      const snat = i % 11 === 0;
      row = {
        proto: 6, origSrc: src, origDst: dst, origSport: sport, origDport: dport, replySrc: dst, replyDst: snat ? ip(1, 1) : src,
        replySport: dport, replyDport: snat ? 30000 + (i % 30000) : sport, icmpType: 0, icmpCode: 0, icmpId: 0,
        state: tcpStates[i % tcpStates.length]!, status: 0x0e, mark, labels, timeoutSec: 1 + Math.floor(rnd() * 432000), zone: p.ctZone,
      };
    } else if (kind < 0.97) {
      const dnat = i % 13 === 0;
      row = {
        proto: 17, origSrc: src, origDst: dst, origSport: sport, origDport: 53 + sub, replySrc: dnat ? ip(1, 3) : dst, replyDst: src,
        replySport: 53 + sub, replyDport: sport, icmpType: 0, icmpCode: 0, icmpId: 0,
        state: "", status: 0x0a, mark, labels, timeoutSec: 1 + Math.floor(rnd() * 180), zone: p.ctZone,
      };
    } else {
      row = {
        proto: 1, origSrc: src, origDst: dst, origSport: 0, origDport: 0, replySrc: dst, replyDst: src,
        replySport: 0, replyDport: 0, icmpType: 8, icmpCode: 0, icmpId: i & 0xffff,
        state: "", status: 0x0a, mark, labels, timeoutSec: 30, zone: p.ctZone,
      };
    }
    conntrack.push(row);
  }
  const counters: CounterRow[] = ports.map((p) => ({ ifaceId: p.ifaceId, rxPackets: 1e6, rxBytes: 1e9, txPackets: 2e6, txBytes: 3e9 }));
  return { schemaVersion: SCHEMA_VERSION, vmId, tables: { ports, acls, qos, mirrors, monitoring, fdb, neighbours, conntrack, counters } };
}
