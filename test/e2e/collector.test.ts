import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";

/**
 * Agents collect garbage at the end of big pre-copy rounds, inside the
 * round (agent/collector.ts): both hosts of a round that moved at least
 * --gc-after-round-kib, never after a small round or a final one.
 */
const MIN_KIB = 256;
const COLLECTED = "collected garbage after a pre-copy round";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ agents: [], agentArgs: () => ["--gc-after-round-kib", String(MIN_KIB)] });
  for (const h of ["host-a", "host-b"]) await c.startAgent(h, 0, { NETMIG_LOG_LEVEL: "debug" });
});
after(async () => {
  await c?.close();
});

interface Collected {
  migrationId: string;
  how: string;
  bytes: number;
  pauseMs: number;
}

function collections(hostId: string, migrationId: string): Collected[] {
  const out: Collected[] = [];
  for (const line of c.agents.get(hostId)!.log().split("\n")) {
    if (!line.includes(COLLECTED)) continue;
    const l = JSON.parse(line) as Collected & { msg: string };
    if (l.msg === COLLECTED && l.migrationId === migrationId) out.push(l);
  }
  return out;
}

test("collector - a big pre-copy round ends with a collection on both hosts; a small round and a stop-and-copy do not", async () => {
  await c.seed("host-a", generateVmState("vm-gc-big", { conntrack: 20_000, fdb: 500, acls: 50, seed: 3 }));
  await c.seed("host-a", generateVmState("vm-gc-small", { conntrack: 200, fdb: 10, acls: 5, seed: 4 }));

  const big = await c.migrate("vm-gc-big", "host-b");
  assert.equal(big.phase, "DONE", `${big.error?.message}\n${c.logs()}`);
  assert.equal(big.progress?.dst_digest, big.progress?.src_digest);
  const sent = collections("host-a", big.migration_id);
  const received = collections("host-b", big.migration_id);
  assert.equal(sent.length, 1, `source: ${JSON.stringify(sent)}`);
  assert.equal(received.length, 1, `destination: ${JSON.stringify(received)}`);
  assert.equal(sent[0]!.how, "sent");
  assert.equal(received[0]!.how, "received");
  for (const x of [...sent, ...received]) {
    assert.ok(x.bytes >= MIN_KIB * 1024, `collected after a round of ${x.bytes} bytes`);
    assert.ok(x.pauseMs >= 0);
  }

  const small = await c.migrate("vm-gc-small", "host-b");
  assert.equal(small.phase, "DONE", small.error?.message);
  assert.deepEqual([...collections("host-a", small.migration_id), ...collections("host-b", small.migration_id)], [], "a round under the threshold");

  // Stop-and-copy: the only round is the final one, the freeze window itself.
  const back = await c.migrate("vm-gc-big", "host-a", { stop_and_copy: true });
  assert.equal(back.phase, "DONE", back.error?.message);
  assert.deepEqual([...collections("host-a", back.migration_id), ...collections("host-b", back.migration_id)], [], "a final round");
});
