/**
 * ovs backend - an abort mid-migration (after staging and freezing, before
 * activation) leaves host A exactly as it was and host B clean.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { dataplaneSkipReason } from "../harness/netns.js";
import { buildTopology, rawState, VM1 } from "./fixture.js";

const skip = await dataplaneSkipReason();

test("ovs backend - abort after staging leaves A as it was and B clean", { timeout: 120_000 }, async (t) => {
  if (skip) return t.skip(skip);
  const topo = await buildTopology();
  const { a, b } = topo;
  try {
    const beforeA = await rawState(topo, "A");
    const beforeB = await rawState(topo, "B");
    const before = await a.describe(VM1);

    const full = await a.read(VM1, null);
    const remap = { srcPortZones: await a.portZones(VM1) };
    await b.stage(VM1, "m2", full, remap);
    await a.setFrozen(VM1, true);
    const fin = await a.read(VM1, full.gen);
    await b.stage(VM1, "m2", fin, remap);
    await b.seal(VM1, "m2");
    // Staged conntrack entries are in B's kernel now (in a zone allocated for vm1).
    assert.notEqual((await rawState(topo, "B")).ct, beforeB.ct);

    // Abort: the destination drops the staging area, the source thaws.
    await b.discard(VM1, "m2");
    await b.discard(VM1, "m2"); // idempotent
    await a.setFrozen(VM1, false);
    await a.endTracking(VM1);

    assert.deepEqual(await rawState(topo, "A"), beforeA, "host A is exactly as it was");
    assert.deepEqual(await rawState(topo, "B"), beforeB, "host B is clean");
    assert.equal(await b.staged(VM1, "m2"), null);
    assert.deepEqual(await b.listStaged(), []);
    assert.deepEqual((await readdir(join(topo.stateB, "staging")).catch(() => [])).filter((n) => !n.startsWith(".")), []);
    const after = await a.describe(VM1);
    assert.equal(after?.digest, before?.digest);
    assert.equal(after?.frozen, false);
  } finally {
    await topo.cleanup();
  }
});
