/** TableSet while it tracks changes for a migration: deltas (`since`), the change log, live reads. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BadRequestError } from "../../protocol/errors.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { TableSet } from "../../protocol/state/table-set.js";
import { keyOf, type AclRow, type FdbRow } from "../../protocol/state/tables.js";
import { blocksOf } from "../../protocol/state/row-block.js";
import { majorCollection } from "../../agent/collector.js";
import { acl, loaded, norm, state } from "./table-set-fixtures.js";

test("table-set - since(g) gives exactly the rows upserted and keys deleted after g", () => {
  const s = loaded();
  s.startTracking();
  const g0 = s.gen;
  assert.deepEqual(norm(s.since(g0)), { upserts: {}, deletes: {} });

  const fdb = state.tables.fdb;
  const g1 = s.apply({ upserts: blocksOf({ fdb: [{ ...fdb[0]!, ageSec: 1 }] }), deletes: { acls: ["acl-3"] } });
  const g2 = s.apply({ upserts: blocksOf({ acls: [acl(1000)], fdb: [{ ...fdb[1]!, ageSec: 2 }] }), deletes: {} });
  const g3 = s.apply({ upserts: blocksOf({ fdb: [{ ...fdb[0]!, ageSec: 3 }] }), deletes: { fdb: [keyOf("fdb", fdb[2])] } });

  assert.deepEqual(norm(s.since(g0)), norm({
    upserts: blocksOf({ acls: [acl(1000)], fdb: [{ ...fdb[0]!, ageSec: 3 }, { ...fdb[1]!, ageSec: 2 }] }),
    deletes: { acls: ["acl-3"], fdb: [keyOf("fdb", fdb[2])] },
  }));
  assert.deepEqual(norm(s.since(g1)), norm({
    upserts: blocksOf({ acls: [acl(1000)], fdb: [{ ...fdb[0]!, ageSec: 3 }, { ...fdb[1]!, ageSec: 2 }] }),
    deletes: { fdb: [keyOf("fdb", fdb[2])] },
  }));
  assert.deepEqual(norm(s.since(g2)), norm({ upserts: blocksOf({ fdb: [{ ...fdb[0]!, ageSec: 3 }] }), deletes: { fdb: [keyOf("fdb", fdb[2])] } }));
  assert.deepEqual(norm(s.since(g3)), { upserts: {}, deletes: {} });
  // Earlier answers are still available after later ones (no compaction yet).
  assert.equal(norm(s.since(g0)).upserts.fdb?.length, 2);
});

test("table-set - a key changed then deleted appears only in deletes", () => {
  const s = loaded();
  s.startTracking();
  const g = s.gen;
  const row = state.tables.conntrack[10]!;
  const key = keyOf("conntrack", row);
  s.apply({ upserts: blocksOf({ conntrack: [{ ...row, state: "CLOSE_WAIT" }] }), deletes: {} });
  s.apply({ upserts: {}, deletes: { conntrack: [key] } });
  const c = s.since(g);
  assert.deepEqual(c.deletes.conntrack, [key]);
  assert.equal(c.upserts.conntrack, undefined);
  // A row added and deleted entirely after g still shows as a delete (the receiver ignores unknown keys).
  const s2 = loaded();
  s2.startTracking();
  const g2 = s2.gen;
  s2.apply({ upserts: blocksOf({ acls: [acl(5000)] }), deletes: {} });
  s2.apply({ upserts: {}, deletes: { acls: ["acl-5000"] } });
  assert.deepEqual(norm(s2.since(g2)), { upserts: {}, deletes: { acls: ["acl-5000"] } });
});

test("table-set - a key deleted then re-added appears only in upserts, with its latest row", () => {
  const s = loaded();
  s.startTracking();
  const g = s.gen;
  const row = state.tables.fdb[4]!;
  const key = keyOf("fdb", row);
  s.apply({ upserts: {}, deletes: { fdb: [key] } });
  s.apply({ upserts: blocksOf({ fdb: [{ ...row, ageSec: 99 }] }), deletes: {} });
  const c = s.since(g);
  assert.deepEqual(c.upserts.fdb?.rows(), [{ ...row, ageSec: 99 }]);
  assert.equal(c.deletes.fdb, undefined);
  // Both in one change: deletes apply first, so the row is present.
  const g2 = s.gen;
  s.apply({ upserts: blocksOf({ fdb: [{ ...row, ageSec: 5 }] }), deletes: { fdb: [key] } });
  assert.deepEqual(norm(s.since(g2)), { upserts: { fdb: [{ ...row, ageSec: 5 }] }, deletes: {} });
});

test("table-set - since throws when tracking is off, before the tracking start, or in the future", () => {
  const s = loaded();
  assert.equal(s.tracking, false);
  assert.throws(() => s.since(s.gen), (e: unknown) => e instanceof BadRequestError && /tracking is off/.test((e as Error).message));
  s.apply({ upserts: blocksOf({ acls: [acl(900)] }), deletes: {} });
  s.startTracking();
  assert.equal(s.tracking, true);
  const start = s.gen;
  s.apply({ upserts: blocksOf({ acls: [acl(901)] }), deletes: {} });
  assert.throws(() => s.since(start - 1), (e: unknown) => e instanceof BadRequestError && new RegExp(`since generation ${start - 1} \\(tracking from ${start} to ${start + 1}\\)`).test((e as Error).message));
  assert.throws(() => s.since(0), BadRequestError);
  assert.throws(() => s.since(s.gen + 1), BadRequestError);
  assert.deepEqual(norm(s.since(start)), { upserts: { acls: [acl(901)] }, deletes: {} });
  // Restarting tracking moves the start.
  s.startTracking();
  assert.throws(() => s.since(start), BadRequestError);
  assert.deepEqual(s.since(s.gen), { upserts: {}, deletes: {} });
  s.stopTracking();
  assert.equal(s.tracking, false);
  assert.throws(() => s.since(s.gen), /tracking is off/);
});

test("table-set - compaction of a long change log keeps later answers correct", () => {
  const s = new TableSet();
  s.apply({ upserts: blocksOf({ acls: Array.from({ length: 100 }, (_, i) => acl(i)) }), deletes: {} });
  s.startTracking();
  const start = s.gen;
  // 6000 single-row changes: acl i%100 gets priority = step; every 7th step deletes acl-(step%100) instead.
  const expectPriority = new Map<number, number | null>();
  const byGen: number[] = [];
  for (let step = 0; step < 6000; step++) {
    const i = step % 100;
    if (step % 7 === 0) {
      s.apply({ upserts: {}, deletes: { acls: [`acl-${i}`] } });
      expectPriority.set(i, null);
    } else {
      s.apply({ upserts: blocksOf({ acls: [acl(i, step % 60000)] }), deletes: {} });
      expectPriority.set(i, step % 60000);
    }
    byGen.push(s.gen);
  }
  /** The expected change since generation g, computed from scratch. */
  const expected = (g: number): ReturnType<typeof norm> => {
    const touched = new Map<number, number | null>();
    for (let step = 0; step < 6000; step++) {
      if (byGen[step]! <= g) continue;
      const i = step % 100;
      touched.set(i, step % 7 === 0 ? null : step % 60000);
    }
    const ups: AclRow[] = [];
    const dels: string[] = [];
    for (const [i, p] of touched) (p === null ? dels.push(`acl-${i}`) : ups.push(acl(i, p)));
    return norm({ upserts: blocksOf(ups.length ? { acls: ups } : {}), deletes: dels.length ? { acls: dels } : {} });
  };
  // Well past 4096 log entries: this call compacts.
  const g1 = start + 5000;
  assert.deepEqual(norm(s.since(g1)), expected(g1));
  // Later generations are still answered correctly after the compaction.
  for (const g of [g1, g1 + 1, g1 + 500, start + 5999, s.gen]) assert.deepEqual(norm(s.since(g)), expected(g), `since(${g})`);
  // Generations dropped by the compaction are refused, not answered wrongly.
  assert.throws(() => s.since(g1 - 1), BadRequestError);
  assert.throws(() => s.since(start), BadRequestError);
  // More changes after compaction, and a second compaction.
  const more: number[] = [];
  for (let step = 0; step < 5000; step++) {
    s.apply({ upserts: blocksOf({ fdb: [{ mac: `52:54:00:00:${(step >> 8).toString(16).padStart(2, "0")}:${(step & 0xff).toString(16).padStart(2, "0")}`, vlan: 1, ifaceId: "x", ageSec: step, static: false } satisfies FdbRow] }), deletes: {} });
    more.push(s.gen);
  }
  const g2 = more[4500]!;
  const c2 = norm(s.since(g2));
  assert.equal(c2.upserts.fdb?.length, 499);
  assert.equal(c2.upserts.acls, undefined);
  const g3 = more[4999]!;
  assert.deepEqual(norm(s.since(g3)), { upserts: {}, deletes: {} });
  const c4 = norm(s.since(more[4900]!));
  assert.equal(c4.upserts.fdb?.length, 99);
  assert.throws(() => s.since(g1), BadRequestError);
  // The rows themselves are untouched by compaction.
  assert.equal(s.count("fdb"), 5000);
  assert.equal(s.count("acls"), Array.from(expectPriority.values()).filter((p) => p !== null).length);
});

