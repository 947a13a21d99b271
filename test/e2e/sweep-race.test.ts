import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Coordinator } from "../../coordinator/service.js";
import { Phase } from "../../coordinator/phases.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { startInProcess, type InProcessCluster } from "../harness/in-process.js";

// A coordinator whose recovery sweep runs every millisecond, so a sweep lands
// between a new migration's record being written and its driver being tracked.
let cluster: InProcessCluster;
let coord: Coordinator;

before(async () => {
  cluster = await startInProcess([{ id: "coord-sweep", sweepMs: 1 }]);
  coord = cluster.coordinators[0]!;
});
after(async () => {
  await cluster?.close();
});

test("sweep - a sweep running while a migration starts does not take it from the driver that started it", async () => {
  await coord.importVm("host-1", JSON.stringify(toDocument(generateVmState("vm-sweep", { conntrack: 50 }))));
  const hosts = ["host-2", "host-1"];
  for (let i = 0; i < 30; i++) {
    const started = await coord.startMigration({ vmId: "vm-sweep", dst: hosts[i % 2]! });
    const end = await coord.waitForEnd(started.id);
    assert.equal(end.phase, Phase.Done, `migration ${i} ended ${end.phase}: ${JSON.stringify(end.history)}`);
    assert.equal(end.driver, "coord-sweep");
  }
});
