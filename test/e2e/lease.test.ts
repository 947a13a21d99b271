import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "nats";
import { runAgent, type Daemon } from "../../cli/daemons.js";
import type { Agent } from "../../agent/service.js";
import { Coordinator } from "../../coordinator/service.js";
import { Journal } from "../../coordinator/journal.js";
import { Phase } from "../../coordinator/phases.js";
import type { MigrationRecord } from "../../coordinator/record.js";
import { UnavailableError } from "../../protocol/errors.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { createLogger } from "../../protocol/log.js";
import { startNatsServer, type NatsServerHandle } from "../harness/nats-server.js";
import { waitFor } from "../harness/wait.js";

// Two coordinators with a short lease: the second sweeps often and takes over
// any unfinished migration whose lease ran out. A migration that waits (a
// phased one before its switchover) or runs many pre-copy rounds without a
// phase change must keep renewing its lease, or the rival would take it.
const LEASE_MS = 600;
let nats: NatsServerHandle;
let nc: NatsConnection;
const agents: Daemon<Agent>[] = [];
let coord: Coordinator;
let rival: Coordinator;
const silent = createLogger("test");
silent.level = "silent";

before(async () => {
  nats = await startNatsServer();
  for (const hostId of ["host-1", "host-2"]) {
    agents.push(await runAgent({ hostId, natsUrl: nats.url, stateDir: null, heartbeatMs: 200, backend: { kind: "memory" }, logger: silent }));
  }
  nc = await connect({ servers: nats.url });
  coord = new Coordinator({ nc, id: "coord-lease", log: silent, leaseMs: LEASE_MS, sweepMs: 60_000 });
  await coord.start();
  rival = new Coordinator({ nc, id: "coord-rival", log: silent, leaseMs: LEASE_MS, sweepMs: 50 });
  await rival.start();
  await waitFor(() => coord.listHosts().filter((h) => h.alive).length === 2, { what: "both hosts alive" });
});
after(async () => {
  await rival?.close();
  await coord?.close();
  for (const a of agents) await a.close();
  await nc?.close();
  await nats?.stop();
});

test("lease - a phased stop-and-copy migration waiting for its switchover keeps its lease", async () => {
  await coord.importVm("host-1", JSON.stringify(toDocument(generateVmState("vm-lease-1", { conntrack: 200 }))));
  const started = await coord.prepare({ vmId: "vm-lease-1", dst: "host-2", options: { stopAndCopy: true } });
  await new Promise((r) => setTimeout(r, 5 * LEASE_MS));
  const waiting = await coord.getMigration(started.id);
  assert.equal(waiting.driver, "coord-lease", `the rival took the migration over in ${waiting.phase}`);
  await coord.switchover({ migrationId: started.id });
  await coord.complete({ migrationId: started.id });
  const end = await coord.waitForEnd(started.id);
  assert.equal(end.phase, Phase.Done, JSON.stringify(end.history));
  assert.equal(end.driver, "coord-lease");
});

test("lease - a phased migration syncing deltas until its switchover keeps its lease, writing its record about once a third of the lease", async () => {
  await coord.importVm("host-1", JSON.stringify(toDocument(generateVmState("vm-lease-2", { conntrack: 200 }))));
  const started = await coord.prepare({ vmId: "vm-lease-2", dst: "host-2" });
  await new Promise((r) => setTimeout(r, 5 * LEASE_MS));
  const syncing = await coord.getMigration(started.id);
  assert.equal(syncing.phase, Phase.Precopy);
  assert.equal(syncing.driver, "coord-lease", "the rival took the migration over");
  assert.ok(syncing.progress.round >= 10, `rounds kept flowing (round ${syncing.progress.round})`);
  await coord.switchover({ migrationId: started.id });
  await coord.complete({ migrationId: started.id });
  const end = await coord.waitForEnd(started.id);
  assert.equal(end.phase, Phase.Done, JSON.stringify(end.history));
  assert.equal(end.driver, "coord-lease");
});

test("lease - a Switchover to a coordinator that loses the migration meanwhile answers at once with what the new driver made of it", async () => {
  await coord.importVm("host-1", JSON.stringify(toDocument(generateVmState("vm-lease-3", { conntrack: 200 }))));
  const started = await coord.prepare({ vmId: "vm-lease-3", dst: "host-2" });
  await waitFor(async () => (await coord.getMigration(started.id)).phase === Phase.Precopy, { what: "pre-copy" });
  // The record is handed to the rival (as after a lease lost in a network
  // partition) just before the Switchover: this coordinator's driver finds
  // out at its next write and stops; the rival recovers the migration (before
  // commit: an abort).
  const journal = await Journal.open(nc);
  const cur = await journal.getMigration(started.id);
  assert.ok(cur && !("raw" in cur));
  await journal.updateMigration({ ...cur.value, driver: "coord-rival", leaseUntil: Date.now() + LEASE_MS }, cur.revision);
  const t0 = Date.now();
  const out: MigrationRecord | Error = await coord.switchover({ migrationId: started.id }).then((r) => r, (e: Error) => e);
  assert.ok(Date.now() - t0 < 3000, "answered at once");
  if (out instanceof Error) assert.ok(out instanceof UnavailableError && /coord-rival/.test(out.message), out.message);
  else assert.equal(out.phase, Phase.Aborted, `the rival recovered the migration: ${JSON.stringify(out.history)}`);
  const end = await waitFor(async () => {
    const r = await rival.getMigration(started.id);
    return r.phase === Phase.Aborted ? r : null;
  }, { what: "the rival to abort the migration it took over" });
  assert.equal(end.driver, "coord-rival");
  const vm = await waitFor(async () => {
    const v = await rival.vmState("vm-lease-3");
    return v.status === "active" ? v : null;
  }, { what: "the VM thawed on its source" });
  assert.equal(vm.owner, "host-1", "the VM stays where it was, whole");
});