test("table-set - since reports the changes of many rows in a single generation", () => {
  const s = loaded();
  s.startTracking();
  const g = s.gen;
  // One change with more than 4096 log entries: no entry is older than g, so nothing may be lost.
  const ct = state.tables.conntrack;
  const bigAcls = Array.from({ length: 5000 }, (_, i) => acl(10_000 + i));
  s.apply({ upserts: blocksOf({ acls: bigAcls, conntrack: ct.map((r) => ({ ...r, timeoutSec: 9 })) }), deletes: {} });
  const c = s.since(g);
  assert.equal(c.upserts.acls?.length, 5000);
  assert.equal(c.upserts.conntrack?.length, 500);
  const g2 = s.gen;
  s.apply({ upserts: {}, deletes: { acls: bigAcls.slice(0, 10).map((r) => r.id) } });
  // This call skips 5500 entries (all at g2 or earlier) and compacts.
  assert.deepEqual(norm(s.since(g2)), { upserts: {}, deletes: { acls: bigAcls.slice(0, 10).map((r) => r.id).sort() } });
  assert.deepEqual(norm(s.since(g2)), { upserts: {}, deletes: { acls: bigAcls.slice(0, 10).map((r) => r.id).sort() } });
});

test("table-set - clear() while tracking reports the cleared keys as deletes", () => {
  const s = new TableSet();
  s.apply({ upserts: blocksOf({ acls: [acl(1), acl(2)] }), deletes: {} });
  s.startTracking();
  const g = s.gen;
  s.clear();
  assert.equal(s.count("acls"), 0);
  assert.ok(s.gen > g);
  // since(g) promises "keys gone now": a receiver applying this delta must end up empty too.
  assert.deepEqual(norm(s.since(g)), { upserts: {}, deletes: { acls: ["acl-1", "acl-2"] } });
});

