// The docker-compose topology (docker-compose.yml) without Docker: every
// service in its own network namespace with the compose file's address on
// 198.18.0.0/24, joined by one bridge in a lab namespace — a 3-node NATS
// cluster with JetStream, a coordinator (KV with 3 replicas), agents on
// host-a, host-b and host-c, and the demo job's namespace — as real
// processes. Nothing is added to the root namespace: the test reaches the
// coordinator and NATS through a forwarder in the demo namespace. The test
// runs the compose demo job (`netmig scenario`) in its namespace, and
// partitions host-b mid-migration.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "nats";
import { createClient, unaryCall } from "../../cli/client.js";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import type { ListHostsResponse__Output } from "../../proto/gen/netmig/v1/ListHostsResponse.js";
import type { VmStateSummary__Output } from "../../proto/gen/netmig/v1/VmStateSummary.js";
import type { InventoryReply } from "../../protocol/agent-api.js";
import { encodeBlock } from "../../protocol/codec/columnar.js";
import { call } from "../../protocol/rpc.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { subjects } from "../../protocol/subjects.js";
import { netnsSkipReason, startNatsCluster, Topology } from "../harness/topology.js";
import { waitFor, withTimeout } from "../harness/wait.js";

/** The compose file's services and addresses (docker-compose.yml, network "netmig"). */
const NATS = [{ name: "nats-1", hostOctet: 11 }, { name: "nats-2", hostOctet: 12 }, { name: "nats-3", hostOctet: 13 }];
const COORDINATOR = { name: "coordinator", hostOctet: 20 };
const AGENTS = [{ name: "agent-a", hostOctet: 31, host: "host-a" }, { name: "agent-b", hostOctet: 32, host: "host-b" }, { name: "agent-c", hostOctet: 33, host: "host-c" }];
const DEMO = { name: "demo", hostOctet: 40 };
const HOSTS = AGENTS.map((a) => a.host);
const GRPC_PORT = 50051;

const skip = await netnsSkipReason();
let topo: Topology | null = null;
let client: MigrationServiceClient;
let nc: NatsConnection;
/** The coordinator's address as the demo job sees it. */
let coordinatorAddress = "";

before(async () => {
  if (skip) return;
  topo = await Topology.create({ nodes: [...NATS, COORDINATOR, ...AGENTS, DEMO] });
  const nats = await startNatsCluster(topo, NATS.map((n) => n.name), { via: DEMO.name });
  coordinatorAddress = `${topo.node(COORDINATOR.name).ip}:${GRPC_PORT}`;
  const coord = topo.netmig(COORDINATOR.name, "coordinator", ["coordinator", "--id", "coord-1", "--nats", nats.urls, "--grpc", `0.0.0.0:${GRPC_PORT}`, "--replicas", "3"]);
  const [grpcLocal, natsLocal] = await topo.expose(DEMO.name, [{ node: COORDINATOR.name, port: GRPC_PORT }, { node: NATS[0]!.name, port: 4222 }]);
  client = createClient({ address: grpcLocal });
  await waitFor(async () => {
    if (!coord.running) throw new Error(`coordinator exited:\n${coord.log()}`);
    return unaryCall(client, "ListHosts", {}, 1000).then(() => true, () => false);
  }, { what: "coordinator gRPC", timeoutMs: 20_000, intervalMs: 100 });
  for (const a of AGENTS) {
    topo.netmig(a.name, `agent ${a.host}`, ["agent", "--host-id", a.host, "--nats", nats.urls, "--backend", "memory", "--state-dir", topo.subdir(`state-${a.host}`), "--heartbeat-ms", "500"]);
  }
  await waitForAlive(HOSTS, 20_000);
  // One server, no cluster discovery: the other servers' addresses are not reachable from here.
  nc = await connect({ servers: natsLocal!, ignoreClusterUpdates: true, maxReconnectAttempts: 10, reconnectTimeWait: 250 });
});

after(async () => {
  client?.close();
  await nc?.close().catch(() => undefined);
  if (process.env.DEBUG_TOPO) (await import("node:fs")).writeFileSync(process.env.DEBUG_TOPO, topo?.logs(400_000) ?? "");
  await topo?.close();
});

/** Fails with every process's log, so a red test says what happened. */
function check(cond: unknown, msg: string): asserts cond {
  assert.ok(cond, `${msg}\n${topo?.logs()}`);
}

async function waitForAlive(hosts: string[], timeoutMs: number): Promise<void> {
  await waitFor(async () => {
    const res = await unaryCall<object, ListHostsResponse__Output>(client, "ListHosts", {}, 2000);
    return hosts.every((id) => res.hosts.some((h) => h.host_id === id && h.alive));
  }, { what: `hosts ${hosts.join(", ")} alive`, timeoutMs, intervalMs: 200 });
}

