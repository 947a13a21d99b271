import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { ServiceError } from "@grpc/grpc-js";
import { unaryCall } from "../../cli/client.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"] });
});
after(async () => {
  await c?.close();
});

async function refusal(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: string; message: string };
  }
  assert.fail("expected the call to be refused");
}

test("concurrency - concurrent StartMigration for one VM: exactly one runs, the others get a clear error", async () => {
  await c.importVm("host-a", generateVmState("vm-conc", { conntrack: 20_000 }));
  const calls = Array.from({ length: 5 }, () => unaryCall<object, Migration__Output>(c.client, "StartMigration", { vm_id: "vm-conc", dst_host: "host-b" }));
  const results = await Promise.allSettled(calls);
  const ok = results.filter((r): r is PromiseFulfilledResult<Migration__Output> => r.status === "fulfilled");
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  assert.equal(ok.length, 1, `exactly one started: ${failed.map((f) => (f.reason as Error).message).join("; ")}`);
  for (const f of failed) {
    const e = f.reason as ServiceError;
    assert.equal(e.code, 6 /* ALREADY_EXISTS */, e.message);
    assert.match(e.details, /vm-conc is already migrating/);
  }
  const done = await c.waitForPhase(ok[0]!.value.migration_id, ["DONE", "ABORTED"]);
  assert.equal(done.phase, "DONE");
  const migrations = await unaryCall<object, { migrations: Migration__Output[] }>(c.client, "ListMigrations", { vm_id: "vm-conc" });
  assert.equal(migrations.migrations.length, 1, "the losers left no records");
});

test("fencing - a command with a stale epoch is refused, also after the agent restarts", async () => {
  await c.importVm("host-a", generateVmState("vm-fence", { conntrack: 100 }));
  const m = await c.migrate("vm-fence", "host-b");
  assert.equal(m.phase, "DONE");
  const old = Number(m.epoch);
  // The destination now owns the VM at epoch old + 1; the source keeps a tombstone at old + 1.
  const stale = await refusal(c.agentCall("host-b", "freeze", { migrationId: m.migration_id, vmId: "vm-fence", epoch: old }, {}));
  assert.equal(stale.code, "STALE_EPOCH");
  assert.match(stale.message, new RegExp(`epoch ${old}.*seen epoch ${old + 1}`));
  const onSource = await refusal(c.agentCall("host-a", "activate", { migrationId: m.migration_id, vmId: "vm-fence", epoch: old }, {}));
  assert.equal(onSource.code, "STALE_EPOCH");
  await c.agents.get("host-a")!.kill();
  await c.startAgent("host-a");
  const afterRestart = await refusal(c.agentCall("host-a", "prepare", { migrationId: "m-stale", vmId: "vm-fence", epoch: old }, { srcHostId: "host-b" }));
  assert.equal(afterRestart.code, "STALE_EPOCH", "epochs survive an agent restart");
  assert.equal(await c.vmStatus("host-b", "vm-fence"), "active", "refused commands changed nothing");
});

test("freeze - a config change to a frozen VM is refused with a clear 'VM is migrating' error", async () => {
  await c.importVm("host-a", generateVmState("vm-frozen", { conntrack: 100 }));
  const epoch = (await c.inventory("host-a")).vms.find((v) => v.vmId === "vm-frozen")!.epoch;
  await c.agentCall("host-a", "freeze", { migrationId: "m-manual", vmId: "vm-frozen", epoch }, {});
  const row = { ifaceId: "vm-frozen-if0", rxPackets: 1, rxBytes: 2, txPackets: 3, txBytes: 4 };
  const e = await refusal(c.write("host-a", "vm-frozen", { upserts: { counters: [row] } }));
  assert.equal(e.code, "VM_MIGRATING");
  assert.match(e.message, /VM vm-frozen is migrating/);
  // A thaw from another migration (one that lost a race for the VM, say) leaves the freeze in place.
  await c.agentCall("host-a", "thaw", { migrationId: "m-other", vmId: "vm-frozen", epoch }, {});
  assert.equal(await c.vmStatus("host-a", "vm-frozen"), "frozen", "frozen by m-manual, not m-other");
  assert.equal((await refusal(c.write("host-a", "vm-frozen", { upserts: { counters: [row] } }))).code, "VM_MIGRATING");
  await c.agentCall("host-a", "thaw", { migrationId: "m-manual", vmId: "vm-frozen", epoch }, {});
  assert.equal(await c.vmStatus("host-a", "vm-frozen"), "active");
  await c.write("host-a", "vm-frozen", { upserts: { counters: [row] } });
});