test("table-set - append while tracking is logged like apply", () => {
  const s = loaded();
  s.startTracking();
  const g = s.gen;
  s.append({ upserts: blocksOf({ acls: [acl(900)] } )});
  assert.deepEqual(norm(s.since(g)), { upserts: { acls: [acl(900)] }, deletes: {} });
});

test("table-set - a live read taken a slice at a time under changes, then the delta since its generation, gives the source's rows exactly", () => {
  let seed = 777;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const fdbRow = (k: number, age: number): FdbRow => ({ mac: `52:54:00:00:${(k >> 8).toString(16).padStart(2, "0")}:${(k & 0xff).toString(16).padStart(2, "0")}`, vlan: 7, ifaceId: `if${k % 3}`, ageSec: age, static: false });
  for (let trial = 0; trial < 20; trial++) {
    const src = new TableSet();
    src.apply({ upserts: blocksOf({ fdb: Array.from({ length: 300 }, (_, k) => fdbRow(k, 0)), acls: Array.from({ length: 30 }, (_, i) => acl(i)) }), deletes: {} });
    // Some rows appended unindexed, one key twice: indexing while the read goes on merges them.
    src.append({ upserts: blocksOf({ fdb: [fdbRow(500, 1), fdbRow(501, 1), fdbRow(500, 2), fdbRow(502, 1)] }) });
    src.startTracking();
    const g0 = src.gen;
    const sources = src.liveRead();
    const dst = new TableSet();
    for (const t of ["fdb", "acls"] as const) {
      const from = sources[t]!;
      for (let i = 0; i < from.length; ) {
        const n = 1 + rand(40);
        const slice = from.slice(i, i + n);
        dst.append({ upserts: t === "fdb" ? { fdb: slice as never } : { acls: slice as never } });
        i += n;
        // Between slices: deletes (rows move into the holes), replaced rows, new rows, a key deleted and re-added, indexing.
        // Every other trial leaves the fdb table alone while it is read, so indexing merges the twice-appended key after the read passed it.
        const op = trial % 2 === 0 && t === "fdb" ? 3 : rand(5);
        const keys = Array.from(src.rows("fdb"), (r) => keyOf("fdb", r));
        if (op === 0) src.apply({ upserts: {}, deletes: { fdb: [keys[rand(keys.length)]!, keys[rand(keys.length)]!] } });
        else if (op === 1) src.apply({ upserts: blocksOf({ fdb: [fdbRow(rand(600), 100 + rand(100))] }), deletes: {} });
        else if (op === 2) {
          const k = rand(300);
          src.apply({ upserts: {}, deletes: { fdb: [keyOf("fdb", fdbRow(k, 0))] } });
          src.apply({ upserts: blocksOf({ fdb: [fdbRow(k, 9)] }), deletes: {} });
        } else if (op === 3) src.apply({ upserts: blocksOf({ acls: [acl(rand(40), rand(2000))] }), deletes: { acls: [`acl-${rand(40)}`] } });
        else src.indexSome(1 + rand(3));
      }
      if (t === "fdb" && trial % 2 === 0) assert.equal(src.indexSome(Infinity), 0);
    }
    const d = src.since(g0);
    dst.apply(d);
    assert.equal(dst.digest.toString(), src.digest.toString(), `trial ${trial}: digests after the delta`);
    assert.deepEqual(norm({ upserts: dst.full(), deletes: {} }), norm({ upserts: src.full(), deletes: {} }), `trial ${trial}: rows after the delta`);
  }
});

