/**
 * conntrack backend - standalone: a VM selected by zone and mark moves
 * between two namespaces' conntrack tables; zones are remapped, NAT, marks
 * and timeouts kept, other entries untouched, and an abort cleans up.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConntrackBackend } from "../../agent/backends/conntrack/index.js";
import { dataplaneSkipReason, NetnsLab } from "../harness/netns.js";

const skip = await dataplaneSkipReason(["conntrack"]);

test("conntrack backend - moves a VM's entries by zone and mark, remaps zones, keeps NAT, untouched neighbours; abort cleans", { timeout: 60_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const lab = new NetnsLab();
  const dir = await mkdtemp(join(tmpdir(), "netmig-ct-"));
  try {
    const ha = await lab.addNs("ca");
    const hb = await lab.addNs("cb");
    const ins = (ns: string, args: string[]) => lab.exec(ns, ["conntrack", "-I", ...args]);
    await ins(ha, ["-p", "tcp", "-s", "198.18.2.10", "-d", "198.18.3.1", "--sport", "5000", "--dport", "80", "--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "2000", "-w", "21", "-m", "7", "--src-nat", "198.18.4.1:6000"]);
    await ins(ha, ["-p", "udp", "-s", "198.18.2.10", "-d", "198.18.3.2", "--sport", "5001", "--dport", "53", "-t", "900", "-w", "21", "-m", "7", "--dst-nat", "198.18.4.2:5353"]);
    await ins(ha, ["-p", "tcp", "-s", "198.18.2.10", "-d", "198.18.3.3", "--sport", "5002", "--dport", "22", "--state", "ESTABLISHED", "-t", "2000", "-w", "21", "-m", "8"]); // other mark
    await ins(ha, ["-p", "tcp", "-s", "198.18.2.20", "-d", "198.18.3.3", "--sport", "5003", "--dport", "22", "--state", "ESTABLISHED", "-t", "2000", "-w", "22", "-m", "7"]); // other zone
    await ins(hb, ["-p", "tcp", "-s", "198.18.5.1", "-d", "198.18.5.2", "--sport", "7000", "--dport", "22", "--state", "ESTABLISHED", "-t", "2000", "-w", "4096"]); // B's own
    const a = createConntrackBackend({ stateDir: join(dir, "a"), netns: ha, vms: { vmx: { zones: { "x-if0": 21 }, mark: 7 } } });
    const b = createConntrackBackend({ stateDir: join(dir, "b"), netns: hb, vms: { other: { zones: { "o-if0": 4096 } } }, zoneRange: [4096, 4100] });
    await a.start();
    await b.start();

    const full = await a.read("vmx", null);
    assert.equal(full.upserts.conntrack?.length, 2, "zone 21 and mark 7 only");
    const remap = { srcPortZones: await a.portZones("vmx") };

    // Abort first: staged entries appear on B, discard removes exactly them.
    await b.stage("vmx", "s0", full, remap);
    const staged = (await lab.exec(hb, ["conntrack", "-L", "-w", "4097"])).stdout;
    assert.equal(staged.split("\n").filter(Boolean).length, 2, "loaded in the next free zone (4096 is taken)");
    await b.discard("vmx", "s0");
    assert.equal((await lab.exec(hb, ["conntrack", "-L", "-w", "4097"])).stdout.trim(), "");
    assert.equal((await lab.exec(hb, ["conntrack", "-L", "-w", "4096"])).stdout.split("\n").filter(Boolean).length, 1);

    // Now the real move. A stale entry with the same tuple as one of vmx's sits
    // in the zone B will use (a load is create first; an entry that is there
    // is replaced), and the first stage is retried as after a lost reply.
    await ins(hb, ["-p", "tcp", "-s", "198.18.2.10", "-d", "198.18.3.1", "--sport", "5000", "--dport", "80", "--state", "SYN_SENT", "-t", "50", "-w", "4097", "-m", "99"]);
    await b.stage("vmx", "s1", full, remap);
    await b.stage("vmx", "s1", full, remap);
    await a.setFrozen("vmx", true);
    const fin = await a.read("vmx", full.gen);
    await b.stage("vmx", "s1", fin, remap);
    await b.seal("vmx", "s1");
    assert.equal((await b.staged("vmx", "s1"))?.digest, fin.digest);
    const act = await b.activate("vmx", "s1");
    assert.equal(act.digest, fin.digest);
    await a.remove("vmx");

    const onB = (await lab.exec(hb, ["conntrack", "-L", "-o", "extended", "-w", "4097"])).stdout;
    assert.match(onB, /src=198\.18\.2\.10 dst=198\.18\.3\.1 sport=5000 dport=80 src=198\.18\.3\.1 dst=198\.18\.4\.1 sport=80 dport=6000 \[ASSURED\] mark=7 zone=4097/);
    assert.match(onB, /src=198\.18\.4\.2 dst=198\.18\.2\.10 sport=5353 dport=5001 mark=7 zone=4097/);
    assert.equal(onB.split("\n").filter(Boolean).length, 2, `the stale entry was replaced, nothing doubled:\n${onB}`);
    assert.doesNotMatch(onB, /mark=99/);
    const timeouts = [...onB.matchAll(/^\S+\s+\d+\s+\S+\s+\d+\s+(\d+)/gm)].map((m) => Number(m[1]));
    assert.ok(timeouts.some((x) => x > 1900 && x <= 2000) && timeouts.some((x) => x > 800 && x <= 900), `timeouts kept: ${timeouts}`);
    const leftA = (await lab.exec(ha, ["conntrack", "-L", "-o", "extended"])).stdout;
    assert.doesNotMatch(leftA, /mark=7 zone=21/);
    assert.match(leftA, /mark=8 zone=21/, "other mark in the same zone untouched");
    assert.match(leftA, /mark=7 zone=22/, "same mark in another zone untouched");
    assert.equal((await lab.exec(hb, ["conntrack", "-L", "-w", "4096"])).stdout.split("\n").filter(Boolean).length, 1);
    assert.deepEqual((await b.listVms()).map((v) => v.vmId), ["other", "vmx"]);
    await a.close();
    await b.close();
  } finally {
    await lab.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});
