import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { unaryCall } from "../../cli/client.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";
import { waitFor } from "../harness/wait.js";

let c: Cluster;
before(async () => {
  c = await Cluster.start({ churn: "1%", agents: ["host-a", "host-b", "host-c"] });
});
after(async () => {
  await c?.close();
});

async function hostVms(): Promise<Map<string, string[]>> {
  const res = await unaryCall<object, { hosts: { host_id: string; vms: string[] }[] }>(c.client, "ListHosts", {});
  return new Map(res.hosts.map((h) => [h.host_id, h.vms]));
}

test("evacuate - every VM of a host under churn moves to the others, a few at a time, each with equal digests", async () => {
  const ids = Array.from({ length: 12 }, (_, i) => `vm-evac-${i}`);
  for (const [i, id] of ids.entries()) await c.seed("host-a", generateVmState(id, { conntrack: 2000, fdb: 50, acls: 10, seed: 100 + i }));
  await waitFor(async () => (await hostVms()).get("host-a")?.length === ids.length, { what: "host-a to report 12 VMs", timeoutMs: 15_000 });

  const events = await c.evacuate({ src_host: "host-a", dst_hosts: ["host-b", "host-c"], concurrency: 3, options: {} });
  const last = events.at(-1)!;
  assert.equal(last.finished, true, "the stream ends with a final event");
  assert.deepEqual([last.total, last.done, last.failed], [12, 12, 0], `evacuation ended ${last.done} done, ${last.failed} failed\n${c.logs()}`);
  const done = events.filter((e) => e.migration?.phase === "DONE").map((e) => e.migration!);
  assert.deepEqual(done.map((m) => m.vm_id).sort(), [...ids].sort(), "one DONE event per VM");
  for (const m of done) {
    assert.equal(m.src_host, "host-a");
    assert.ok(m.progress!.src_digest !== "" && m.progress!.src_digest === m.progress!.dst_digest, `${m.vm_id}: digests differ`);
    assert.ok(m.progress!.state_frozen_ms > 0 && m.progress!.state_frozen_ms <= m.progress!.freeze_window_ms,
      `${m.vm_id}: state frozen ${m.progress!.state_frozen_ms} ms, coordinator's window ${m.progress!.freeze_window_ms} ms; ${m.history.map((h) => h.note).join(" | ")}\n${c.logs()}`);
  }
  const counts = events.filter((e) => !e.finished).map((e) => e.done + e.failed);
  assert.deepEqual(counts, [...counts].sort((a, b) => a - b), "progress only goes forward");

  // Round-robin over the destinations; host-a keeps tombstones only.
  const dsts = done.map((m) => m.dst_host);
  assert.equal(dsts.filter((d) => d === "host-b").length, 6);
  assert.equal(dsts.filter((d) => d === "host-c").length, 6);
  for (const id of ids) assert.equal(await c.vmStatus("host-a", id), "released", id);
  await waitFor(async () => {
    const vms = await hostVms();
    return (vms.get("host-a")?.length ?? 0) === 0 && (vms.get("host-b")?.length ?? 0) + (vms.get("host-c")?.length ?? 0) === 12;
  }, { what: "the hosts to report the VMs where they went", timeoutMs: 15_000 });
});

test("evacuate - a bad request names what is wrong, and the coordinator keeps serving", async () => {
  await assert.rejects(c.evacuate({ src_host: "host-b", dst_hosts: ["host-b"], concurrency: 2, options: {} }), /cannot evacuate host host-b to itself/);
  await assert.rejects(c.evacuate({ src_host: "host-b", dst_hosts: ["host-nowhere"], concurrency: 2, options: {} }), /host-nowhere/);
  await assert.rejects(c.evacuate({ src_host: "host-nowhere", dst_hosts: ["host-b"], concurrency: 2, options: {} }), /host-nowhere/);
  assert.ok((await hostVms()).has("host-b"), "ListHosts still answers");
});
