import { test } from "node:test";
import assert from "node:assert/strict";
import { generateVmState } from "../../protocol/state/generate.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { TableSet } from "../../protocol/state/table-set.js";
import { keyOf, TABLE_NAMES, type AclRow, type FdbRow, type TableName } from "../../protocol/state/tables.js";
import { blocksOf } from "../../protocol/state/row-block.js";
import { acl, loaded, norm, state } from "./table-set-fixtures.js";

test("table-set - apply bumps the generation once per change and keeps rows by key", () => {
  const s = new TableSet();
  assert.equal(s.gen, 0);
  assert.equal(s.apply({ upserts: blocksOf(state.tables), deletes: {} }), 1);
  assert.equal(s.gen, 1);
  for (const t of TABLE_NAMES) assert.equal(s.count(t), state.tables[t].length, t);
  assert.deepEqual(s.counts().conntrack, 500);
  assert.equal(s.apply({ upserts: {}, deletes: {} }), 2);
  const k = keyOf("acls", state.tables.acls[0]);
  assert.deepEqual(s.get("acls", k), state.tables.acls[0]);
  s.apply({ upserts: blocksOf({ acls: [{ ...state.tables.acls[0]!, priority: 7 }] }), deletes: {} });
  assert.equal(s.count("acls"), 50);
  assert.equal((s.get("acls", k) as unknown as AclRow).priority, 7);
  // Deleting a key that does not exist is a no-op.
  s.apply({ upserts: {}, deletes: { acls: ["nope"] } });
  assert.equal(s.count("acls"), 50);
});

test("table-set - full() and rows() give every current row", () => {
  const s = loaded();
  const full = s.full();
  for (const t of TABLE_NAMES) {
    assert.equal(full[t]?.length ?? 0, state.tables[t].length);
    assert.equal(Array.from(s.rows(t as TableName)).length, state.tables[t].length);
  }
  assert.deepEqual(norm({ upserts: full, deletes: {} }), norm({ upserts: blocksOf(state.tables), deletes: {} }));
});

test("table-set - appended rows are found, replaced and removed once indexed, and the digest follows", () => {
  const s = new TableSet();
  const ct = state.tables.conntrack;
  assert.equal(s.append({ upserts: blocksOf({ conntrack: ct.slice(0, 200) } )}), 1);
  assert.equal(s.append({ upserts: blocksOf({ conntrack: ct.slice(200), fdb: state.tables.fdb } )}), 2);
  assert.equal(s.unindexed, ct.length + state.tables.fdb.length);
  assert.equal(s.count("conntrack"), ct.length);
  assert.equal(s.digest.toString(), StateDigest.of({ conntrack: ct, fdb: state.tables.fdb }).toString());
  // A slice at a time, then the rest on the first keyed operation.
  assert.equal(s.indexSome(100), ct.length + state.tables.fdb.length - 100);
  const k0 = keyOf("conntrack", ct[0]);
  assert.deepEqual(s.get("conntrack", k0), ct[0]);
  assert.equal(s.unindexed, 0);
  s.apply({ upserts: blocksOf({ conntrack: [{ ...ct[1]!, timeoutSec: 1 }] }), deletes: { conntrack: [k0], fdb: [keyOf("fdb", state.tables.fdb[3])] } });
  assert.equal(s.get("conntrack", k0), undefined);
  assert.equal((s.get("conntrack", keyOf("conntrack", ct[1])) as { timeoutSec: number }).timeoutSec, 1);
  const want = { conntrack: [{ ...ct[1]!, timeoutSec: 1 }, ...ct.slice(2)], fdb: state.tables.fdb.filter((_, i) => i !== 3) };
  assert.equal(s.digest.toString(), StateDigest.of(want).toString());
  assert.deepEqual(norm({ upserts: s.full(), deletes: {} }), norm({ upserts: blocksOf(want), deletes: {} }));
});

test("table-set - rows appended twice under one key resolve to the later one when indexed", () => {
  const s = new TableSet();
  const a = acl(1, 10);
  const b = acl(1, 20);
  s.append({ upserts: blocksOf({ acls: [a, acl(2), b, acl(3)] } )});
  assert.equal(s.indexSome(Infinity), 0);
  assert.equal(s.count("acls"), 3);
  assert.equal((s.get("acls", "acl-1") as unknown as AclRow).priority, 20);
  assert.equal(s.digest.toString(), StateDigest.of({ acls: [b, acl(2), acl(3)] }).toString());
});

