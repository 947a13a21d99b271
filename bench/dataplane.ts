/**
 * Dataplane benchmark: a VM with 100k conntrack entries, 4k fdb entries and
 * 1k flows on the real backends (an OVS instance per simulated host, kernel
 * conntrack per namespace). Measures the read on the source, the load on the
 * destination (stage + seal + activate), and a naive per-entry shell script
 * (`conntrack -I`, `ovs-ofctl add-flow`, `ovs-appctl fdb/add`, one process
 * per entry) run on a bounded sample and extrapolated linearly to the full
 * VM; plus `conntrack -R` and ovs-vsctl vs OVSDB JSON-RPC for reference.
 *
 *   npm run bench:dataplane -- [--json] [--conntrack N] [--fdb N] [--flows N] [--sample N]
 *   node dist/bench/dataplane.js [--json] ...          (after npm run build)
 *
 * Needs root (network namespaces), iproute2, openvswitch-switch, conntrack
 * and python3. Everything runs in namespaces named nm<random>-b*, addresses
 * in 198.18.0.0/15, no packet leaves them; the OVS daemons are stopped by
 * PID and the namespaces deleted at the end, also on failure.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createOvsBackend } from "../agent/backends/ovs/index.js";
import { hashCookie } from "../agent/backends/ovs/cookie.js";
import { OvsdbClient } from "../agent/backends/ovs/ovsdb-client.js";
import { UnixctlClient } from "../agent/backends/ovs/unixctl-client.js";
import { CtnlWriter } from "../agent/backends/conntrack/ctnetlink-helper.js";
import { HostExec } from "../agent/backends/common/command.js";
import type { ConntrackRow } from "../protocol/state/tables.js";
import { dataplaneSkipReason, NetnsLab, sh } from "../test/harness/netns.js";
import { OvsInstance } from "../test/harness/ovs.js";

const args = process.argv.slice(2);
const num = (flag: string, d: number) => {
  const i = args.indexOf(flag);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const JSON_OUT = args.includes("--json");
const N_CT = num("--conntrack", 100_000);
const N_FDB = num("--fdb", 4_000);
const N_FLOWS = num("--flows", 1_000);
const SAMPLE = num("--sample", 2_000);
for (const [flag, v] of [["--conntrack", N_CT], ["--fdb", N_FDB], ["--flows", N_FLOWS], ["--sample", SAMPLE]] as const) {
  if (!Number.isInteger(v) || v < 1 || v > 1_000_000) {
    console.error(`bench/dataplane: ${flag} must be an integer from 1 to 1000000 (got ${v})`);
    process.exit(2);
  }
}
const VM = "bench-vm-0001";
const MASK = 0xffffffff00000000n;
const COOKIE = `0x${hashCookie(VM, MASK).toString(16)}`;

const log = (s: string) => {
  if (!JSON_OUT) console.error(s);
};

async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

function ctRow(i: number, zone: number): ConntrackRow {
  const a = (i >> 8) & 255;
  const b = i & 255;
  const nat = i % 10 === 0;
  const src = `198.18.${a}.${b}`;
  const sport = 1024 + (i % 60000);
  const dst = `198.19.${(i >> 16) & 255}.1`;
  return {
    proto: 6, origSrc: src, origDst: dst, origSport: sport, origDport: 443,
    replySrc: dst, replyDst: nat ? "198.19.200.1" : src, replySport: 443, replyDport: nat ? 10000 + (Math.floor(i / 10) % 50000) : sport,
    icmpType: 0, icmpCode: 0, icmpId: 0, state: "ESTABLISHED", status: 6 | (nat ? 0x10 : 0), mark: 5, labels: "", timeoutSec: 3000, zone,
  };
}

const mac = (i: number) => `52:54:00:${((i >> 16) & 255).toString(16).padStart(2, "0")}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;

async function main(): Promise<void> {
  const skip = await dataplaneSkipReason();
  if (skip) {
    console.error(`bench/dataplane: skipped: ${skip}`);
    process.exitCode = 2;
    return;
  }
  const lab = new NetnsLab();
  const stops: (() => Promise<void>)[] = [];
  const results: Record<string, number> = {};
  try {
    const ha = await lab.addNs("ba");
    const hb = await lab.addNs("bb");
    const vmns = await lab.addNs("bv");
    const A = await OvsInstance.start(ha);
    stops.push(() => A.stop());
    const B = await OvsInstance.start(hb);
    stops.push(() => B.stop());
    await A.addBridge("br-int");
    await B.addBridge("br-int");
    await lab.veth(ha, "bvh", vmns, "eth0");
    await lab.veth(hb, "bvh2", hb, "bvh2p");
    const ext = [`external_ids:vm-id=${VM}`, "external_ids:iface-id=bench-if0", "external_ids:attached-mac=52:54:00:00:00:01"];
    await A.vsctl(["add-port", "br-int", "bvh", "tag=10", "--", "set", "interface", "bvh", ...ext, "external_ids:ct-zone=11"]);
    await B.vsctl(["add-port", "br-int", "bvh2", "--", "set", "interface", "bvh2", ...ext]);
    await B.vsctl(["add-port", "br-int", "naive0", "--", "set", "interface", "naive0", "type=internal"]);

    // ---- populate the source
    log(`populating: ${N_CT} conntrack entries, ${N_FLOWS} flows, ${N_FDB} fdb entries`);
    const execA = new HostExec(ha);
    const rows = Array.from({ length: N_CT }, (_, i) => ctRow(i, 11));
    const writerA = new CtnlWriter(execA, { parallelism: 2 });
    const pop = await writerA.write(rows.map((r) => ["A", r] as const));
    writerA.close();
    if (pop.failed) throw new Error(`populating conntrack: ${pop.failed} entries failed (${JSON.stringify(pop.errors[0])})`);
    const flowLines = Array.from({ length: N_FLOWS }, (_, i) => `cookie=${COOKIE},table=${i % 4},priority=${100 + (i % 50)},tcp,in_port=bvh,nw_dst=198.19.${(i >> 8) & 255}.${i & 255},tp_dst=${1000 + i} actions=${i % 3 ? "NORMAL" : "drop"}`);
    await A.ofctl(["--names", "add-flows", A.mgmt("br-int"), "-"], flowLines.join("\n") + "\n");
    const ctlA = new UnixctlClient(A.vswitchdCtl);
    await sh(["ovs-vsctl", `--db=unix:${A.dbSock}`, "set", "bridge", "br-int", `other_config:mac-table-size=${Math.max(8192, N_FDB * 2)}`]);
    const fdbRes = await ctlA.callMany("fdb/add", Array.from({ length: N_FDB }, (_, i) => ["br-int", "bvh", "10", mac(i + 16)]));
    ctlA.close();
    const fdbFailed = fdbRes.filter((r) => r instanceof Error).length;
    if (fdbFailed) throw new Error(`fdb/add failed for ${fdbFailed} entries`);

    const stA = await mkdtemp(join(tmpdir(), "netmig-bench-a-"));
    const stB = await mkdtemp(join(tmpdir(), "netmig-bench-b-"));
    stops.push(() => rm(stA, { recursive: true, force: true }), () => rm(stB, { recursive: true, force: true }));
    const common = { bridge: "br-int", cookieMask: MASK, portWaitMs: 5000, fdbHoldMs: 60_000, zoneRange: [4096, 4200] as [number, number] };
    const a = createOvsBackend({ ...common, ovsdbSocket: A.dbSock, ofctlTarget: A.mgmt("br-int"), vswitchdCtl: A.vswitchdCtl, stateDir: stA, netns: ha });
    const b = createOvsBackend({ ...common, ovsdbSocket: B.dbSock, ofctlTarget: B.mgmt("br-int"), vswitchdCtl: B.vswitchdCtl, stateDir: stB, netns: hb });
    await a.start();
    await b.start();
    stops.push(() => a.close(), () => b.close());

    // ---- source read
    const [full, readMs] = await time(() => a.read(VM, null));
    results.sourceReadMs = readMs;
    results.rowsConntrack = full.upserts.conntrack?.length ?? 0;
    results.rowsFdb = full.upserts.fdb?.length ?? 0;
    results.rowsAcls = full.upserts.acls?.length ?? 0;
    const [, deltaMs] = await time(() => a.read(VM, full.gen));
    results.sourceDeltaReadMs = deltaMs;

    // ---- destination load
    const remap = { srcPortZones: await a.portZones(VM) };
    const [, stageMs] = await time(() => b.stage(VM, "bench", full, remap));
    const [, sealMs] = await time(() => b.seal(VM, "bench"));
    const [act, activateMs] = await time(() => b.activate(VM, "bench"));
    results.destStageMs = stageMs;
    results.destSealMs = sealMs;
    results.destActivateMs = activateMs;
    results.destLoadMs = stageMs + sealMs + activateMs;
    results.digestsEqual = act.digest === full.digest ? 1 : 0;

    // ---- components on their own
    const execB = new HostExec(hb);
    const zoneRows = rows.map((r) => ({ ...r, zone: 4150 }));
    const writerB = new CtnlWriter(execB, { parallelism: 2 });
    stops.push(async () => writerB.close());
    const [, ctnlMs] = await time(() => writerB.write(zoneRows.map((r) => ["A", r] as const)));
    results.conntrackLoadNetlinkMs = ctnlMs;
    await sh(["ip", "netns", "exec", hb, "conntrack", "-D", "-w", "4150"], { check: false, timeoutMs: 120_000 });
    const ctArgs = (r: ConntrackRow, zone: number) =>
      `-p tcp -s ${r.origSrc} -d ${r.origDst} --sport ${r.origSport} --dport ${r.origDport} --state ESTABLISHED -u ASSURED,SEEN_REPLY -t 3000 -w ${zone} -m 5${r.replyDst !== r.origSrc ? ` --src-nat ${r.replyDst}:${r.replyDport}` : ""}`;
    const rPath = join(stB, "conntrack-R.txt");
    await writeFile(rPath, zoneRows.map((r) => `-I ${ctArgs(r, 4151)}`).join("\n") + "\n");
    const [, rMs] = await time(() => sh(["ip", "netns", "exec", hb, "conntrack", "-R", rPath], { timeoutMs: 300_000, check: false }));
    results.conntrackLoadDashRMs = rMs;
    const rCount = await sh(["ip", "netns", "exec", hb, "conntrack", "-C", "-w", "4151"], { check: false });
    results.conntrackLoadDashRLoaded = Number((await sh(["ip", "netns", "exec", hb, "sh", "-c", "conntrack -L -w 4151 2>/dev/null | wc -l"], { check: false, timeoutMs: 120_000 })).stdout.trim()) || 0;
    void rCount;
    await sh(["ip", "netns", "exec", hb, "conntrack", "-D", "-w", "4151"], { check: false, timeoutMs: 120_000 });
    const [, ctListMs] = await time(() => sh(["ip", "netns", "exec", ha, "conntrack", "-L", "-o", "extended", "-w", "11"], { timeoutMs: 120_000 }));
    results.conntrackListMs = ctListMs;
    const db = new OvsdbClient(A.dbSock);
    await db.selectAll({ Interface: ["name"] });
    const [, rpcMs] = await time(async () => {
      for (let i = 0; i < 20; i++) await db.selectAll({ Interface: ["name", "external_ids", "ofport"], Port: ["name", "tag"] });
    });
    db.close();
    results.ovsdbJsonRpcReadMs = rpcMs / 20;
    const [, vsctlMs] = await time(async () => {
      for (let i = 0; i < 20; i++) await A.vsctl(["--format=json", "find", "Interface", `external_ids:vm-id=${VM}`]);
    });
    results.ovsVsctlReadMs = vsctlMs / 20;

    // ---- naive per-entry script on a sample, extrapolated linearly.
    // What an operator would write: one shell script per table, run inside
    // the host's namespace, one conntrack/ovs-ofctl/ovs-appctl process per entry.
    const naive = async (name: string, lines: string[]) => {
      const path = join(stB, `naive-${name}.sh`);
      await writeFile(path, `set -e\n${lines.join("\n")}\n`);
      const [, ms] = await time(() => sh(["ip", "netns", "exec", hb, "sh", path], { timeoutMs: 600_000, env: B.env }));
      return ms;
    };
    const nCt = Math.min(SAMPLE, N_CT);
    const naiveCtMs = await naive("conntrack", zoneRows.slice(0, nCt).map((r) => `conntrack -I ${ctArgs(r, 4152)} 2>/dev/null`));
    const naiveCtLoaded = Number((await sh(["ip", "netns", "exec", hb, "sh", "-c", "conntrack -L -w 4152 2>/dev/null | wc -l"], { check: false })).stdout.trim()) || 0;
    if (naiveCtLoaded !== nCt) throw new Error(`naive conntrack -I loaded ${naiveCtLoaded} of ${nCt} entries`);
    await sh(["ip", "netns", "exec", hb, "conntrack", "-D", "-w", "4152"], { check: false });
    const nFl = Math.min(SAMPLE, N_FLOWS);
    const naiveFlMs = await naive("flows", flowLines.slice(0, nFl).map((l) => `ovs-ofctl --names add-flow ${B.mgmt("br-int")} '${l.replace("in_port=bvh", "in_port=naive0").replace(COOKIE, "0x77")}'`));
    const nFdb = Math.min(SAMPLE, N_FDB);
    const naiveFdbMs = await naive("fdb", Array.from({ length: nFdb }, (_, i) => `ovs-appctl -t ${B.vswitchdCtl} fdb/add br-int naive0 20 ${mac(i + 16)} >/dev/null`));
    results.naiveSampleConntrack = nCt;
    results.naiveSampleFlows = nFl;
    results.naiveSampleFdb = nFdb;
    results.naiveConntrackPerEntryMs = naiveCtMs / nCt;
    results.naiveFlowPerEntryMs = naiveFlMs / nFl;
    results.naiveFdbPerEntryMs = naiveFdbMs / nFdb;
    results.naiveLoadExtrapolatedMs = (naiveCtMs / nCt) * N_CT + (naiveFlMs / nFl) * N_FLOWS + (naiveFdbMs / nFdb) * N_FDB;
    results.speedupVsNaive = results.naiveLoadExtrapolatedMs / results.destLoadMs;
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await lab.cleanup();
  }

  const naiveNote = `naive per-entry script: measured on ${results.naiveSampleConntrack} conntrack, ${results.naiveSampleFlows} flow and ${results.naiveSampleFdb} fdb entries, extrapolated linearly to the full VM`;
  if (JSON_OUT) {
    console.log(JSON.stringify({ conntrack: N_CT, fdb: N_FDB, flows: N_FLOWS, naiveExtrapolated: true, note: naiveNote, ...results }, null, 2));
    return;
  }
  const ms = (v: number | undefined) => (v === undefined ? "-" : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(1)} ms`);
  const table: [string, string][] = [
    [`VM: ${N_CT} conntrack, ${N_FDB} fdb, ${N_FLOWS} flows (read ${results.rowsConntrack}/${results.rowsFdb}/${results.rowsAcls})`, ""],
    ["source: full read (OVSDB + flows + fdb + conntrack)", ms(results.sourceReadMs)],
    ["source: delta read (nothing changed)", ms(results.sourceDeltaReadMs)],
    ["destination: stage (conntrack into the kernel)", ms(results.destStageMs)],
    ["destination: seal (persist the staging area)", ms(results.destSealMs)],
    ["destination: activate (ports, QoS, flow bundle, fdb)", ms(results.destActivateMs)],
    ["destination: total load", ms(results.destLoadMs)],
    ["digest after activation equals the source's", results.digestsEqual ? "yes" : "NO"],
    ["naive script load, extrapolated (see note)", ms(results.naiveLoadExtrapolatedMs)],
    ["  conntrack -I, per entry", ms(results.naiveConntrackPerEntryMs)],
    ["  ovs-ofctl add-flow, per entry", ms(results.naiveFlowPerEntryMs)],
    ["  ovs-appctl fdb/add, per entry", ms(results.naiveFdbPerEntryMs)],
    ["load speedup vs naive", `${results.speedupVsNaive?.toFixed(0)}x`],
    [`reference: ${N_CT} conntrack via netlink helper`, ms(results.conntrackLoadNetlinkMs)],
    [`reference: ${N_CT} conntrack via conntrack -R (${results.conntrackLoadDashRLoaded} loaded)`, ms(results.conntrackLoadDashRMs)],
    [`reference: conntrack -L -w <zone> of ${N_CT}`, ms(results.conntrackListMs)],
    ["reference: OVSDB read, JSON-RPC transact", ms(results.ovsdbJsonRpcReadMs)],
    ["reference: OVSDB read, ovs-vsctl find", ms(results.ovsVsctlReadMs)],
  ];
  const w = Math.max(...table.map(([k]) => k.length));
  for (const [k, v] of table) console.log(`${k.padEnd(w)}  ${v}`);
  console.log(`\nnote: ${naiveNote}.`);
}

await main().catch((err: unknown) => {
  console.error(`bench/dataplane: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});
