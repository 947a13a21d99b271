/**
 * ovs backend - a VM migrates A→B at the backend level (read on A, stage on
 * B with RemapContext, deltas, freeze, seal, re-plug, activate, release),
 * and B then holds the same flows (ports remapped), fdb entries, QoS, tags,
 * tunnel config and conntrack entries (zone remapped, NAT and marks intact),
 * A holds none of it, vm2 on A is untouched, and real packets pass or drop
 * on B as the VM's ACL flows say.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { VmMigratingError } from "../../protocol/errors.js";
import { dataplaneSkipReason } from "../harness/netns.js";
import { buildTopology, cookieHex, MASK, rawState, VM1, VM2, ZONE_VM1, ZONE_VM2 } from "./fixture.js";

const skip = await dataplaneSkipReason();

function tcpProbe(lab: import("../harness/netns.js").NetnsLab, ns: string, host: string, port: number): Promise<string> {
  const js = `const s=require("net").connect(${port},"${host}");s.setTimeout(1500);s.on("connect",()=>{console.log("open");s.destroy()});s.on("timeout",()=>{console.log("timeout");s.destroy()});s.on("error",e=>console.log("error "+e.code));`;
  return lab.exec(ns, [process.execPath, "-e", js], { timeoutMs: 10_000 }).then((r) => r.stdout.trim());
}

test("ovs backend - migrates a VM's flows, fdb, QoS, tags, tunnels and conntrack A→B; A keeps only vm2", { timeout: 120_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const topo = await buildTopology();
  const { lab, a, b, ovsA, ovsB } = topo;
  let server: ReturnType<typeof spawn> | null = null;
  try {
    const vm2Before = await a.describe(VM2);
    assert.ok(vm2Before);
    const rawA = await rawState(topo, "A");

    // ---- pre-copy: full snapshot
    const full = await a.read(VM1, null);
    const up = full.upserts;
    assert.equal(up.ports?.length, 2, "vm1 has its tap port and its tunnel port");
    assert.equal(up.acls?.length, 4);
    assert.equal(up.qos?.length, 1);
    assert.equal(up.mirrors?.length, 1);
    assert.equal(up.conntrack?.length, 3);
    assert.ok((up.fdb?.length ?? 0) >= 2, "learned MAC and static entry on vm1's port");
    const tap = up.ports!.rows().find((p) => p.ifaceId === "vm1-if0")!;
    assert.equal(tap.vlanTag, 10);
    assert.equal(tap.ctZone, ZONE_VM1);
    assert.equal(tap.externalIds["ct-zone"], undefined, "the zone key is host-local");
    const tun = up.ports!.rows().find((p) => p.ifaceId === "vm1-tun")!;
    assert.deepEqual([tun.tunnelType, tun.tunnelKey, tun.tunnelRemoteIp], ["vxlan", 5001, "198.18.9.9"]);
    const ctFlow = up.acls!.rows().find((f) => f.actions.includes("ct("))!;
    assert.match(ctFlow.actions, /zone=@vm1-if0/, "zones in flows are portable");
    assert.match(ctFlow.match, /in_port=@vm1-if0/);
    assert.equal(ctFlow.direction, "egress");
    const snat = up.conntrack!.rows().find((r) => r.proto === 6)!;
    assert.equal(snat.replyDst, "198.18.60.1");
    assert.equal(snat.replyDport, 50000);
    assert.equal(snat.mark, 66);

    const remap = { srcPortZones: await a.portZones(VM1) };
    assert.equal(remap.srcPortZones["vm1-if0"], ZONE_VM1);
    await b.stage(VM1, "m1", full, remap);

    // Staged state does not steer traffic: no flows with vm1's cookie on B, no ports.
    const bFlows = (await ovsB.ofctl(["dump-flows", ovsB.mgmt("br-int"), `cookie=${cookieHex(VM1)}/0x${MASK.toString(16)}`])).stdout;
    assert.doesNotMatch(bFlows, /cookie=/);
    assert.doesNotMatch((await ovsB.vsctl(["list-ports", "br-int"])).stdout, /vm1tun/);

    // ---- a delta: one entry gone, one new
    await lab.exec(topo.hostA, ["conntrack", "-D", "-p", "icmp", "-s", "198.18.0.10", "-w", String(ZONE_VM1)]);
    await lab.exec(topo.hostA, ["conntrack", "-I", "-p", "tcp", "-s", "198.18.0.10", "-d", "198.18.50.4", "--sport", "40010", "--dport", "443", "--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "3000", "-w", String(ZONE_VM1), "-m", "66"]);
    const d1 = await a.read(VM1, full.gen);
    assert.equal(d1.upserts.conntrack?.length, 1);
    assert.equal(d1.deletes.conntrack?.length, 1);
    assert.equal(d1.upserts.acls, undefined, "unchanged tables are not resent");
    await b.stage(VM1, "m1", d1, remap);

    // ---- the destination's tap is plugged while pre-copy runs (libvirt plugs
    // it when the incoming QEMU starts): vm1 is still not live on B.
    const early = ["--", "set", "interface", "v1early", "type=internal", `external_ids:vm-id=${VM1}`, "external_ids:iface-id=vm1-if0", `external_ids:attached-mac=${topo.vm1Mac}`];
    await ovsB.vsctl(["add-port", "br-int", "v1early", ...early]);
    assert.deepEqual((await b.listVms()).map((v) => v.vmId), [], "an incoming VM is not listed as live on B");
    assert.equal(await b.describe(VM1), null);
    await assert.rejects(b.write(VM1, { upserts: {}, deletes: { acls: ["x"] } }, false), VmMigratingError);
    assert.doesNotMatch((await ovsB.ofctl(["dump-flows", ovsB.mgmt("br-int"), `cookie=${cookieHex(VM1)}/0x${MASK.toString(16)}`])).stdout, /cookie=/, "no flow of vm1 on B with its port there");
    assert.equal((await b.staged(VM1, "m1"))?.counts.conntrack, 3);
    await ovsB.vsctl(["del-port", "br-int", "v1early"]);

    // ---- freeze, final delta, seal
    await a.setFrozen(VM1, true);
    await assert.rejects(a.write(VM1, { upserts: {}, deletes: { acls: ["x"] } }, false), VmMigratingError);
    const fin = await a.read(VM1, d1.gen);
    await b.stage(VM1, "m1", fin, remap);
    await b.seal(VM1, "m1");
    const staged = await b.staged(VM1, "m1");
    assert.equal(staged?.digest, fin.digest, "staged digest equals the source's");

    // ---- switchover: re-plug the tap into B (as libvirt does), activate, release
    await ovsA.vsctl(["del-port", "br-int", "v1h"]);
    await lab.move(topo.hostA, "v1h", topo.hostB);
    await ovsB.vsctl(["add-port", "br-int", "v1h", "--", "set", "interface", "v1h", `external_ids:vm-id=${VM1}`, "external_ids:iface-id=vm1-if0", `external_ids:attached-mac=${topo.vm1Mac}`]);
    const act = await b.activate(VM1, "m1");
    assert.deepEqual(act.tables, fin.tables, "per-table digests after activation equal the source's");
    assert.equal(act.digest, fin.digest);
    await a.remove(VM1);
    await a.endTracking(VM1);

    // ---- B holds vm1's state
    const bzone = Number((await ovsB.vsctl(["get", "interface", "v1h", "external_ids:ct-zone"])).stdout.trim().replace(/"/g, ""));
    assert.ok(bzone >= 4096 && bzone <= 4200, `zone allocated on B: ${bzone}`);
    const flowsB = (await ovsB.ofctl(["--names", "--no-stats", "dump-flows", ovsB.mgmt("br-int"), `cookie=${cookieHex(VM1)}/0x${MASK.toString(16)}`])).stdout;
    assert.equal(flowsB.split("\n").filter((l) => l.includes("cookie=")).length, 4);
    assert.match(flowsB, new RegExp(`ct\\(commit,zone=${bzone}\\),NORMAL`));
    assert.match(flowsB, /table=5, priority=10,in_port=v1h,dl_vlan=10 actions=output:span0/);
    assert.match(flowsB, /priority=200,tcp,in_port=v1h,tp_dst=9090 actions=drop/);
    assert.equal((await ovsB.vsctl(["get", "port", "v1h", "tag"])).stdout.trim(), "10");
    assert.equal((await ovsB.vsctl(["get", "interface", "v1h", "ingress_policing_rate"])).stdout.trim(), "20000");
    const qosB = (await ovsB.vsctl(["--columns=type,other_config", "list", "qos"])).stdout;
    assert.match(qosB, /linux-htb/);
    assert.match(qosB, /max-rate="50000000"/);
    assert.match((await ovsB.vsctl(["--columns=dscp,other_config", "list", "queue"])).stdout, /dscp\s+: 10[\s\S]*min-rate="1000000"/);
    assert.match((await ovsB.vsctl(["get", "interface", "vm1tun", "options"])).stdout, /key="5001", remote_ip="198\.18\.9\.9"/);
    assert.equal((await ovsB.vsctl(["get", "interface", "vm1tun", "type"])).stdout.trim(), "vxlan");
    assert.match((await ovsB.vsctl(["--columns=name,select_src_port", "list", "mirror"])).stdout, /span-vm1/);
    const fdbB = (await ovsB.appctl(["fdb/show", "br-int"])).stdout;
    assert.match(fdbB, new RegExp(`\\s10\\s+${topo.vm1Mac}\\s+static`), "vm1's MAC pre-populated on B");
    assert.match(fdbB, /\s10\s+52:54:00:aa:00:01\s+static/);
    const ctB = (await lab.exec(topo.hostB, ["conntrack", "-L", "-o", "extended", "-w", String(bzone)])).stdout;
    assert.equal(ctB.split("\n").filter(Boolean).length, 3, ctB);
    assert.match(ctB, /src=198\.18\.0\.10 dst=198\.18\.50\.1 sport=40000 dport=80 src=198\.18\.50\.1 dst=198\.18\.60\.1 sport=80 dport=50000 \[ASSURED\] mark=66/);
    assert.match(ctB, /udp .*src=198\.18\.0\.10 dst=198\.18\.50\.2 sport=40001 dport=53 \[UNREPLIED\] src=198\.18\.60\.2 dst=198\.18\.0\.10 sport=5353 dport=40001 mark=66/);
    assert.match(ctB, /dport=443 .*mark=66/);
    assert.doesNotMatch(ctB, /icmp/, "the deleted entry was not loaded");

    // ---- A holds none of vm1's state, vm2 untouched
    const after = await rawState(topo, "A");
    assert.doesNotMatch(after.flows, new RegExp(`cookie=${cookieHex(VM1)}`));
    assert.match(after.flows, new RegExp(`cookie=${cookieHex(VM2)}.*tp_dst=7070`));
    assert.doesNotMatch(after.ct, new RegExp(`zone=${ZONE_VM1} `));
    assert.equal(after.ct.split("\n").filter((l) => l.includes(`zone=${ZONE_VM2} `)).join("\n"), rawA.ct.split("\n").filter((l) => l.includes(`zone=${ZONE_VM2} `)).join("\n"));
    assert.match(after.ct, /sport=1000 dport=22/, "the host's own entry is untouched");
    assert.doesNotMatch(after.ifaces, /vm1tun|v1h/);
    assert.doesNotMatch(after.mirrors, /span-vm1/);
    assert.equal(after.qos, "[]", "vm1's QoS rows are gone");
    assert.doesNotMatch(after.fdb, /52:54:00:aa:00:01/);
    assert.match(after.fdb, /52:54:00:bb:00:01 static/);
    const vm2After = await a.describe(VM2);
    // OVS itself flushes dynamically learned MACs when a bridge's mirrors change
    // (vm1's mirror was deleted), so vm2's learned entry may be relearned later;
    // everything netmig could touch must be identical.
    const { fdb: fdbBefore, ...vm2BeforeRest } = vm2Before.tables;
    const { fdb: fdbAfter, ...vm2AfterRest } = vm2After!.tables;
    assert.deepEqual(vm2AfterRest, vm2BeforeRest, "vm2's state is unchanged");
    assert.ok(Number(fdbAfter.split(":")[0]) >= 1 && Number(fdbBefore.split(":")[0]) >= 1);
    assert.equal(await a.describe(VM1), null);

    // ---- real packets on B follow vm1's ACLs
    const srv = `const net=require("net");for(const p of [8080,9090]) net.createServer(s=>s.end()).listen(p,"198.18.0.30");setTimeout(()=>{},60000)`;
    server = spawn("ip", ["netns", "exec", topo.peer, process.execPath, "-e", srv], { stdio: "ignore" });
    const ping = await lab.exec(topo.vm1, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.30"], { check: false });
    assert.equal(ping.code, 0, `ping from vm1 to the peer on B: ${ping.stdout}`);
    let open = "";
    for (let i = 0; i < 20 && open !== "open"; i++) open = await tcpProbe(lab, topo.vm1, "198.18.0.30", 8080);
    assert.equal(open, "open", "tcp/8080 is allowed");
    assert.equal(await tcpProbe(lab, topo.vm1, "198.18.0.30", 9090), "timeout", "tcp/9090 is dropped by vm1's flow");
  } finally {
    if (server?.pid) {
      try {
        process.kill(server.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await topo.cleanup();
  }
});