test("table-set - random upserts, deletes and appends agree with a plain map, rows, counts and digest alike", () => {
  // A small key space, so keys are replaced, deleted and re-added often and
  // probe runs in the index are long (the backward-shift deletion is exercised).
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const fdbRow = (k: number, age: number): FdbRow => ({ mac: `52:54:00:00:00:${(k & 0xff).toString(16).padStart(2, "0")}`, vlan: k >> 8, ifaceId: `if${k % 3}`, ageSec: age, static: age % 2 === 0 });
  const s = new TableSet();
  const model = new Map<string, FdbRow>();
  for (let step = 0; step < 4000; step++) {
    const op = rand(10);
    if (op < 5) {
      const rows = Array.from({ length: 1 + rand(4) }, () => fdbRow(rand(600), rand(1000)));
      s.apply({ upserts: blocksOf({ fdb: rows }), deletes: {} });
      for (const r of rows) model.set(keyOf("fdb", r), r);
    } else if (op < 8) {
      const keys = Array.from({ length: 1 + rand(4) }, () => keyOf("fdb", fdbRow(rand(600), 0)));
      s.apply({ upserts: {}, deletes: { fdb: keys } });
      for (const k of keys) model.delete(k);
    } else if (model.size === 0 || op === 9) {
      // Rows absent from the set, appended without lookups (distinct among themselves).
      const fresh = new Map<string, FdbRow>();
      for (let i = 0; i < 1 + rand(50); i++) {
        const r = fdbRow(600 + rand(400), rand(1000));
        if (!model.has(keyOf("fdb", r))) fresh.set(keyOf("fdb", r), r);
      }
      s.append({ upserts: blocksOf({ fdb: Array.from(fresh.values()) } )});
      for (const [k, r] of fresh) model.set(k, r);
      if (rand(2) === 0) s.indexSome(rand(20));
    } else {
      const k = Array.from(model.keys())[rand(model.size)]!;
      assert.deepEqual(s.get("fdb", k), model.get(k));
    }
    if (step % 500 === 0 || step === 3999) {
      assert.equal(s.count("fdb"), model.size, `count at step ${step}`);
      for (const [k, r] of model) assert.deepEqual(s.get("fdb", k), r, `row ${k} at step ${step}`);
      assert.equal(s.digest.toString(), StateDigest.of({ fdb: Array.from(model.values()) }).toString(), `digest at step ${step}`);
      assert.deepEqual(norm({ upserts: s.full(), deletes: {} }), norm({ upserts: blocksOf({ fdb: Array.from(model.values()) }), deletes: {} }));
    }
  }
  assert.equal(s.get("fdb", "52:54:00:00:00:00|99"), undefined);
});

test("table-set - a large appended table is indexed, emptied key by key, and refilled", () => {
  const s = new TableSet();
  const ct = generateVmState("vm-big", { conntrack: 20_000, seed: 9 }).tables.conntrack;
  s.append({ upserts: blocksOf({ conntrack: ct } )});
  assert.equal(s.indexSome(Infinity), 0);
  for (let i = 0; i < ct.length; i += 2) assert.ok(s.apply({ upserts: {}, deletes: { conntrack: [keyOf("conntrack", ct[i])] } }));
  assert.equal(s.count("conntrack"), ct.length / 2);
  for (let i = 1; i < ct.length; i += 2) assert.deepEqual(s.get("conntrack", keyOf("conntrack", ct[i])), ct[i]);
  for (let i = 0; i < ct.length; i += 2) assert.equal(s.get("conntrack", keyOf("conntrack", ct[i])), undefined);
  s.apply({ upserts: blocksOf({ conntrack: ct }), deletes: {} });
  assert.equal(s.count("conntrack"), ct.length);
  assert.equal(s.digest.toString(), StateDigest.of({ conntrack: ct }).toString());
  s.clear();
  assert.equal(s.count("conntrack"), 0);
  assert.equal(s.digest.toString(), new StateDigest().toString());
  assert.equal(s.get("conntrack", keyOf("conntrack", ct[1])), undefined);
});