test("table-set - indexing that merges a twice-appended key behind a live read is a change the next delta carries", () => {
  const fdbRow = (k: number, age: number): FdbRow => ({ mac: `52:54:00:00:01:${k.toString(16).padStart(2, "0")}`, vlan: 7, ifaceId: "if0", ageSec: age, static: false });
  const src = new TableSet();
  src.append({ upserts: blocksOf({ fdb: [fdbRow(1, 0), fdbRow(2, 1), fdbRow(3, 0), fdbRow(2, 2), fdbRow(4, 0)] }) });
  src.startTracking();
  const g0 = src.gen;
  const from = src.liveRead().fdb!;
  const dst = new TableSet();
  dst.append({ upserts: { fdb: from.slice(0, 2) } });
  // The later row of key 2 replaces the earlier one, already read, and the last row moves into its place.
  assert.equal(src.indexSome(Infinity), 0);
  assert.ok(src.gen > g0, "merging rows is a new generation");
  dst.append({ upserts: { fdb: from.slice(2, from.length) } });
  dst.apply(src.since(g0));
  assert.equal(dst.digest.toString(), src.digest.toString());
  assert.equal((dst.get("fdb", keyOf("fdb", fdbRow(2, 0))) as unknown as FdbRow).ageSec, 2);
});

test("table-set - the change log keeps each changed row's key flat: a tracked change costs ~100 bytes of heap, not a rope's ~500", () => {
  const gc = majorCollection();
  if (!gc) return assert.fail("this Node exposes no gc()");
  const n = 20_000;
  const rows = generateVmState("vm-log", { conntrack: n, seed: 4 }).tables.conntrack;
  const set = new TableSet();
  set.apply({ upserts: blocksOf({ conntrack: rows }), deletes: {} });
  set.startTracking();
  const changed = blocksOf({ conntrack: rows.map((r) => ({ ...r, timeoutSec: r.timeoutSec + 1 })) });
  gc();
  const before = process.memoryUsage().heapUsed;
  set.apply({ upserts: changed, deletes: {} });
  gc();
  const perChange = (process.memoryUsage().heapUsed - before) / n;
  assert.equal(set.since(set.gen - 1).upserts.conntrack?.length, n, "every change is logged");
  assert.ok(perChange < 200, `${perChange.toFixed(0)} bytes of heap per logged change`);
});
