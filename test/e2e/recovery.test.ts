import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { unaryCall } from "../../cli/client.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { Cluster } from "../harness/cluster.js";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"] });
});
after(async () => {
  await c?.close();
});

/** Starts a migration on a coordinator that kills itself at `point`, then brings up a fresh one. */
async function crashAt(point: string, vmId: string): Promise<{ id: string; digest: string }> {
  const state = generateVmState(vmId, { conntrack: 10_000, seed: 11 });
  await c.importVm("host-a", state);
  await c.coordinator!.stop();
  await c.startCoordinator({ NETMIG_FAULT_CRASH_AT: point });
  const m = await unaryCall<object, Migration__Output>(c.client, "StartMigration", { vm_id: vmId, dst_host: "host-b" });
  const code = await c.coordinator!.exited;
  assert.notEqual(code, 0, "the coordinator died at the fault point");
  await c.startCoordinator();
  return { id: m.migration_id, digest: StateDigest.of(state.tables).toString() };
}

async function hostsHolding(vmId: string): Promise<string[]> {
  const out: string[] = [];
  for (const h of ["host-a", "host-b"]) {
    const s = await c.vmStatus(h, vmId);
    if (s === "active" || s === "frozen" || s === "staged") out.push(`${h}:${s}`);
  }
  return out;
}

test("recovery - coordinator killed after recording FROZEN, before the freeze command: the next coordinator aborts", async () => {
  const { id, digest } = await crashAt("after:FROZEN", "vm-rec-1");
  const m = await c.waitForPhase(id, ["ABORTED", "DONE"]);
  assert.equal(m.phase, "ABORTED", c.logs());
  assert.deepEqual(await hostsHolding("vm-rec-1"), ["host-a:active"], "state whole on the source only");
  const inv = await c.inventory("host-a");
  assert.equal(inv.vms.find((v) => v.vmId === "vm-rec-1")?.digest, digest);
  const s = await unaryCall<object, { owner_host: string; migration_id: string }>(c.client, "GetVmState", { vm_id: "vm-rec-1" });
  assert.equal(s.owner_host, "host-a");
  assert.equal(s.migration_id, "", "the VM is unlocked");
});

test("recovery - coordinator killed just after commit: the next coordinator rolls forward to DONE", async () => {
  const { id, digest } = await crashAt("after:COMMITTED", "vm-rec-2");
  const m = await c.waitForPhase(id, ["ABORTED", "DONE"]);
  assert.equal(m.phase, "DONE", c.logs());
  assert.deepEqual(await hostsHolding("vm-rec-2"), ["host-b:active"], "state whole on the destination only");
  assert.equal(await c.vmStatus("host-a", "vm-rec-2"), "released");
  const inv = await c.inventory("host-b");
  assert.equal(inv.vms.find((v) => v.vmId === "vm-rec-2")?.digest, digest, "nothing lost or duplicated");
  const s = await unaryCall<object, { owner_host: string; epoch: string }>(c.client, "GetVmState", { vm_id: "vm-rec-2" });
  assert.equal(s.owner_host, "host-b");
});

test("recovery - coordinator killed inside the freeze window: the destination commits without it; the next coordinator rolls forward to DONE", async () => {
  const { id, digest } = await crashAt("during:FROZEN", "vm-rec-5");
  const m = await c.waitForPhase(id, ["ABORTED", "DONE"]);
  assert.equal(m.phase, "DONE", c.logs());
  assert.ok(m.history.some((h) => h.phase === "COMMITTED" && /committed by host-b on the final seal/.test(h.note)), "the destination wrote the commit");
  // The recovering coordinator asks the frozen source for the digest it never heard from the final round.
  assert.equal(m.progress!.src_digest, digest);
  assert.equal(m.progress!.dst_digest, digest);
  assert.deepEqual(await hostsHolding("vm-rec-5"), ["host-b:active"], "state whole on the destination only");
  assert.equal(await c.vmStatus("host-a", "vm-rec-5"), "released");
  assert.equal((await c.inventory("host-b")).vms.find((v) => v.vmId === "vm-rec-5")?.digest, digest, "nothing lost or duplicated");
});

test("recovery - coordinator killed after activation: the next coordinator releases the source and finishes", async () => {
  const { id } = await crashAt("after:ACTIVATED", "vm-rec-3");
  const m = await c.waitForPhase(id, ["ABORTED", "DONE"]);
  assert.equal(m.phase, "DONE", c.logs());
  assert.deepEqual(await hostsHolding("vm-rec-3"), ["host-b:active"]);
});

test("recovery - coordinator killed during pre-copy: the next coordinator aborts and the source keeps the state", async () => {
  const { id, digest } = await crashAt("after:PRECOPY", "vm-rec-4");
  const m = await c.waitForPhase(id, ["ABORTED", "DONE"]);
  assert.equal(m.phase, "ABORTED");
  assert.deepEqual(await hostsHolding("vm-rec-4"), ["host-a:active"]);
  assert.equal((await c.inventory("host-a")).vms.find((v) => v.vmId === "vm-rec-4")?.digest, digest);
});