test("table-set - a table's string pool is trimmed once replaced rows leave it mostly garbage", () => {
  const s = new TableSet();
  s.apply({ upserts: blocksOf({ acls: [acl(1), acl(2)] }), deletes: {} });
  const matchField = 4;
  // One change rewriting acl-1's match 70000 times: every value is interned, then all but one are garbage.
  const rows = Array.from({ length: 70_000 }, (_, i) => ({ ...acl(1), match: `tcp,tp_dst=${i}` }));
  s.apply({ upserts: blocksOf({ acls: rows }), deletes: {} });
  assert.deepEqual(s.get("acls", "acl-1"), { ...acl(1), match: "tcp,tp_dst=69999" });
  assert.deepEqual(s.get("acls", "acl-2"), acl(2));
  assert.equal(s.digest.toString(), StateDigest.of({ acls: [{ ...acl(1), match: "tcp,tp_dst=69999" }, acl(2)] }).toString());
  const pool = s.full().acls!.dicts[matchField]!;
  assert.ok(pool.length < 100, `pool holds ${pool.length} strings after trimming`);
  assert.ok(pool.includes("tcp,tp_dst=69999"));
});

test("table-set - blocks with dictionaries of their own, or another set's, append and upsert alike", () => {
  const ct = generateVmState("vm-dict", { conntrack: 3000, seed: 3 }).tables.conntrack;
  const a = new TableSet();
  a.append({ upserts: blocksOf({ conntrack: ct.slice(0, 2000) }) });
  // b takes a's rows as a's own blocks (ids into a's pool), then more from a block of its own.
  const b = new TableSet();
  b.append({ upserts: a.full() });
  b.apply({ upserts: blocksOf({ conntrack: ct.slice(2000) }), deletes: {} });
  b.apply({ upserts: { conntrack: a.full().conntrack!.slice(0, 10) }, deletes: {} });
  assert.equal(b.count("conntrack"), 3000);
  assert.equal(b.digest.toString(), StateDigest.of({ conntrack: ct }).toString());
  for (const i of [0, 1999, 2000, 2999]) assert.deepEqual(b.get("conntrack", keyOf("conntrack", ct[i])), ct[i]);
});

test("table-set - blocks from full() keep the rows of their time while the set changes (copy on write)", () => {
  const s = loaded();
  const before = s.full();
  const want = norm({ upserts: blocksOf(state.tables), deletes: {} });
  const ct = state.tables.conntrack;
  s.apply({ upserts: blocksOf({ conntrack: [{ ...ct[0]!, timeoutSec: 1 }], ports: [{ ...state.tables.ports[0]!, mac: "52:54:00:ff:ff:ff" }] }), deletes: { conntrack: [keyOf("conntrack", ct[1])] } });
  s.append({ upserts: blocksOf({ acls: [acl(7000)] }) });
  assert.deepEqual(norm({ upserts: before, deletes: {} }), want);
  const after = s.full();
  s.clear();
  assert.equal(after.conntrack!.length, ct.length - 1);
  assert.equal(after.conntrack!.rows().find((r) => keyOf("conntrack", r) === keyOf("conntrack", ct[0]))!.timeoutSec, 1);
});

test("table-set - columns a full read shares are copied back a slice at a time, and a change midway finishes the copy first", () => {
  const ct = generateVmState("vm-cow", { conntrack: 5000, seed: 4 }).tables.conntrack;
  const want = norm({ upserts: blocksOf({ conntrack: ct }), deletes: {} });
  for (const slices of [0, 1, 100]) {
    const s = new TableSet();
    s.apply({ upserts: blocksOf({ conntrack: ct }), deletes: {} });
    const before = s.full();
    let left = Infinity;
    for (let i = 0; i < slices && left > 0; i++) left = s.unshareSome(1000);
    if (slices === 100) assert.equal(left, 0, "5000 rows copied in slices of 1000");
    if (slices === 1) assert.equal(left, 4000);
    s.apply({ upserts: blocksOf({ conntrack: [{ ...ct[0]!, timeoutSec: 2 }] }), deletes: { conntrack: [keyOf("conntrack", ct[1])] } });
    assert.deepEqual(norm({ upserts: { conntrack: before.conntrack! }, deletes: {} }), want, `after ${slices} slices`);
    assert.equal((s.get("conntrack", keyOf("conntrack", ct[0])) as { timeoutSec: number }).timeoutSec, 2);
    assert.equal(s.count("conntrack"), ct.length - 1);
    assert.equal(s.unshareSome(10), 0, "nothing shared after a change");
  }
});

