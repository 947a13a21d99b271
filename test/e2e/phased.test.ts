import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { ServiceError } from "@grpc/grpc-js";
import { unaryCall } from "../../cli/client.js";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { StateDigest } from "../../protocol/state/digest.js";
import type { VmState } from "../../protocol/state/model.js";
import { Cluster } from "../harness/cluster.js";
import { waitFor } from "../harness/wait.js";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b", "host-c"] });
});
after(async () => {
  await c?.close();
});

const rpc = (name: keyof MigrationServiceClient & string, req: object, timeoutMs = 30_000) => unaryCall<object, Migration__Output>(c.client, name, req, timeoutMs);

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as ServiceError).metadata?.get("netmig-code")[0]?.toString() ?? `grpc ${(err as ServiceError).code}`;
  }
  assert.fail("the call was expected to fail");
}

async function seed(vmId: string, conntrack = 5_000): Promise<VmState> {
  const state = generateVmState(vmId, { conntrack, seed: vmId.length });
  await c.importVm("host-a", state);
  return state;
}

test("phased - PrepareMigration is idempotent by VM and destination, also when calls race; another destination is refused", async () => {
  await seed("vm-phased-1");
  const [a, b, d] = await Promise.all([
    rpc("PrepareMigration", { vm_id: "vm-phased-1", dst_host: "host-b" }),
    rpc("PrepareMigration", { vm_id: "vm-phased-1", dst_host: "host-b" }),
    rpc("PrepareMigration", { vm_id: "vm-phased-1", dst_host: "host-b" }),
  ]);
  assert.equal(a.mode, "phased");
  assert.equal(a.src_host, "host-a", "the source comes from VM ownership");
  assert.equal(b.migration_id, a.migration_id, "a racing retry gets the same migration");
  assert.equal(d.migration_id, a.migration_id);
  const again = await rpc("PrepareMigration", { vm_id: "vm-phased-1", dst_host: "host-b" });
  assert.equal(again.migration_id, a.migration_id, "a later retry gets the same migration");
  assert.equal(await refusal(rpc("PrepareMigration", { vm_id: "vm-phased-1", dst_host: "host-c" })), "VM_MIGRATING");
  assert.equal(await refusal(rpc("PrepareMigration", { vm_id: "vm-phased-1", dst_host: "host-b", src_host: "host-c" })), "BAD_REQUEST", "a wrong source is refused, not answered with the migration");
  const list = await unaryCall<object, { migrations: Migration__Output[] }>(c.client, "ListMigrations", { vm_id: "vm-phased-1" });
  assert.equal(list.migrations.length, 1, "one migration was created");
  await rpc("AbortMigration", { migration_id: a.migration_id, reason: "test over" });
});

test("phased - deltas keep flowing between Prepare and Switchover, so the final delta holds only what changed since the last round", async () => {
  const state = await seed("vm-phased-2");
  const m = await rpc("PrepareMigration", { vm_id: "vm-phased-2", dst_host: "host-b" });
  const settled = await waitFor(async () => {
    const cur = await rpc("GetMigration", { migration_id: m.migration_id });
    return cur.phase === "PRECOPY" && Number(cur.progress!.rows_sent) >= 5_000 ? cur : null;
  }, { what: "the full copy" });
  assert.equal(await c.vmStatus("host-b", "vm-phased-2"), "staged");

  // Well after pre-copy converged, the source changes; nothing asks for a round, yet the changes travel.
  const changed = state.tables.conntrack.slice(0, 1_500).map((r, i) => ({ ...r, timeoutSec: 5_000 + i }));
  await c.write("host-a", "vm-phased-2", { upserts: { conntrack: changed } });
  const synced = await waitFor(async () => {
    const cur = await rpc("GetMigration", { migration_id: m.migration_id });
    return Number(cur.progress!.rows_sent) >= Number(settled.progress!.rows_sent) + 1_500 ? cur : null;
  }, { what: "the change to reach the destination before any switchover" });
  assert.equal(synced.phase, "PRECOPY", "still waiting for Switchover");

  // Switchover by VM and destination, twice: the second returns the same outcome.
  const sw = await rpc("Switchover", { vm_id: "vm-phased-2", dst_host: "host-b", reason: "test" });
  assert.equal(sw.phase, "ACTIVATED", sw.error?.message);
  assert.equal(sw.migration_id, m.migration_id);
  assert.ok(Number(sw.progress!.final_rows) < 1_500, `final delta of ${sw.progress!.final_rows} rows: the changes had already moved`);
  assert.equal(sw.progress!.dst_digest, sw.progress!.src_digest);
  assert.equal((await rpc("Switchover", { vm_id: "vm-phased-2", dst_host: "host-b" })).phase, "ACTIVATED");
  assert.equal(await c.vmStatus("host-a", "vm-phased-2"), "frozen", "the source keeps its frozen copy until Complete");
  assert.equal(await c.vmStatus("host-b", "vm-phased-2"), "active");

  // An abort after the commit is refused; Complete finishes, and is idempotent.
  assert.equal(await refusal(rpc("AbortMigration", { vm_id: "vm-phased-2", dst_host: "host-b" })), "WRONG_PHASE");
  const done = await rpc("CompleteMigration", { vm_id: "vm-phased-2", dst_host: "host-b" });
  assert.equal(done.phase, "DONE", done.error?.message);
  assert.equal((await rpc("CompleteMigration", { migration_id: m.migration_id })).phase, "DONE");
  assert.equal((await rpc("CompleteMigration", { vm_id: "vm-phased-2", dst_host: "host-b" })).phase, "DONE");
  assert.equal(await c.vmStatus("host-a", "vm-phased-2"), "released");
  const onB = await c.exportVm("vm-phased-2");
  assert.equal(onB.host_id, "host-b");
  assert.equal(onB.doc.digest, done.progress!.src_digest);
});

