import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { unaryCall } from "../../cli/client.js";
import { generateVmState } from "../../protocol/state/generate.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { Cluster } from "../harness/cluster.js";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b", "host-c", "host-d"] });
  // host-b's freeze windows last 1.5 s: it waits that long between its commit and its activation.
  await c.agents.get("host-b")!.stop();
  await c.startAgent("host-b", 0, { NETMIG_FAULT_COMMIT_DELAY_MS: "1500" });
});
after(async () => {
  await c?.close();
});

const atMs = (m: Migration__Output, phase: string): number => {
  const h = m.history.find((x) => x.phase === phase);
  assert.ok(h, `${m.vm_id}: no ${phase} in its history (${m.history.map((x) => x.phase).join(" ")})`);
  return Number(h.at_ms);
};

test("host gate - a migration's bookkeeping waits for a freeze window open on other hosts to close, then the migration goes on", async () => {
  await c.importVm("host-a", generateVmState("vm-gate-1", { conntrack: 2000, seed: 71 }));
  await c.importVm("host-c", generateVmState("vm-gate-2", { conntrack: 2000, seed: 72 }));
  const first = await unaryCall<object, Migration__Output>(c.client, "StartMigration", { vm_id: "vm-gate-1", dst_host: "host-b", options: { freeze_budget_ms: 10_000 } });
  const frozen = await c.waitForPhase(first.migration_id, ["FROZEN"]);
  // Started while the first one's window is open, on two other hosts.
  const startedAt = Date.now();
  const second = await c.migrate("vm-gate-2", "host-d");
  const done = await c.waitForPhase(first.migration_id, ["DONE"]);
  assert.equal(second.phase, "DONE", `${second.phase}: ${second.error?.message ?? ""}\n${c.logs()}`);
  assert.ok(done.progress!.state_frozen_ms >= 1500, `the first window lasted ${done.progress!.state_frozen_ms} ms`);

  const windowOpen = atMs(frozen, "FROZEN");
  assert.ok(startedAt < windowOpen + 1000, "the second migration started while the first window was open");
  // The first window ends after the destination's commit plus its 1.5 s delay; the second's
  // prepare and PRECOPY record waited for that (its rounds and window come after).
  assert.ok(atMs(second, "PRECOPY") >= windowOpen + 1450, `PRECOPY recorded ${atMs(second, "PRECOPY") - windowOpen} ms after the other window opened`);
  assert.equal(await c.vmStatus("host-b", "vm-gate-1"), "active");
  assert.equal(await c.vmStatus("host-d", "vm-gate-2"), "active");
});