async function seed(host: string, vmId: string, conntrack: number): Promise<string> {
  const state = generateVmState(vmId, { conntrack, seed: 7 });
  await unaryCall(client, "ImportVmState", { host_id: host, document: Buffer.from(JSON.stringify(toDocument(state))) }, 120_000);
  return StateDigest.of(state.tables).toString();
}

const vmState = (vmId: string) => unaryCall<object, VmStateSummary__Output>(client, "GetVmState", { vm_id: vmId }, 10_000);
const getMigration = (id: string) => unaryCall<object, Migration__Output>(client, "GetMigration", { migration_id: id }, 2000);

function inventory(host: string): Promise<InventoryReply> {
  return call<InventoryReply>(nc, subjects.agentOp(host, "inventory"), "inventory", { migrationId: "", vmId: "", epoch: 0 }, {}, 2000);
}

function assertDone(m: Migration__Output): void {
  check(m.phase === "DONE", `migration ${m.migration_id} ended ${m.phase}: ${m.error?.code} ${m.error?.message}`);
  check(m.progress?.src_digest && m.progress.src_digest === m.progress.dst_digest, `digests differ: ${m.progress?.src_digest} / ${m.progress?.dst_digest}`);
}

const vmId = (name: string) => `vm-${name}`;

test("compose topology - migration host-a → host-b across namespaces reaches DONE with matching digests", { skip: skip ?? false, timeout: 120_000 }, async () => {
  const vm = vmId("move");
  const digest = await seed("host-a", vm, 20_000);
  const m = await unaryCall<object, Migration__Output>(client, "StartMigration", { vm_id: vm, dst_host: "host-b", wait: true }, 120_000);
  assertDone(m);
  assert.equal(m.progress!.dst_digest, digest, "the destination holds exactly what was seeded");
  const s = await vmState(vm);
  assert.equal(s.owner_host, "host-b");
  assert.equal(s.status, "active");
  assert.equal(s.digest, digest);
  assert.deepEqual((await inventory("host-a")).vms.filter((v) => v.vmId === vm && v.status !== "released"), [], "the source released the VM");
});

/** Runs the compose file's demo job in the demo namespace; resolves with its exit code and output. */
async function scenario(args: string[]): Promise<{ code: number | null; output: string }> {
  const p = topo!.netmig(DEMO.name, `scenario ${args.join(" ")}`, ["scenario", "--coordinator", coordinatorAddress, ...args], { NETMIG_LOG_LEVEL: "warn" });
  const code = await withTimeout(p.exited, { what: "netmig scenario to exit", timeoutMs: 90_000 }).catch(async (err: Error) => {
    await p.kill();
    throw new Error(`${err.message}\n${p.log()}`);
  });
  return { code, output: p.log() };
}

test("compose topology - the demo job (netmig scenario) seeds a VM and migrates it host-a → host-b → host-c, then continues from where it is", { skip: skip ?? false, timeout: 180_000 }, async () => {
  const vm = vmId("demo");
  const first = await scenario(["--path", HOSTS.join(","), "--vm", vm, "--conntrack", "5000", "--wait-ms", "20000"]);
  check(first.code === 0, `scenario exited ${first.code}:\n${first.output}`);
  assert.match(first.output, new RegExp(`VM ${vm} imported on host-a`));
  assert.equal(first.output.match(/phase +DONE/g)?.length, 2, first.output);
  assert.equal(first.output.match(/✓ match/g)?.length, 2, first.output);
  assert.match(first.output, /scenario finished: 2 migration\(s\) DONE/);
  assert.equal((await vmState(vm)).owner_host, "host-c");
  // A second run finds the VM where the first left it and takes it along the new path.
  const again = await scenario(["--path", "host-c,host-a", "--vm", vm, "--wait-ms", "20000"]);
  check(again.code === 0, `second scenario exited ${again.code}:\n${again.output}`);
  assert.match(again.output, /already managed by netmig, on host-c/);
  assert.equal((await vmState(vm)).owner_host, "host-a");
});

test("compose topology - the demo job gives up with a clear error when a host never reports", { skip: skip ?? false, timeout: 60_000 }, async () => {
  const r = await scenario(["--path", "host-a,host-z", "--vm", vmId("nohost"), "--wait-ms", "1500"]);
  assert.equal(r.code, 1, r.output);
  assert.match(r.output, /gave up after 1500 ms \(--wait-ms\): waiting for host-z to report \(no agent with that --host-id has been seen\)/);
  await assert.rejects(vmState(vmId("nohost")), "nothing was seeded");
});

