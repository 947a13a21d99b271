/**
 * ovs backend through the whole system - a coordinator and two `netmig agent
 * --backend ovs` processes (each pointed at its host's OVS instance and
 * conntrack namespace with the CLI flags) migrate vm1 A→B with StartMigration.
 * The tap is re-plugged into B once the migration is committed (as libvirt
 * does when the VM resumes there); B activates, A releases, and B holds
 * vm1's flows, fdb, QoS, tag, tunnel and conntrack (zone remapped, NAT and
 * mark intact) while A keeps only vm2.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { unaryCall } from "../../cli/client.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { Cluster } from "../harness/cluster.js";
import { dataplaneSkipReason } from "../harness/netns.js";
import { waitFor } from "../harness/wait.js";
import { buildTopology, cookieHex, MASK, rawState, VM1, VM2, ZONE_VM2 } from "./fixture.js";

const skip = await dataplaneSkipReason();

test("ovs backend - StartMigration through the coordinator moves vm1 between two `netmig agent --backend ovs` processes", { timeout: 180_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const topo = await buildTopology({ backends: false });
  const { lab, ovsA, ovsB } = topo;
  let c: Cluster | null = null;
  try {
    const rawA = await rawState(topo, "A");
    const hosts: Record<string, { ovs: typeof ovsA; ns: string }> = { "host-a": { ovs: ovsA, ns: topo.hostA }, "host-b": { ovs: ovsB, ns: topo.hostB } };
    c = await Cluster.start({
      agents: ["host-a", "host-b"],
      agentStartMs: 30_000,
      agentArgs: (h) => [
        "--backend", "ovs",
        "--ovsdb", `unix:${hosts[h]!.ovs.dbSock}`,
        "--ovs-rundir", hosts[h]!.ovs.dir,
        "--vswitchd-ctl", hosts[h]!.ovs.vswitchdCtl,
        "--bridge", "br-int",
        "--netns", hosts[h]!.ns,
        "--cookie-mask", `0x${MASK.toString(16)}`,
        "--ct-zone-range", "4096-4200",
        "--port-wait-ms", "20000",
        "--fdb-hold-ms", "60000",
      ],
    });
    const cluster = c;
    const invA = await cluster.inventory("host-a");
    assert.equal(invA.backend, "ovs");
    assert.deepEqual(invA.vms.map((v) => `${v.vmId}:${v.status}`).sort(), [`${VM1}:active`, `${VM2}:active`]);
    assert.equal((await cluster.inventory("host-b")).vms.length, 0);
    const vm1A = invA.vms.find((v) => v.vmId === VM1)!;
    assert.equal(vm1A.counts.conntrack, 3);
    assert.equal(vm1A.counts.acls, 4);
    // The coordinator learns where vm1 lives from the agents' heartbeats.
    await waitFor(async () => {
      const res = await unaryCall<object, { hosts: { host_id: string; vms: string[] }[] }>(cluster.client, "ListHosts", {});
      return res.hosts.some((h) => h.host_id === "host-a" && h.vms.includes(VM1));
    }, { what: "the coordinator to see vm1 on host-a", timeoutMs: 15_000 });

    const started = await unaryCall<object, Migration__Output>(cluster.client, "StartMigration", { vm_id: VM1, dst_host: "host-b", options: {}, wait: false }, 30_000);
    assert.equal(started.src_host, "host-a");
    const id = started.migration_id;

    // Committed: B activates once vm1's tap is plugged into its bridge.
    await cluster.waitForPhase(id, ["COMMITTED", "ACTIVATED", "RELEASED", "DONE", "ABORTED", "ABORTING", "FAILED", "IN_DOUBT"], 60_000);
    const atCommit = await unaryCall<object, Migration__Output>(cluster.client, "GetMigration", { migration_id: id });
    assert.equal(atCommit.phase, "COMMITTED", `expected the migration to wait for the port at COMMITTED: ${atCommit.phase} ${atCommit.error?.message ?? ""}\n${cluster.logs()}`);
    const bFlowsStaged = (await ovsB.ofctl(["dump-flows", ovsB.mgmt("br-int"), `cookie=${cookieHex(VM1)}/0x${MASK.toString(16)}`])).stdout;
    assert.doesNotMatch(bFlowsStaged, /cookie=/, "no flow of vm1 on B before its port is there");
    await ovsA.vsctl(["del-port", "br-int", "v1h"]);
    await lab.move(topo.hostA, "v1h", topo.hostB);
    await ovsB.vsctl(["add-port", "br-int", "v1h", "--", "set", "interface", "v1h", `external_ids:vm-id=${VM1}`, "external_ids:iface-id=vm1-if0", `external_ids:attached-mac=${topo.vm1Mac}`]);

    const m = await cluster.waitForPhase(id, ["DONE", "ABORTED", "FAILED", "IN_DOUBT"], 60_000);
    assert.equal(m.phase, "DONE", `migration ended in ${m.phase}: ${m.error?.message}\n${cluster.logs()}`);
    assert.equal(m.progress?.src_digest, m.progress?.dst_digest, "B activated exactly what A froze");
    assert.equal(await cluster.vmStatus("host-a", VM1), "released");
    assert.equal(await cluster.vmStatus("host-b", VM1), "active");
    assert.equal(await cluster.vmStatus("host-a", VM2), "active");

    // ---- B holds vm1's state, host-local ids remapped
    const bzone = Number((await ovsB.vsctl(["get", "interface", "v1h", "external_ids:ct-zone"])).stdout.trim().replace(/"/g, ""));
    assert.ok(bzone >= 4096 && bzone <= 4200, `zone allocated on B: ${bzone}`);
    const flowsB = (await ovsB.ofctl(["--names", "--no-stats", "dump-flows", ovsB.mgmt("br-int"), `cookie=${cookieHex(VM1)}/0x${MASK.toString(16)}`])).stdout;
    assert.equal(flowsB.split("\n").filter((l) => l.includes("cookie=")).length, 4, flowsB);
    assert.match(flowsB, new RegExp(`ct\\(commit,zone=${bzone}\\),NORMAL`));
    assert.equal((await ovsB.vsctl(["get", "port", "v1h", "tag"])).stdout.trim(), "10");
    assert.equal((await ovsB.vsctl(["get", "interface", "v1h", "ingress_policing_rate"])).stdout.trim(), "20000");
    assert.match((await ovsB.vsctl(["get", "interface", "vm1tun", "options"])).stdout, /key="5001", remote_ip="198\.18\.9\.9"/);
    assert.match((await ovsB.vsctl(["--columns=type,other_config", "list", "qos"])).stdout, /linux-htb/);
    assert.match((await ovsB.appctl(["fdb/show", "br-int"])).stdout, /\s10\s+52:54:00:aa:00:01\s+static/);
    const ctB = (await lab.exec(topo.hostB, ["conntrack", "-L", "-o", "extended", "-w", String(bzone)])).stdout;
    assert.equal(ctB.split("\n").filter(Boolean).length, 3, ctB);
    assert.match(ctB, /src=198\.18\.0\.10 dst=198\.18\.50\.1 sport=40000 dport=80 src=198\.18\.50\.1 dst=198\.18\.60\.1 sport=80 dport=50000 \[ASSURED\] mark=66/);

    // ---- A keeps only vm2's state and the host's own entry
    const after = await rawState(topo, "A");
    assert.doesNotMatch(after.flows, new RegExp(`cookie=${cookieHex(VM1)}`));
    assert.match(after.flows, new RegExp(`cookie=${cookieHex(VM2)}.*tp_dst=7070`));
    const zone2 = (s: string) => s.split("\n").filter((l) => l.includes(`zone=${ZONE_VM2} `)).join("\n");
    assert.equal(zone2(after.ct), zone2(rawA.ct), "vm2's conntrack entries are untouched");
    assert.match(after.ct, /sport=1000 dport=22/, "the host's own entry is untouched");
    assert.doesNotMatch(after.ifaces, /vm1tun|v1h/);
    assert.doesNotMatch(after.mirrors, /span-vm1/);

    // ---- and the VM reaches the peer through B
    const ping = await lab.exec(topo.vm1, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.30"], { check: false });
    assert.equal(ping.code, 0, `ping from vm1 to the peer on B: ${ping.stdout}`);
  } finally {
    await c?.close();
    await topo.cleanup();
  }
});
