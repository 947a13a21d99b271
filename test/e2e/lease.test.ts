import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Coordinator } from "../../coordinator/service.js";
import { Journal } from "../../coordinator/journal.js";
import { Phase } from "../../coordinator/phases.js";
import type { MigrationRecord } from "../../coordinator/record.js";
import { UnavailableError } from "../../protocol/errors.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { startInProcess, type InProcessCluster } from "../harness/in-process.js";
import { waitFor } from "../harness/wait.js";

// Two coordinators with a short lease: the second sweeps often and takes over
// any unfinished migration whose lease ran out. A migration that waits (a
// phased one before its switchover) or runs many pre-copy rounds without a
// phase change must keep renewing its lease, or the rival would take it.
const LEASE_MS = 600;
let cluster: InProcessCluster;
let coord: Coordinator;
let rival: Coordinator;

before(async () => {
  cluster = await startInProcess([
    { id: "coord-lease", leaseMs: LEASE_MS, sweepMs: 60_000 },
    { id: "coord-rival", leaseMs: LEASE_MS, sweepMs: 50 },
  ]);
  [coord, rival] = cluster.coordinators as [Coordinator, Coordinator];
});
after(async () => {
  await cluster?.close();
});

/** Switchover and Complete on this coordinator: the migration ends DONE, driven by it throughout. */
async function finish(id: string): Promise<void> {
  await coord.switchover({ migrationId: id });
  await coord.complete({ migrationId: id });
  const end = await coord.waitForEnd(id);
  assert.equal(end.phase, Phase.Done, JSON.stringify(end.history));
  assert.equal(end.driver, "coord-lease");
}

/** A VM on host-1 and a phased migration of it to host-2, prepared. */
async function prepared(vmId: string, options: { stopAndCopy?: boolean } = {}): Promise<string> {
  await coord.importVm("host-1", JSON.stringify(toDocument(generateVmState(vmId, { conntrack: 200 }))));
  return (await coord.prepare({ vmId, dst: "host-2", options })).id;
}

test("lease - a phased stop-and-copy migration waiting for its switchover keeps its lease", async () => {
  const id = await prepared("vm-lease-1", { stopAndCopy: true });
  await new Promise((r) => setTimeout(r, 5 * LEASE_MS));
  const waiting = await coord.getMigration(id);
  assert.equal(waiting.driver, "coord-lease", `the rival took the migration over in ${waiting.phase}`);
  await finish(id);
});

test("lease - a phased migration syncing deltas until its switchover keeps its lease, writing its record about once a third of the lease", async () => {
  const id = await prepared("vm-lease-2");
  await new Promise((r) => setTimeout(r, 5 * LEASE_MS));
  const syncing = await coord.getMigration(id);
  assert.equal(syncing.phase, Phase.Precopy);
  assert.equal(syncing.driver, "coord-lease", "the rival took the migration over");
  assert.ok(syncing.progress.round >= 10, `rounds kept flowing (round ${syncing.progress.round})`);
  await finish(id);
});

test("lease - a Switchover to a coordinator that loses the migration meanwhile answers at once with what the new driver made of it", async () => {
  const id = await prepared("vm-lease-3");
  await waitFor(async () => (await coord.getMigration(id)).phase === Phase.Precopy, { what: "pre-copy" });
  // The record is handed to the rival (as after a lease lost in a network
  // partition) just before the Switchover: this coordinator's driver finds
  // out at its next write and stops; the rival recovers the migration (before
  // commit: an abort).
  const journal = await Journal.open(cluster.nc);
  const cur = await journal.getMigration(id);
  assert.ok(cur && !("raw" in cur));
  await journal.updateMigration({ ...cur.value, driver: "coord-rival", leaseUntil: Date.now() + LEASE_MS }, cur.revision);
  const t0 = Date.now();
  const out: MigrationRecord | Error = await coord.switchover({ migrationId: id }).then((r) => r, (e: Error) => e);
  assert.ok(Date.now() - t0 < 3000, "answered at once");
  if (out instanceof Error) assert.ok(out instanceof UnavailableError && /coord-rival/.test(out.message), out.message);
  else assert.equal(out.phase, Phase.Aborted, `the rival recovered the migration: ${JSON.stringify(out.history)}`);
  const end = await waitFor(async () => {
    const r = await rival.getMigration(id);
    return r.phase === Phase.Aborted ? r : null;
  }, { what: "the rival to abort the migration it took over" });
  assert.equal(end.driver, "coord-rival");
  const vm = await waitFor(async () => {
    const v = await rival.vmState("vm-lease-3");
    return v.status === "active" ? v : null;
  }, { what: "the VM thawed on its source" });
  assert.equal(vm.owner, "host-1", "the VM stays where it was, whole");
});