test("compose topology - partition: host-b's link cut mid-pre-copy ends ABORTED with host-a unchanged; after the link returns the retry is DONE", { skip: skip ?? false, timeout: 240_000 }, async (t) => {
  const t0 = performance.now();
  const vm = vmId("part");
  const digest = await seed("host-a", vm, 50_000);
  // Phased: pre-copy keeps sending deltas until Switchover, so the migration
  // is still in pre-copy, with host-b holding a staged copy, when the link goes.
  const m = await unaryCall<object, Migration__Output>(client, "PrepareMigration", { vm_id: vm, dst_host: "host-b" });
  const copied = await waitFor(async () => {
    const cur = await getMigration(m.migration_id);
    return Number(cur.progress?.rows_sent ?? 0) > 0 || !["PENDING", "PRECOPY"].includes(cur.phase) ? cur : null;
  }, { what: "the full copy to host-b acknowledged", timeoutMs: 60_000, intervalMs: 50 });
  check(copied.phase === "PRECOPY", `migration left pre-copy before the cut: ${copied.phase} ${copied.error?.message}`);
  const staged = (await inventory("host-b")).vms.find((v) => v.vmId === vm);
  check(staged && staged.status !== "active", `host-b should hold a staged copy, has ${JSON.stringify(staged)}`);
  await topo!.linkDown("agent-b");
  const cutAt = performance.now();
  const atCut = await getMigration(m.migration_id);
  check(atCut.phase === "PRECOPY", `the cut came during pre-copy (phase ${atCut.phase})`);
  t.diagnostic(`link cut ${((cutAt - t0) / 1000).toFixed(1)} s in, pre-copy round ${atCut.progress?.round}, ${atCut.progress?.rows_sent} rows acknowledged`);

  let ended: Migration__Output;
  try {
    ended = await waitFor(async () => {
      const cur = await getMigration(m.migration_id);
      return ["ABORTED", "DONE", "IN_DOUBT"].includes(cur.phase) ? cur : null;
    }, { what: `migration ${m.migration_id} to end after the partition`, timeoutMs: 120_000, intervalMs: 250 });
  } catch (err) {
    const cur = await getMigration(m.migration_id).catch(() => null);
    throw new Error(`${(err as Error).message}; it is still ${cur?.phase} (${cur?.history.map((h) => `${h.phase}: ${h.note}`).join(" | ")})\n${topo!.logs()}`);
  }
  t.diagnostic(`ended ${ended.phase} ${((performance.now() - cutAt) / 1000).toFixed(1)} s after the cut: ${ended.error?.code} ${ended.error?.message}`);
  t.diagnostic(`history: ${ended.history.map((h) => `${h.phase}${h.note ? ` (${h.note})` : ""}`).join(" → ")}`);
  check(ended.phase === "ABORTED", `expected ABORTED, got ${ended.phase}`);
  assert.ok(ended.error?.message, "the abort says why");

  const s = await vmState(vm);
  assert.equal(s.owner_host, "host-a");
  assert.equal(s.status, "active", "the source is thawed");
  assert.equal(s.digest, digest, "the source's state is unchanged");
  // Thawed means writable: a write lands and moves the digest on.
  const w = await call<{ gen: number; digest: string }>(nc, subjects.agentOp("host-a", "write"), "write", { migrationId: "", vmId: vm, epoch: 0 }, {
    upserts: [encodeBlock("counters", [{ ifaceId: `${vm}-if0`, rxPackets: 1, rxBytes: 64, txPackets: 1, txBytes: 64 }])], deletes: {},
  }, 5000);

  await topo!.linkUp("agent-b");
  const upAt = performance.now();
  await waitForAlive(["host-b"], 90_000);
  t.diagnostic(`host-b alive again ${((performance.now() - upAt) / 1000).toFixed(1)} s after the link came back`);
  // The coordinator reconciles host-b: the copy staged for the aborted migration is dropped.
  await waitFor(async () => !(await inventory("host-b")).vms.some((v) => v.vmId === vm), { what: "host-b to drop the staged copy", timeoutMs: 30_000, intervalMs: 250 });

  const retry = await unaryCall<object, Migration__Output>(client, "StartMigration", { vm_id: vm, dst_host: "host-b", wait: true }, 120_000);
  assertDone(retry);
  assert.equal(retry.progress!.dst_digest, w.digest, "host-b holds host-a's state, including the write after the abort");
  assert.equal((await vmState(vm)).owner_host, "host-b");
  t.diagnostic(`retry DONE; freeze window ${retry.progress!.freeze_window_ms.toFixed(1)} ms; whole test ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
