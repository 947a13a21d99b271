import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { unaryCall } from "../../cli/client.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";

// Agents that report every 3 s: a coordinator that has just started knows no host for up to that long
// (and most runs of this test send their request before either host has reported).
let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"], agentArgs: () => ["--heartbeat-ms", "3000"] });
});
after(async () => {
  await c?.close();
});

test("coordinator start - a request right after a restart waits for the hosts' first heartbeats instead of calling them unknown", async () => {
  await c.importVm("host-a", generateVmState("vm-cold", { conntrack: 500, seed: 3 }));
  await c.coordinator!.stop();
  await c.startCoordinator();
  const t0 = Date.now();
  const m = await unaryCall<object, Migration__Output>(c.client, "StartMigration", { vm_id: "vm-cold", dst_host: "host-b", src_host: "host-a", wait: true }, 30_000);
  assert.equal(m.phase, "DONE", `${m.phase}: ${m.error?.message}\n${c.logs()}`);
  assert.ok(Date.now() - t0 < 10_000);
  // A host that never reports is still refused, once a heartbeat period has passed.
  await assert.rejects(unaryCall(c.client, "StartMigration", { vm_id: "vm-cold", dst_host: "host-nowhere" }), /destination host host-nowhere is unknown/);
});
