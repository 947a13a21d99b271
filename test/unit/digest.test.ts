import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalJson, digestDiff, StateDigest } from "../../protocol/state/digest.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { emptyTables, type Tables } from "../../protocol/state/model.js";
import { TableSet } from "../../protocol/state/table-set.js";
import { keyOf, TABLE_NAMES, type ConntrackRow, type TableName } from "../../protocol/state/tables.js";
import { blocksOf } from "../../protocol/state/row-block.js";

const state = generateVmState("vm-dig", { conntrack: 2000, fdb: 300, acls: 80, ports: 3, seed: 11 });

function shuffled<T>(a: readonly T[], seed: number): T[] {
  const out = a.slice();
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function mapTables(t: Tables, f: <T extends TableName>(name: T, rows: Tables[T]) => Tables[T]): Tables {
  const out = emptyTables();
  for (const name of TABLE_NAMES) (out as Record<TableName, unknown[]>)[name] = f(name, t[name] as never) as unknown[];
  return out;
}

test("digest - independent of row order", () => {
  const d0 = StateDigest.of(state.tables);
  for (const seed of [1, 2, 3]) {
    const d = StateDigest.of(mapTables(state.tables, (_n, rows) => shuffled(rows as unknown[], seed) as never));
    assert.equal(d.toString(), d0.toString());
    assert.deepEqual(d.tables(), d0.tables());
  }
  // Table order in the input object does not matter either.
  const reversed = Object.fromEntries([...TABLE_NAMES].reverse().map((t) => [t, state.tables[t]])) as unknown as Tables;
  assert.equal(StateDigest.of(reversed).toString(), d0.toString());
  // Nor does key order inside json fields.
  const ports = state.tables.ports.map((p) => ({ ...p, externalIds: Object.fromEntries(Object.entries(p.externalIds).reverse()) }));
  assert.equal(StateDigest.of({ ...state.tables, ports }).toString(), d0.toString());
});

test("digest - add then remove returns to the empty digest", () => {
  const empty = new StateDigest();
  const d = new StateDigest();
  for (const t of TABLE_NAMES) for (const r of state.tables[t]) d.add(t, r);
  assert.notEqual(d.toString(), empty.toString());
  for (const t of TABLE_NAMES) for (const r of shuffled(state.tables[t] as unknown[], 9)) d.remove(t, r);
  assert.equal(d.toString(), empty.toString());
  assert.deepEqual(d.tables(), empty.tables());
  assert.equal(StateDigest.of({}).toString(), empty.toString());
  assert.equal(StateDigest.of(emptyTables()).toString(), empty.toString());
});

test("digest - clone is independent of the original", () => {
  const d = StateDigest.of(state.tables);
  const c = d.clone();
  assert.equal(c.toString(), d.toString());
  c.remove("acls", state.tables.acls[0]);
  assert.notEqual(c.toString(), d.toString());
  assert.equal(d.toString(), StateDigest.of(state.tables).toString());
});

test("digest - changing one portable field changes the digest and digestDiff names the table", () => {
  const d0 = StateDigest.of(state.tables);
  const changes: [TableName, (t: Tables) => void][] = [
    ["ports", (t) => { t.ports[1] = { ...t.ports[1]!, vlanTag: t.ports[1]!.vlanTag + 1 }; }],
    ["ports", (t) => { t.ports[0] = { ...t.ports[0]!, externalIds: { ...t.ports[0]!.externalIds, extra: "1" } }; }],
    ["acls", (t) => { t.acls[5] = { ...t.acls[5]!, actions: "drop" === t.acls[5]!.actions ? "NORMAL" : "drop" }; }],
    ["qos", (t) => { t.qos[0] = { ...t.qos[0]!, queues: [...t.qos[0]!.queues].reverse() }; }],
    ["mirrors", (t) => { t.mirrors[0] = { ...t.mirrors[0]!, outputVlan: 1 }; }],
    ["monitoring", (t) => { t.monitoring[0] = { ...t.monitoring[0]!, sampling: 999 }; }],
    ["fdb", (t) => { t.fdb[7] = { ...t.fdb[7]!, static: !t.fdb[7]!.static }; }],
    ["neighbours", (t) => { t.neighbours[3] = { ...t.neighbours[3]!, state: "PERMANENT" }; }],
    ["conntrack", (t) => { t.conntrack[1234] = { ...t.conntrack[1234]!, timeoutSec: t.conntrack[1234]!.timeoutSec + 1 }; }],
    ["counters", (t) => { t.counters[0] = { ...t.counters[0]!, rxBytes: t.counters[0]!.rxBytes + 0.5 }; }],
  ];
  for (const [table, mutate] of changes) {
    const t = mapTables(state.tables, (_n, rows) => (rows as unknown[]).slice() as never);
    mutate(t);
    const d = StateDigest.of(t);
    assert.notEqual(d.toString(), d0.toString(), `a change in ${table} changes the digest`);
    const diff = digestDiff(d0.tables(), d.tables());
    assert.equal(diff.length, 1, `only ${table} differs: ${diff.join(", ")}`);
    assert.match(diff[0]!, new RegExp(`^${table} \\(`));
    // Row count unchanged, so the per-table digest differs only in its hash part.
    assert.equal(d.tables()[table].split(":")[0], d0.tables()[table].split(":")[0]);
  }
});

test("digest - a swapped value between two string fields changes the digest", () => {
  const ct = state.tables.conntrack[0]!;
  const a: ConntrackRow = { ...ct, origSrc: "198.18.0.1", origDst: "198.18.0.2" };
  const b: ConntrackRow = { ...ct, origSrc: "198.18.0.2", origDst: "198.18.0.1" };
  assert.notEqual(StateDigest.of({ conntrack: [a] }).toString(), StateDigest.of({ conntrack: [b] }).toString());
  assert.notEqual(StateDigest.of({ acls: [state.tables.acls[0]!] }).toString(), StateDigest.of({ acls: [state.tables.acls[1]!] }).toString());
});

test("digest - digestDiff names every differing table and nothing else", () => {
  const a = StateDigest.of(state.tables).tables();
  const b = StateDigest.of({ ...state.tables, fdb: [], acls: state.tables.acls.slice(1) }).tables();
  const diff = digestDiff(a, b);
  assert.equal(diff.length, 2);
  assert.match(diff[0]!, /^acls \(80:[0-9a-f]{16} vs 79:[0-9a-f]{16}\)$/);
  assert.match(diff[1]!, /^fdb \(300:[0-9a-f]{16} vs 0:0{16}\)$/);
  assert.deepEqual(digestDiff(a, a), []);
  assert.match(digestDiff(a, {}).join(","), /ports \(3:[0-9a-f]+ vs \?\)/);
});

test("digest - host-local fields do not change the digest", () => {
  const d0 = StateDigest.of(state.tables).toString();
  const ports = state.tables.ports.map((p, i) => ({ ...p, ctZone: 500 + i, ofport: 77 + i, name: `tap-${i}` }));
  const conntrack = state.tables.conntrack.map((c) => ({ ...c, zone: c.zone + 1000 }));
  assert.equal(StateDigest.of({ ...state.tables, ports }).toString(), d0);
  assert.equal(StateDigest.of({ ...state.tables, conntrack }).toString(), d0);
  assert.equal(StateDigest.of({ ...state.tables, ports, conntrack }).toString(), d0);
  // Incrementally as well: remove the old row, add the remapped one.
  const d = StateDigest.of(state.tables);
  d.remove("ports", state.tables.ports[0]);
  d.add("ports", { ...state.tables.ports[0]!, name: "other", ofport: 9, ctZone: 9 });
  assert.equal(d.toString(), d0);
});

test("digest - canonicalJson sorts keys at every level", () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [1, { z: 0, y: 1 }], c: null } }), '{"a":{"c":null,"d":[1,{"y":1,"z":0}]},"b":1}');
  assert.equal(canonicalJson([{ b: 2, a: 1 }]), canonicalJson([{ a: 1, b: 2 }]));
  assert.notEqual(canonicalJson(["a", "b"]), canonicalJson(["b", "a"]));
});