test("phased - CompleteMigration without a Switchover runs it first", async () => {
  const state = await seed("vm-phased-3");
  const m = await rpc("PrepareMigration", { vm_id: "vm-phased-3", dst_host: "host-b" });
  const done = await rpc("CompleteMigration", { vm_id: "vm-phased-3" });
  assert.equal(done.migration_id, m.migration_id);
  assert.equal(done.phase, "DONE", done.error?.message);
  const phases = done.history.map((h) => h.phase);
  assert.deepEqual(phases.filter((p) => ["FROZEN", "COMMITTED", "ACTIVATED", "RELEASED", "DONE"].includes(p)), ["FROZEN", "COMMITTED", "ACTIVATED", "RELEASED", "DONE"]);
  assert.equal((await c.exportVm("vm-phased-3")).doc.digest, StateDigest.of(state.tables).toString());
});

test("phased - AbortMigration by VM and destination is idempotent and leaves the source whole; names that do not match are refused", async () => {
  const state = await seed("vm-phased-4");
  const m = await rpc("PrepareMigration", { vm_id: "vm-phased-4", dst_host: "host-b" });
  assert.equal(await refusal(rpc("AbortMigration", { vm_id: "vm-phased-4", dst_host: "host-c" })), "UNKNOWN_MIGRATION", "no migration of the VM to host-c");
  assert.equal(await refusal(rpc("AbortMigration", { migration_id: m.migration_id, vm_id: "vm-phased-1" })), "BAD_REQUEST", "id and VM must agree");
  assert.equal(await refusal(rpc("Switchover", { migration_id: m.migration_id, dst_host: "host-c" })), "BAD_REQUEST", "id and destination must agree");
  const first = await rpc("AbortMigration", { vm_id: "vm-phased-4", dst_host: "host-b", reason: "libvirt release end failed" });
  assert.equal(first.phase, "ABORTED");
  assert.equal(first.migration_id, m.migration_id);
  const second = await rpc("AbortMigration", { vm_id: "vm-phased-4", dst_host: "host-b" });
  assert.equal(second.phase, "ABORTED");
  assert.equal(second.migration_id, m.migration_id);
  const inv = (await c.inventory("host-a")).vms.find((v) => v.vmId === "vm-phased-4");
  assert.equal(inv?.status, "active");
  assert.equal(inv?.digest, StateDigest.of(state.tables).toString());
  assert.deepEqual((await c.inventory("host-b")).vms.filter((v) => v.vmId === "vm-phased-4"), []);
  // Switchover and Complete of an aborted migration report it; they do not restart it.
  assert.equal((await rpc("Switchover", { migration_id: m.migration_id })).phase, "ABORTED");
  assert.equal((await rpc("CompleteMigration", { vm_id: "vm-phased-4", dst_host: "host-b" })).phase, "ABORTED");
});