test("table-set - the key hash computed from columns equals the hash of the key's text, for every table, IPv4 and IPv6", async () => {
  const { keyHash, ROW_CODE } = await import("../../protocol/state/row-code.js");
  const { RowBlock } = await import("../../protocol/state/row-block.js");
  const st = generateVmState("vm-kh", { conntrack: 2000, fdb: 300, acls: 50, ports: 3, seed: 8 });
  const base = st.tables.conntrack[0]!;
  const extra = [
    { ...base, origSrc: "2001:db8::1", origDst: "fe80::a:0:0:1", origSport: 0, origDport: 65535, icmpId: 65535, proto: 255 },
    { ...base, origSrc: "0.0.0.0", origDst: "255.255.255.255", origSport: 10, origDport: 100 },
    { ...base, origSrc: "::", origDst: "::ffff:198.18.0.7", origSport: 9, origDport: 99 },
  ];
  let checked = 0;
  for (const t of TABLE_NAMES) {
    const rows = t === "conntrack" ? [...st.tables.conntrack, ...extra] : st.tables[t];
    if (!rows.length) continue;
    const block = RowBlock.of(t, rows);
    for (let i = 0; i < block.length; i++) {
      assert.equal(ROW_CODE[t].keyHashAt(block.cols, block.dicts, i), keyHash(block.keyAt(i)), `${t} row ${i}: ${block.keyAt(i)}`);
      checked++;
    }
  }
  assert.ok(checked > 2000);
  // And a table indexed from columns finds rows by their keys' text.
  const s = new TableSet();
  s.append({ upserts: blocksOf({ conntrack: [...st.tables.conntrack, ...extra] }) });
  assert.equal(s.indexSome(Infinity), 0);
  for (const r of extra) assert.deepEqual(s.get("conntrack", keyOf("conntrack", r)), { ...r, origDst: r.origDst === "::ffff:198.18.0.7" ? "198.18.0.7" : r.origDst });
});

test("table-set - ip columns stay one word a row while every address is IPv4, widen on the first IPv6 one, and read, key, index and digest alike", async () => {
  const { WideIpColumn, widen } = await import("../../protocol/state/ip-column.js");
  const { RowBlock } = await import("../../protocol/state/row-block.js");
  const { encodeColumns } = await import("../../protocol/codec/columnar.js");
  const ct = generateVmState("vm-ipw", { conntrack: 3000, seed: 11 }).tables.conntrack;
  const v6 = { ...ct[0]!, origSrc: "2001:db8::7", replyDst: "2001:db8::7", origSport: 1, origDport: 2 };
  const col = (s: TableSet, name: string) => s.full().conntrack!.column(name);

  const a = new TableSet();
  a.apply({ upserts: blocksOf({ conntrack: ct }), deletes: {} });
  assert.ok(!(col(a, "origSrc") instanceof WideIpColumn));
  assert.equal(col(a, "origSrc").length, ct.length, "one word a row");
  const before = a.full();
  a.apply({ upserts: blocksOf({ conntrack: [v6] }), deletes: {} });
  assert.ok(col(a, "origSrc") instanceof WideIpColumn, "widened by the IPv6 row");
  assert.ok(!(col(a, "origDst") instanceof WideIpColumn), "only the column that holds it");
  assert.ok(!(before.conntrack!.column("origSrc") instanceof WideIpColumn), "a block read earlier keeps its column");
  assert.deepEqual(a.get("conntrack", keyOf("conntrack", v6)), v6);
  for (const r of [ct[0]!, ct[1234]!, ct[2999]!]) assert.deepEqual(a.get("conntrack", keyOf("conntrack", r)), r);

  // The same rows reached other ways: one wide block, narrow then wide appends, upserts in the other order.
  const b = new TableSet();
  b.append({ upserts: blocksOf({ conntrack: [v6, ...ct] }) });
  const c = new TableSet();
  c.append({ upserts: blocksOf({ conntrack: ct }) });
  c.append({ upserts: blocksOf({ conntrack: [v6] }) });
  const d = new TableSet();
  d.apply({ upserts: blocksOf({ conntrack: [v6] }), deletes: {} });
  d.apply({ upserts: blocksOf({ conntrack: ct }), deletes: {} });
  for (const s of [b, c, d]) {
    assert.equal(s.indexSome(Infinity), 0);
    assert.equal(s.digest.toString(), a.digest.toString());
    assert.deepEqual(norm({ upserts: s.full(), deletes: {} }), norm({ upserts: a.full(), deletes: {} }));
    assert.deepEqual(s.get("conntrack", keyOf("conntrack", ct[77])), ct[77]);
  }

  // A wide block of IPv4 addresses only appends to a narrow column without widening it.
  const block = RowBlock.of("conntrack", ct.slice(0, 100));
  const k = block.cols.indexOf(block.column("origSrc"));
  const wideCols = block.cols.slice();
  wideCols[k] = widen(block.column("origSrc") as Uint32Array);
  const e = new TableSet();
  e.append({ upserts: { conntrack: new RowBlock("conntrack", 100, wideCols, block.dicts) } });
  assert.ok(!(col(e, "origSrc") instanceof WideIpColumn));
  assert.deepEqual(e.full().conntrack!.rows(), ct.slice(0, 100));

  // Once the IPv6 row is gone the wide column goes on the wire as IPv4 again.
  a.apply({ upserts: {}, deletes: { conntrack: [keyOf("conntrack", v6)] } });
  assert.ok("v4" in (encodeColumns(a.full().conntrack!).c[k] as object));
  const plain = new TableSet();
  plain.apply({ upserts: blocksOf({ conntrack: ct }), deletes: {} });
  assert.equal(a.digest.toString(), plain.digest.toString());

  // Joining narrow and wide blocks gives a wide block with every row.
  const joined = RowBlock.concat("conntrack", [RowBlock.of("conntrack", ct.slice(0, 10)), RowBlock.of("conntrack", [v6])]);
  assert.ok(joined.column("origSrc") instanceof WideIpColumn);
  assert.deepEqual(joined.rows(), [...ct.slice(0, 10), v6]);
});