test("digest - the incremental digest of a TableSet equals StateDigest.of its final tables", () => {
  const set = new TableSet();
  const empty = new StateDigest().toString();
  assert.equal(set.digest.toString(), empty);
  set.apply({ upserts: blocksOf(state.tables), deletes: {} });
  assert.equal(set.digest.toString(), StateDigest.of(state.tables).toString());

  // A series of changes: updates, deletes, re-adds, no-op deletes, the same key twice in one change.
  const ct = state.tables.conntrack;
  set.apply({
    upserts: blocksOf({ conntrack: ct.slice(0, 100).map((r) => ({ ...r, state: "TIME_WAIT", timeoutSec: 1 })) }),
    deletes: { conntrack: ct.slice(100, 300).map((r) => keyOf("conntrack", r)), fdb: ["no|such"] },
  });
  set.apply({ upserts: blocksOf({ conntrack: ct.slice(150, 200) }), deletes: { acls: ["acl-1", "acl-2"], ports: [state.tables.ports[2]!.ifaceId] } });
  set.apply({ upserts: blocksOf({ acls: [{ ...state.tables.acls[3]!, priority: 1 }, { ...state.tables.acls[3]!, priority: 2 }] }), deletes: {} });
  set.apply({ upserts: blocksOf({ fdb: state.tables.fdb.slice(0, 10).map((r) => ({ ...r, ageSec: 0 })) }), deletes: { fdb: state.tables.fdb.slice(0, 5).map((r) => keyOf("fdb", r)) } });

  const final = set.tables();
  assert.equal(final.conntrack.length, ct.length - 150);
  assert.equal(set.digest.toString(), StateDigest.of(final).toString());
  assert.deepEqual(set.digest.tables(), StateDigest.of(final).tables());
  // And it matches a set built from scratch out of the final rows, in another order.
  const fresh = new TableSet();
  fresh.apply({ upserts: blocksOf(mapTables(final, (_n, rows) => shuffled(rows as unknown[], 5) as never)), deletes: {} });
  assert.equal(fresh.digest.toString(), set.digest.toString());

  set.clear();
  assert.equal(set.digest.toString(), empty);
});
