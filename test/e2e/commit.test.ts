/**
 * The destination's commit (agent/record-commit.ts), driven by hand through
 * the agents' API: a commit order is honoured only as a compare-and-set on
 * the revision it names, and a destination that cannot commit never goes
 * live.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { KV } from "nats";
import { AgentClient, type Target } from "../../coordinator/agent-client.js";
import type { CommitOrder } from "../../protocol/agent-api.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";

const BUCKET = "netmig-commit-test";
let c: Cluster;
let agents: AgentClient;
let kv: KV;
before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"] });
  agents = new AgentClient(c.nc);
  kv = await c.nc.jetstream().views.kv(BUCKET);
});
after(async () => {
  await c?.close();
});

const bytes = (s: string) => new TextEncoder().encode(s);

async function rejectsWithCode(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: { code?: string; message?: string }) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.message ?? "", re);
    return true;
  });
}

test("commit - a destination refuses a commit order on a stale revision and stays staged; one on the current revision commits and activates", async () => {
  const vmId = "vm-commit-1";
  const state = generateVmState(vmId, { conntrack: 3000, seed: 21 });
  await c.importVm("host-a", state);
  // No coordinator from here: it would reconcile this hand-made migration, unknown to it, away.
  await c.coordinator!.stop();
  const epoch = (await c.inventory("host-a")).vms.find((v) => v.vmId === vmId)!.epoch;
  const migrationId = "m-commit-1";
  const t = (hostId: string): Target => ({ hostId, vmId, migrationId, epoch });
  const frozenRev = await kv.put(migrationId, bytes("FROZEN"));
  const abortedRev = await kv.put(migrationId, bytes("ABORTING"));
  const order = (revision: number, over: Partial<CommitOrder> = {}): CommitOrder => ({ bucket: BUCKET, key: migrationId, revision, record: bytes("COMMITTED"), epoch: epoch + 1, ...over });

  await agents.prepare(t("host-b"), "host-a");
  await agents.transfer(t("host-a"), { dstHostId: "host-b", sinceGen: null, final: false, round: 0 });
  // Someone wrote the record after the freeze: the order's revision is stale.
  await rejectsWithCode(
    agents.transfer(t("host-a"), { dstHostId: "host-b", sinceGen: null, final: true, freeze: true, round: 1, commit: order(frozenRev) }),
    "CONFLICT", /changed after revision \d+ .*commit refused/,
  );
  assert.equal(await c.vmStatus("host-b", vmId), "staged", "not activated");
  assert.equal(await c.vmStatus("host-a", vmId), "frozen");
  assert.equal(new TextDecoder().decode((await kv.get(migrationId))!.value), "ABORTING", "the record keeps what won");

  // An order that does not fit the migration is refused before anything is written.
  await rejectsWithCode(
    agents.transfer(t("host-a"), { dstHostId: "host-b", sinceGen: null, final: true, round: 2, commit: order(abortedRev, { epoch: epoch + 5 }) }),
    "BAD_REQUEST", new RegExp(`activates at epoch ${epoch + 5}, but migration ${migrationId} moves the VM from epoch ${epoch}`),
  );
  // A bucket that does not exist: the outcome is a failure, not a guess.
  await rejectsWithCode(
    agents.transfer(t("host-a"), { dstHostId: "host-b", sinceGen: null, final: true, round: 3, commit: order(abortedRev, { bucket: "no-such-bucket" }) }),
    "UNAVAILABLE", /could not write the commit .* not activated/,
  );
  assert.equal(await c.vmStatus("host-b", vmId), "staged");
  assert.equal((await kv.get(migrationId))!.revision, abortedRev, "nothing was written");

  // On the current revision: committed, then live.
  const res = await agents.transfer(t("host-a"), { dstHostId: "host-b", sinceGen: null, final: true, round: 4, commit: order(abortedRev) });
  assert.ok(res.committed, "the source relays the destination's commit");
  const rec = (await kv.get(migrationId))!;
  assert.equal(new TextDecoder().decode(rec.value), "COMMITTED");
  assert.equal(res.committed.revision, rec.revision);
  assert.equal(res.committed.digest, StateDigest.of(state.tables).toString());
  assert.ok(res.frozenAtMs === undefined || res.committed.activatedAtMs >= res.frozenAtMs);
  assert.equal(await c.vmStatus("host-b", vmId), "active");
  const onB = (await c.inventory("host-b")).vms.find((v) => v.vmId === vmId)!;
  assert.equal(onB.epoch, epoch + 1, "live at the order's epoch");
  // The source is still frozen: releasing it is the coordinator's next step.
  assert.equal(await c.vmStatus("host-a", vmId), "frozen");
  await agents.release({ ...t("host-a"), epoch: epoch + 1 });
  assert.equal(await c.vmStatus("host-a", vmId), "released");
});

test("commit - a destination that commits but answers too late: the coordinator's abort loses the compare-and-set, and it rolls forward to DONE", async () => {
  await c.agents.get("host-b")!.stop();
  await c.startAgent("host-b", 0, { NETMIG_FAULT_COMMIT_DELAY_MS: "1500" });
  await c.startCoordinator();
  const vmId = "vm-commit-2";
  const state = generateVmState(vmId, { conntrack: 3000, seed: 22 });
  await c.importVm("host-a", state);
  // The source gives up on the final round after 500 ms; the destination has committed by then.
  const m = await c.migrate(vmId, "host-b", { freeze_budget_ms: 500 });
  assert.equal(m.phase, "DONE", `${m.phase}: ${m.error?.message ?? ""}\n${c.logs()}`);
  const phases = m.history.map((h) => h.phase);
  assert.ok(phases.includes("COMMITTED") && !phases.includes("ABORTING"), `history: ${phases.join(" ")}`);
  assert.match(c.coordinator!.log(), /the destination committed although its answer did not arrive; rolling forward/);
  assert.equal(await c.vmStatus("host-b", vmId), "active");
  assert.equal(await c.vmStatus("host-a", vmId), "released");
  assert.equal((await c.inventory("host-b")).vms.find((v) => v.vmId === vmId)?.digest, StateDigest.of(state.tables).toString(), "nothing lost");
});
