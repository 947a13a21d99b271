import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateVmState } from "../../protocol/state/generate.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { Cluster } from "../harness/cluster.js";
import { assertSameState } from "../harness/state-compare.js";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"] });
});
after(async () => {
  await c?.close();
});

test("migration - every kind of state survives A→B exactly, the source keeps only a tombstone, and B→A works", async () => {
  const state = generateVmState("vm-e2e-1", { conntrack: 20_000, fdb: 4000, acls: 300, ports: 3, neighbours: 50, seed: 7 });
  const digest = StateDigest.of(state.tables).toString();
  await c.importVm("host-a", state);
  const before = await c.exportVm("vm-e2e-1");
  assert.equal(before.host_id, "host-a");
  assert.equal(before.doc.digest, digest, "import kept the state exactly");

  const m = await c.migrate("vm-e2e-1", "host-b");
  assert.equal(m.phase, "DONE", `migration ended in ${m.phase}: ${m.error?.message}\n${c.logs()}`);
  assert.equal(m.src_host, "host-a");
  assert.equal(m.progress?.src_digest, digest);
  assert.equal(m.progress?.dst_digest, digest);
  // The agents' account of the freeze window (one host, one clock) lies inside the coordinator's.
  assert.ok(m.progress!.state_frozen_ms > 0 && m.progress!.state_frozen_ms <= m.progress!.freeze_window_ms, `state frozen ${m.progress!.state_frozen_ms} ms, coordinator's window ${m.progress!.freeze_window_ms} ms`);
  assert.deepEqual(m.history.map((h) => h.phase), ["PENDING", "PRECOPY", "FROZEN", "TRANSFERRED", "COMMITTED", "ACTIVATED", "RELEASED", "DONE"]);

  const onB = await c.exportVm("vm-e2e-1");
  assert.equal(onB.host_id, "host-b");
  assert.equal(onB.doc.digest, digest);
  assertSameState(before.doc.tables, onB.doc.tables, "on host-b");
  // Host-local ids were remapped, not copied: host-b allocates its own.
  const zonesA = before.doc.tables.ports!.map((p) => p.ctZone);
  const zonesB = onB.doc.tables.ports!.map((p) => p.ctZone);
  assert.equal(new Set(zonesB).size, zonesB.length);

  assert.equal(await c.vmStatus("host-a", "vm-e2e-1"), "released", "the source keeps a tombstone");
  assert.equal(await c.vmStatus("host-b", "vm-e2e-1"), "active");
  const tomb = (await c.inventory("host-a")).vms.find((v) => v.vmId === "vm-e2e-1");
  assert.equal(tomb?.epoch, Number(m.epoch) + 1, "the tombstone carries the new epoch");

  const back = await c.migrate("vm-e2e-1", "host-a");
  assert.equal(back.phase, "DONE", `B→A ended in ${back.phase}: ${back.error?.message}`);
  const onA = await c.exportVm("vm-e2e-1");
  assert.equal(onA.host_id, "host-a");
  assertSameState(before.doc.tables, onA.doc.tables, "back on host-a");
  assert.equal(await c.vmStatus("host-b", "vm-e2e-1"), "released");
  assert.equal(await c.vmStatus("host-a", "vm-e2e-1"), "active");
  assert.ok(zonesA.length > 0);
});

test("migration - state changed during pre-copy moves too; changes are refused once frozen", async () => {
  const state = generateVmState("vm-e2e-2", { conntrack: 20_000, seed: 3 });
  await c.importVm("host-a", state);
  const migrating = c.migrate("vm-e2e-2", "host-b", { converge_rows: 10 });
  let accepted = 0;
  const refusals: string[] = [];
  let done = false;
  void migrating.finally(() => (done = true));
  // Bounded: at most 2,000 writes or 60 s.
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < 2000 && !done && Date.now() < deadline; i++) {
    const row = { ...state.tables.conntrack[i % state.tables.conntrack.length]!, timeoutSec: 1000 + i };
    try {
      await c.write("host-a", "vm-e2e-2", { upserts: { conntrack: [row] } });
      accepted++;
    } catch (err) {
      refusals.push((err as { code?: string }).code ?? "?");
      if (refusals.length > 50) break;
    }
  }
  const m = await migrating;
  assert.equal(m.phase, "DONE", m.error?.message);
  assert.ok(accepted > 0, "some writes landed during pre-copy");
  assert.ok(refusals.length > 0 && refusals.every((code) => code === "VM_MIGRATING" || code === "UNKNOWN_VM"), `writes after the freeze are refused: ${refusals.slice(0, 5)}`);
  assert.equal(m.progress!.src_digest, m.progress!.dst_digest, "the destination holds the source's state as of the freeze");
  const onB = await c.exportVm("vm-e2e-2");
  assert.equal(onB.doc.digest, m.progress!.src_digest);
});
