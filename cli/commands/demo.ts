/**
 * `netmig demo`: a local nats-server, a coordinator and two agents on the
 * memory backend, all on this machine; a VM with realistic state and live
 * churn is migrated A→B and back, through the gRPC API as an orchestrator
 * would. Everything is cleaned up at the end.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { ListHostsResponse__Output } from "../../proto/gen/netmig/v1/ListHostsResponse.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import type { VmStateSummary__Output } from "../../proto/gen/netmig/v1/VmStateSummary.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { createLogger } from "../../protocol/log.js";
import { int, type Flags } from "../args.js";
import { createClient, unaryCall } from "../client.js";
import { runAgent, runCoordinator } from "../daemons.js";
import { startNatsServer } from "../local-nats.js";
import { bytes, freezeWindowMs, LiveLine, ms, progressLine } from "../render.js";
import { onShutdown } from "../signals.js";
import { follow } from "./migrate.js";

export const demoFlags = { conntrack: { type: "string" }, fdb: { type: "string" }, acls: { type: "string" }, churn: { type: "string" } } as const;

const say = (s = "") => console.log(s);

export async function demoCommand(flags: Flags): Promise<number> {
  const conntrack = int(flags, "conntrack", 20_000, 0, 2_000_000);
  const fdb = int(flags, "fdb", 4000, 0, 1_000_000);
  const acls = int(flags, "acls", 500, 0, 100_000);
  const churn = int(flags, "churn", Math.max(10, Math.round(conntrack / 100)), 0, 10_000_000);
  if (!process.env.NETMIG_LOG_LEVEL) process.env.NETMIG_LOG_LEVEL = "warn";
  const dir = mkdtempSync(join(tmpdir(), "netmig-demo-"));
  const cleanup: (() => Promise<void>)[] = [];
  const shutdown = async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    cleanup.length = 0;
    rmSync(dir, { recursive: true, force: true });
  };
  onShutdown(shutdown);
  try {
    say("netmig demo: moving a VM's network state between two hosts, with the VM's traffic still changing it\n");
    const nats = await startNatsServer({ jetstream: true });
    cleanup.push(() => nats.stop());
    say(`  nats-server     ${nats.url} (pid ${nats.pid}, JetStream on)`);
    const coord = await runCoordinator({ id: "coord-demo", natsUrl: nats.url, grpcAddress: "127.0.0.1:0", logger: createLogger("coordinator") });
    cleanup.push(() => coord.close());
    say(`  coordinator     gRPC ${coord.grpc.address}`);
    for (const [hostId, firstZone] of [["host-a", 10], ["host-b", 500]] as const) {
      const stateDir = join(dir, hostId);
      const a = await runAgent({ hostId, natsUrl: nats.url, stateDir, heartbeatMs: 250, backend: { kind: "memory", memory: { stateDir, firstZone, churn: { rowsPerSec: churn } } } });
      cleanup.push(() => a.close());
      say(`  agent           ${hostId} (memory backend, conntrack zones from ${firstZone}, churn ${churn} entries/s)`);
    }
    const client = createClient({ address: coord.grpc.address });
    cleanup.push(async () => client.close());
    await waitForHosts(client, 2);

    const vmId = "vm-web-01";
    const state = generateVmState(vmId, { conntrack, fdb, acls, ports: 2, neighbours: 128 });
    const doc = toDocument(state);
    await unaryCall(client, "ImportVmState", { host_id: "host-a", document: Buffer.from(JSON.stringify(doc)) }, 120_000);
    say(`\nVM ${vmId} seeded on host-a: ${state.tables.ports.length} ports (VLAN ${state.tables.ports.map((p) => p.vlanTag).join(", ")}, one VXLAN tunnel), ` +
      `${acls} ACLs, QoS, a SPAN mirror, sFlow, ${fdb.toLocaleString("en")} MAC entries, ${conntrack.toLocaleString("en")} conntrack entries (some NATed)`);
    await show(client, vmId);

    let ok = true;
    for (const [from, to] of [["host-a", "host-b"], ["host-b", "host-a"]] as const) {
      say(`\nmigrating ${vmId}: ${from} → ${to}`);
      const m = await migrate(client, vmId, to);
      ok = ok && m.phase === "DONE" && !!m.progress?.src_digest && m.progress.src_digest === m.progress.dst_digest;
      await show(client, vmId);
    }
    say(ok ? "\ndemo finished: both migrations DONE, digests matched on both sides." : "\ndemo finished with a problem (see above).");
    return ok ? 0 : 1;
  } finally {
    await shutdown();
  }
}

async function waitForHosts(client: MigrationServiceClient, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const res = await unaryCall<object, ListHostsResponse__Output>(client, "ListHosts", {});
    if (res.hosts.filter((h) => h.alive).length >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${res.hosts.length} of ${n} agents reported within 10 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function show(client: MigrationServiceClient, vmId: string): Promise<void> {
  const s = await unaryCall<object, VmStateSummary__Output>(client, "GetVmState", { vm_id: vmId });
  const counts = Object.entries(s.counts).filter(([, v]) => Number(v) > 0).map(([k, v]) => `${k} ${Number(v).toLocaleString("en")}`).join(", ");
  say(`  now on ${s.owner_host} (epoch ${s.epoch}): ${counts}`);
}

async function migrate(client: MigrationServiceClient, vmId: string, to: string): Promise<Migration__Output> {
  const started = await unaryCall<object, Migration__Output>(client, "StartMigration", { vm_id: vmId, dst_host: to });
  const line = new LiveLine();
  let lastPhase = "";
  const m = await follow(client, started.migration_id, (e) => {
    if (e.phase !== lastPhase && lastPhase) line.done();
    lastPhase = e.phase;
    line.update(`  ${progressLine(e.phase, e.progress)}  ${e.message}`);
  });
  line.done();
  const p = m.progress!;
  say(`  ${m.phase}: ${Number(p.rows_sent).toLocaleString("en")} entries, ${bytes(Number(p.bytes_sent))} moved in ${p.round + 1} rounds; ` +
    `final delta ${Number(p.final_rows).toLocaleString("en")} entries`);
  say(`  freeze window ${ms(freezeWindowMs(p))} (state frozen on the source → live on the destination; ${ms(p.freeze_window_ms)} as the coordinator saw it); total ${ms(p.total_ms)}`);
  say(`  digest: source ${p.src_digest} / destination ${p.dst_digest} ${p.src_digest === p.dst_digest ? "✓ identical" : "✗ DIFFERENT"}`);
  return m;
}
