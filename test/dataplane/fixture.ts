/**
 * The two-host topology the dataplane tests share:
 *
 *   host A (netns, own OVS, br-int)          host B (netns, own OVS, br-int)
 *     v1h ── vm1 (198.18.0.10)                 ph ── peer (198.18.0.30)
 *     v2h ── vm2 (198.18.0.20)                 span0 (mirror output)
 *     vm1tun (vxlan key 5001), span0
 *
 * vm1 carries flows (its cookie), QoS, a VLAN tag, a mirror, fdb entries and
 * conntrack entries with NAT in zone 11 of host A's namespace; vm2 has its
 * own state in zone 12, which must survive vm1's release untouched.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createOvsBackend, type OvsBackend } from "../../agent/backends/ovs/index.js";
import { hashCookie } from "../../agent/backends/ovs/cookie.js";
import { NetnsLab } from "../harness/netns.js";
import { OvsInstance } from "../harness/ovs.js";

export const VM1 = "vm1-0000-4000-8000-000000000001";
export const VM2 = "vm2-0000-4000-8000-000000000002";
export const MASK = 0xffffffff00000000n;
export const ZONE_VM1 = 11;
export const ZONE_VM2 = 12;

export interface Topology {
  lab: NetnsLab;
  hostA: string;
  hostB: string;
  vm1: string;
  vm2: string;
  peer: string;
  ovsA: OvsInstance;
  ovsB: OvsInstance;
  a: OvsBackend;
  b: OvsBackend;
  stateA: string;
  stateB: string;
  vm1Mac: string;
  cleanup(): Promise<void>;
}

async function macOf(lab: NetnsLab, ns: string, dev: string): Promise<string> {
  const r = await lab.exec(ns, ["cat", `/sys/class/net/${dev}/address`]);
  return r.stdout.trim();
}

export const cookieHex = (vmId: string) => `0x${hashCookie(vmId, MASK).toString(16)}`;

/** Conntrack entries of vm1 (zone 11): TCP with SNAT, UDP with DNAT, ICMP; mark 0x42. */
export const VM1_CT = [
  ["-I", "-p", "tcp", "-s", "198.18.0.10", "-d", "198.18.50.1", "--sport", "40000", "--dport", "80", "--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "3000", "-w", "11", "-m", "66", "--src-nat", "198.18.60.1:50000"],
  ["-I", "-p", "udp", "-s", "198.18.0.10", "-d", "198.18.50.2", "--sport", "40001", "--dport", "53", "-t", "1000", "-w", "11", "-m", "66", "--dst-nat", "198.18.60.2:5353"],
  ["-I", "-p", "icmp", "-s", "198.18.0.10", "-d", "198.18.50.3", "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "77", "-t", "1000", "-w", "11", "-m", "66"],
];

/**
 * Builds the topology. With `backends: false` no in-process backends are
 * created (`a` and `b` stay unset): the test runs agents of its own.
 */
export async function buildTopology(opts: { fdbHoldMs?: number; backends?: boolean } = {}): Promise<Topology> {
  const lab = new NetnsLab();
  const cleanups: (() => Promise<void>)[] = [];
  const t = { lab } as Topology;
  t.cleanup = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
    await lab.cleanup();
  };
  try {
    t.hostA = await lab.addNs("ha");
    t.hostB = await lab.addNs("hb");
    t.vm1 = await lab.addNs("vm1");
    t.vm2 = await lab.addNs("vm2");
    t.peer = await lab.addNs("peer");
    t.ovsA = await OvsInstance.start(t.hostA);
    cleanups.push(() => t.ovsA.stop());
    t.ovsB = await OvsInstance.start(t.hostB);
    cleanups.push(() => t.ovsB.stop());
    await t.ovsA.addBridge("br-int");
    await t.ovsB.addBridge("br-int");

    // VMs and peers.
    await lab.veth(t.hostA, "v1h", t.vm1, "eth0");
    await lab.addr(t.vm1, "eth0", "198.18.0.10/24");
    await lab.veth(t.hostA, "v2h", t.vm2, "eth0");
    await lab.addr(t.vm2, "eth0", "198.18.0.20/24");
    await lab.veth(t.hostB, "ph", t.peer, "eth0");
    await lab.addr(t.peer, "eth0", "198.18.0.30/24");
    await lab.veth(t.hostA, "span0", t.hostA, "span0p");
    await lab.veth(t.hostB, "span0", t.hostB, "span0p");
    for (const [ns, dev] of [[t.vm1, "eth0"], [t.vm2, "eth0"], [t.peer, "eth0"], [t.hostA, "v1h"], [t.hostA, "v2h"], [t.hostB, "ph"]] as const) {
      await lab.txCsumOff(ns, dev);
    }
    t.vm1Mac = await macOf(lab, t.vm1, "eth0");
    const vm2Mac = await macOf(lab, t.vm2, "eth0");

    const A = t.ovsA;
    await A.vsctl(["add-port", "br-int", "span0", "--", "add-port", "br-int", "v1h", "tag=10",
      "--", "set", "interface", "v1h", `external_ids:vm-id=${VM1}`, "external_ids:iface-id=vm1-if0", `external_ids:attached-mac=${t.vm1Mac}`,
      `external_ids:ct-zone=${ZONE_VM1}`, "ingress_policing_rate=20000", "ingress_policing_burst=2000",
      "--", "set", "port", "v1h", "qos=@q",
      "--", "--id=@q", "create", "qos", "type=linux-htb", "other_config:max-rate=50000000", "queues:1=@q1",
      "--", "--id=@q1", "create", "queue", "other_config:min-rate=1000000", "other_config:max-rate=20000000", "dscp=10",
      "--", "add-port", "br-int", "vm1tun", "--", "set", "interface", "vm1tun", "type=vxlan", "options:key=5001", "options:remote_ip=198.18.9.9",
      `external_ids:vm-id=${VM1}`, "external_ids:iface-id=vm1-tun",
      "--", "add-port", "br-int", "v2h", "tag=10",
      "--", "set", "interface", "v2h", `external_ids:vm-id=${VM2}`, "external_ids:iface-id=vm2-if0", `external_ids:attached-mac=${vm2Mac}`,
      `external_ids:ct-zone=${ZONE_VM2}`, "ingress_policing_rate=5000"]);
    await A.vsctl(["--", "--id=@p", "get", "port", "v1h", "--", "--id=@o", "get", "port", "span0",
      "--", "--id=@m", "create", "mirror", "name=span-vm1", "select_src_port=@p", "select_dst_port=@p", "output_port=@o",
      "--", "add", "bridge", "br-int", "mirrors", "@m"]);
    await t.ovsB.vsctl(["add-port", "br-int", "span0", "--", "add-port", "br-int", "ph", "tag=10"]);

    const c1 = cookieHex(VM1);
    const c2 = cookieHex(VM2);
    await A.ofctl(["--names", "add-flows", A.mgmt("br-int"), "-"], [
      `cookie=${c1},table=0,priority=200,tcp,in_port=v1h,tp_dst=9090,actions=drop`,
      `cookie=${c1},table=0,priority=150,udp,in_port=v1h,actions=ct(commit,zone=${ZONE_VM1}),NORMAL`,
      `cookie=${c1},table=0,priority=110,icmp,nw_dst=198.18.0.10,icmp_type=13,actions=drop`,
      `cookie=${c1},table=5,priority=10,in_port=v1h,dl_vlan=10,actions=output:span0`,
      `cookie=${c2},table=0,priority=200,tcp,in_port=v2h,tp_dst=7070,actions=drop`,
    ].join("\n") + "\n");

    // fdb: learned by traffic between the VMs, plus static entries.
    await lab.exec(t.vm1, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.20"]);
    await A.appctl(["fdb/add", "br-int", "v1h", "10", "52:54:00:aa:00:01"]);
    await A.appctl(["fdb/add", "br-int", "v2h", "10", "52:54:00:bb:00:01"]);

    // Kernel conntrack in host A's namespace.
    for (const args of VM1_CT) await lab.exec(t.hostA, ["conntrack", ...args]);
    await lab.exec(t.hostA, ["conntrack", "-I", "-p", "tcp", "-s", "198.18.0.20", "-d", "198.18.50.9", "--sport", "41000", "--dport", "443", "--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "3000", "-w", "12"]);
    await lab.exec(t.hostA, ["conntrack", "-I", "-p", "udp", "-s", "198.18.0.20", "-d", "198.18.50.9", "--sport", "41001", "--dport", "123", "-t", "1000", "-w", "12"]);
    await lab.exec(t.hostA, ["conntrack", "-I", "-p", "tcp", "-s", "198.18.1.1", "-d", "198.18.1.2", "--sport", "1000", "--dport", "22", "--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "3000"]);

    t.stateA = await mkdtemp(join(tmpdir(), "netmig-stA-"));
    t.stateB = await mkdtemp(join(tmpdir(), "netmig-stB-"));
    cleanups.push(() => rm(t.stateA, { recursive: true, force: true }));
    cleanups.push(() => rm(t.stateB, { recursive: true, force: true }));
    if (opts.backends === false) return t;
    const common = { bridge: "br-int", cookieMask: MASK, portWaitMs: 5000, fdbHoldMs: opts.fdbHoldMs ?? 60_000, zoneRange: [4096, 4200] as [number, number] };
    t.a = createOvsBackend({ ...common, ovsdbSocket: A.dbSock, ofctlTarget: A.mgmt("br-int"), vswitchdCtl: A.vswitchdCtl, stateDir: t.stateA, netns: t.hostA });
    t.b = createOvsBackend({ ...common, ovsdbSocket: t.ovsB.dbSock, ofctlTarget: t.ovsB.mgmt("br-int"), vswitchdCtl: t.ovsB.vswitchdCtl, stateDir: t.stateB, netns: t.hostB });
    await t.a.start();
    cleanups.push(() => t.a.close());
    await t.b.start();
    cleanups.push(() => t.b.close());
    return t;
  } catch (e) {
    await t.cleanup();
    throw e;
  }
}

/** Raw host state for before/after comparisons (no counters, no ages, no timeouts). */
export interface RawState {
  flows: string;
  ct: string;
  fdb: string;
  ports: string;
  ifaces: string;
  qos: string;
  queues: string;
  mirrors: string;
}

export async function rawState(t: Topology, host: "A" | "B"): Promise<RawState> {
  const ovs = host === "A" ? t.ovsA : t.ovsB;
  const ns = host === "A" ? t.hostA : t.hostB;
  const flows = (await ovs.ofctl(["--names", "--no-stats", "dump-flows", ovs.mgmt("br-int")])).stdout.split("\n").filter(Boolean).sort().join("\n");
  const ct = (await t.lab.exec(ns, ["conntrack", "-L", "-o", "extended"], { check: false })).stdout
    .split("\n").filter(Boolean).map((l) => l.replace(/^(\S+\s+\d+\s+\S+\s+\d+\s+)\d+\s/, "$1T ")).sort().join("\n");
  const fdb = (await ovs.appctl(["fdb/show", "br-int"])).stdout.split("\n").slice(1).filter(Boolean)
    .map((l) => l.trim().split(/\s+/)).map((f) => `${f[0]} ${f[1]} ${f[2]} ${f[3] === "static" ? "static" : "dyn"}`).sort().join("\n");
  const cols = (table: string, columns: string) =>
    ovs.vsctl(["--format=json", "--columns", columns, "list", table]).then((r) => JSON.stringify((JSON.parse(r.stdout) as { data: unknown[] }).data.map((x) => JSON.stringify(x)).sort()));
  return {
    flows,
    ct,
    fdb,
    ports: await cols("Port", "name,tag,trunks,qos"),
    ifaces: await cols("Interface", "name,type,options,external_ids,ingress_policing_rate,ingress_policing_burst"),
    qos: await cols("QoS", "type,other_config,queues"),
    queues: await cols("Queue", "dscp,other_config"),
    mirrors: await cols("Mirror", "name,select_src_port,select_dst_port,output_port"),
  };
}
