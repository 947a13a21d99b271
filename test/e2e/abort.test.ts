import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { unaryCall } from "../../cli/client.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { Cluster } from "../harness/cluster.js";
import { waitFor } from "../harness/wait.js";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"] });
});
after(async () => {
  await c?.close();
});

async function seed(vmId: string, conntrack = 10_000): Promise<string> {
  const state = generateVmState(vmId, { conntrack, seed: vmId.length });
  await c.importVm("host-a", state);
  return StateDigest.of(state.tables).toString();
}

async function assertWholeOnSource(vmId: string, digest: string): Promise<void> {
  const inv = await c.inventory("host-a");
  const v = inv.vms.find((x) => x.vmId === vmId);
  assert.equal(v?.status, "active", "the source is thawed");
  assert.equal(v?.digest, digest, "the source's state is unchanged");
  const onB = (await c.inventory("host-b")).vms.filter((x) => x.vmId === vmId);
  assert.deepEqual(onB, [], "the destination holds nothing of the VM");
  // Thawed means writable again.
  await c.write("host-a", vmId, { upserts: { counters: [{ ifaceId: `${vmId}-if0`, rxPackets: 1, rxBytes: 1, txPackets: 1, txBytes: 1 }] } });
}

test("abort - destination agent killed mid-pre-copy: ABORTED, source thawed and unchanged, nothing staged after the destination restarts", async () => {
  const digest = await seed("vm-abort-1");
  const m = await unaryCall<object, Migration__Output>(c.client, "PrepareMigration", { vm_id: "vm-abort-1", dst_host: "host-b" });
  await waitFor(async () => {
    const cur = await unaryCall<object, Migration__Output>(c.client, "GetMigration", { migration_id: m.migration_id });
    return cur.phase === "PRECOPY" && Number(cur.progress?.rows_sent) > 0;
  }, { what: "pre-copy under way" });
  assert.equal(await c.vmStatus("host-b", "vm-abort-1"), "staged");
  await c.agents.get("host-b")!.kill();
  const ended = await c.waitForPhase(m.migration_id, ["ABORTED", "DONE"], 60_000);
  assert.equal(ended.phase, "ABORTED", c.logs());
  assert.ok(ended.error?.message, "the abort says why");
  await c.startAgent("host-b");
  await assertWholeOnSource("vm-abort-1", digest);
});

test("abort - freeze budget exceeded: ABORTED with FREEZE_BUDGET_EXCEEDED, source thawed and unchanged", async () => {
  const digest = await seed("vm-abort-2", 50_000);
  const m = await c.migrate("vm-abort-2", "host-b", { stop_and_copy: true, freeze_budget_ms: 1 });
  assert.equal(m.phase, "ABORTED");
  assert.equal(m.error?.code, "FREEZE_BUDGET_EXCEEDED", m.error?.message);
  assert.match(m.error!.message, /freeze budget/);
  await assertWholeOnSource("vm-abort-2", digest);
});

test("abort - AbortMigration by VM id during pre-copy: ABORTED, and the VM can migrate again", async () => {
  const digest = await seed("vm-abort-3");
  await unaryCall(c.client, "PrepareMigration", { vm_id: "vm-abort-3", dst_host: "host-b" });
  const aborted = await unaryCall<object, Migration__Output>(c.client, "AbortMigration", { vm_id: "vm-abort-3", reason: "test" });
  assert.equal(aborted.phase, "ABORTED");
  await assertWholeOnSource("vm-abort-3", digest);
  const again = await c.migrate("vm-abort-3", "host-b");
  assert.equal(again.phase, "DONE", again.error?.message);
});
