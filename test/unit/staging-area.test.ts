import { test } from "node:test";
import assert from "node:assert/strict";
import { StagingArea } from "../../agent/backends/common/staging-area.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { generateVmState } from "../../protocol/state/generate.js";
import type { StateDelta } from "../../protocol/state/model.js";
import { keyOf } from "../../protocol/state/tables.js";
import { blocksOf } from "../../protocol/state/row-block.js";

const s = generateVmState("vm-sa", { conntrack: 300, fdb: 40, acls: 10, ports: 2, seed: 3 });

test("staging-area - the chunks of a full snapshot add up: a later chunk does not drop an earlier one's rows", () => {
  const area = new StagingArea("vm-sa", "m1");
  const half = s.tables.conntrack.length / 2;
  const part1: StateDelta = { vmId: "vm-sa", baseGen: null, gen: 4, upserts: blocksOf({ ...s.tables, conntrack: s.tables.conntrack.slice(0, half) }), deletes: {} };
  const part2: StateDelta = { vmId: "vm-sa", baseGen: null, gen: 4, upserts: blocksOf({ conntrack: s.tables.conntrack.slice(half) }), deletes: {} };
  for (const p of [part1, part2]) {
    for (const t of ["conntrack", "fdb"] as const) assert.equal(area.removals(p, t).size, 0, `a full-snapshot chunk removes nothing from ${t}`);
    area.apply(p);
  }
  assert.equal(area.rows("conntrack").length, s.tables.conntrack.length);
  assert.equal(area.summary().digest, StateDigest.of(s.tables).toString());
});

test("staging-area - a delta's deletes are removed and reported by removals", () => {
  const area = new StagingArea("vm-sa", "m2");
  area.apply({ vmId: "vm-sa", baseGen: null, gen: 1, upserts: blocksOf(s.tables), deletes: {} });
  const gone = s.tables.conntrack.slice(0, 5).map((r) => keyOf("conntrack", r));
  const delta: StateDelta = { vmId: "vm-sa", baseGen: 1, gen: 2, upserts: {}, deletes: { conntrack: [...gone, "no|such|key"] } };
  assert.deepEqual([...area.removals(delta, "conntrack").keys()].sort(), [...gone].sort());
  area.apply(delta);
  assert.equal(area.rows("conntrack").length, s.tables.conntrack.length - 5);
  assert.equal(area.summary().digest, StateDigest.of({ ...s.tables, conntrack: s.tables.conntrack.slice(5) }).toString());
});
