import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "nats";
import { runAgent, type Daemon } from "../../cli/daemons.js";
import type { Agent } from "../../agent/service.js";
import { Coordinator } from "../../coordinator/service.js";
import { Phase } from "../../coordinator/phases.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { createLogger } from "../../protocol/log.js";
import { startNatsServer, type NatsServerHandle } from "../harness/nats-server.js";
import { waitFor } from "../harness/wait.js";

// A coordinator whose recovery sweep runs every millisecond, so a sweep lands
// between a new migration's record being written and its driver being tracked.
let nats: NatsServerHandle;
let nc: NatsConnection;
const agents: Daemon<Agent>[] = [];
let coord: Coordinator;
const silent = createLogger("test");
silent.level = "silent";

before(async () => {
  nats = await startNatsServer();
  for (const hostId of ["host-1", "host-2"]) {
    agents.push(await runAgent({ hostId, natsUrl: nats.url, stateDir: null, heartbeatMs: 200, backend: { kind: "memory" }, logger: silent }));
  }
  nc = await connect({ servers: nats.url });
  coord = new Coordinator({ nc, id: "coord-sweep", log: silent, sweepMs: 1 });
  await coord.start();
  await waitFor(() => coord.listHosts().filter((h) => h.alive).length === 2, { what: "both hosts alive" });
});
after(async () => {
  await coord?.close();
  for (const a of agents) await a.close();
  await nc?.close();
  await nats?.stop();
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
