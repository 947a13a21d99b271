import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";

/**
 * A stop-and-copy's one round is all inside the freeze window, so its
 * destination makes room for the round at prepare (the source's table
 * sizes, from the coordinator), after a collection, and touches it then.
 */
const RESERVED = "reserved and touched room for a full round";
const COLLECTED = "collected garbage before touching a staging reservation";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: [], agentArgs: () => ["--gc-after-round-kib", "256"] });
  for (const h of ["host-a", "host-b"]) await c.startAgent(h, 0, { NETMIG_LOG_LEVEL: "debug" });
});
after(async () => {
  await c?.close();
});

function logged(hostId: string, msg: string, migrationId: string): Record<string, unknown>[] {
  return c.agents.get(hostId)!.log().split("\n")
    .filter((line) => line.includes(msg))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((l) => l.msg === msg && l.migrationId === migrationId);
}

test("reservation - a stop-and-copy's destination makes room for the source's tables at prepare, collecting first; a pre-copy's does not", async () => {
  const state = generateVmState("vm-reserve", { conntrack: 30_000, fdb: 300, acls: 40, seed: 9 });
  await c.seed("host-a", state);
  const counts = (await c.inventory("host-a")).vms.find((v) => v.vmId === "vm-reserve")!.counts;

  const stop = await c.migrate("vm-reserve", "host-b", { stop_and_copy: true });
  assert.equal(stop.phase, "DONE", `${stop.error?.message}\n${c.logs()}`);
  assert.equal(stop.progress?.dst_digest, stop.progress?.src_digest);
  const reserved = logged("host-b", RESERVED, stop.migration_id);
  assert.equal(reserved.length, 1, c.agents.get("host-b")!.log());
  const nonZero = Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
  const sizes = Object.fromEntries(Object.entries(reserved[0]!.sizes as Record<string, number>).filter(([, n]) => n > 0));
  assert.deepEqual(sizes, nonZero, "the source's row counts");
  // 30k conntrack rows fill more than 1 MiB of columns.
  assert.ok((reserved[0]!.bytes as number) > 1 << 20, `touched ${reserved[0]!.bytes} bytes`);
  assert.equal(logged("host-b", COLLECTED, stop.migration_id).length, 1, "a collection before touching");

  const pre = await c.migrate("vm-reserve", "host-a");
  assert.equal(pre.phase, "DONE", pre.error?.message);
  assert.equal(pre.progress?.dst_digest, pre.progress?.src_digest);
  assert.deepEqual(logged("host-a", RESERVED, pre.migration_id), [], "a pre-copy's full round runs before the freeze: no reservation");
});