test("table-set - a table's typed columns are carved from one buffer, so a big table is one allocation (freed back to the system at once)", () => {
  const s = new TableSet();
  s.apply({ upserts: blocksOf({ conntrack: state.tables.conntrack }), deletes: {} });
  const typed = (set: TableSet) => set.full().conntrack!.cols.filter((c) => !Array.isArray(c)) as unknown as ArrayBufferView[];
  const buffers = new Set(typed(s).map((c) => c.buffer));
  assert.equal(buffers.size, 1, "one buffer for every typed column");
  // Growing and copying on write keep it so.
  s.apply({ upserts: blocksOf({ conntrack: generateVmState("vm-ts2", { conntrack: 3000, seed: 9 }).tables.conntrack }), deletes: {} });
  assert.equal(new Set(typed(s).map((c) => c.buffer)).size, 1);
  assert.ok(!buffers.has(typed(s)[0]!.buffer), "the table grew into a new buffer");
});

test("table-set - an upsert finds its row by key fields across ip widths and dictionaries: it replaces, never duplicates", async () => {
  const { WideIpColumn, widen } = await import("../../protocol/state/ip-column.js");
  const { RowBlock } = await import("../../protocol/state/row-block.js");
  const ct = generateVmState("vm-ipx", { conntrack: 200, fdb: 50, seed: 12 }).tables;
  const v6 = { ...ct.conntrack[0]!, origSrc: "2001:db8::9", origSport: 3 };
  const changed = ct.conntrack.slice(0, 20).map((r) => ({ ...r, timeoutSec: 4242 }));
  // A wide table (it holds an IPv6 address) takes narrow blocks, and a narrow table takes wide blocks of IPv4 rows.
  const wideTable = new TableSet();
  wideTable.apply({ upserts: blocksOf({ conntrack: [v6, ...ct.conntrack] }), deletes: {} });
  assert.ok(wideTable.full().conntrack!.column("origSrc") instanceof WideIpColumn);
  const narrowTable = new TableSet();
  narrowTable.apply({ upserts: blocksOf({ conntrack: ct.conntrack }), deletes: {} });
  const narrow = RowBlock.of("conntrack", changed);
  const k = narrow.cols.indexOf(narrow.column("origSrc"));
  const wideCols = narrow.cols.slice();
  wideCols[k] = widen(narrow.column("origSrc") as Uint32Array);
  const wide = new RowBlock("conntrack", changed.length, wideCols, narrow.dicts);
  for (const [s, block, rows] of [[wideTable, narrow, 201], [narrowTable, wide, 200]] as const) {
    s.apply({ upserts: { conntrack: block }, deletes: {} });
    assert.equal(s.count("conntrack"), rows, "replaced, not added");
    for (const r of changed) assert.deepEqual(s.get("conntrack", keyOf("conntrack", r)), r);
  }
  // fdb keys hold a string: a block with a dictionary of its own (other ids for the same strings) replaces too.
  const fdb = new TableSet();
  fdb.apply({ upserts: blocksOf({ fdb: ct.fdb }), deletes: {} });
  const relearned = ct.fdb.slice().reverse().map((r) => ({ ...r, ageSec: 99 }));
  fdb.apply({ upserts: blocksOf({ fdb: relearned }), deletes: {} });
  assert.equal(fdb.count("fdb"), ct.fdb.length);
  assert.equal(fdb.digest.toString(), StateDigest.of({ fdb: relearned }).toString());
});
