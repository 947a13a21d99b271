import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeBlock, encodeBlock, MAX_BLOCK_ROWS, type ColumnBlock } from "../../protocol/codec/columnar.js";
import { pack, unpack } from "../../protocol/codec/packr.js";
import { BadRequestError, InvalidStateError, NetmigError } from "../../protocol/errors.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { TABLE_NAMES, TABLES, type ConntrackRow, type TableName } from "../../protocol/state/tables.js";

const state = generateVmState("vm-col", { conntrack: 3000, fdb: 500, acls: 200, ports: 3, neighbours: 40, seed: 3 });

/** encodeBlock → pack → unpack → decodeBlock, as the wire does it. */
function wire(table: TableName, rows: readonly unknown[]): { table: TableName; rows: Record<string, unknown>[] } {
  return decodeBlock(unpack(pack(encodeBlock(table, rows))));
}

/** Asserts `fn` throws a BadRequestError or InvalidStateError whose message matches `re`. */
function rejects(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadRequestError || err instanceof InvalidStateError, `expected a BadRequestError/InvalidStateError, got ${String(err)}`);
    assert.match((err as Error).message, re);
    return true;
  });
}

function colIndex(table: TableName, field: string): number {
  const i = TABLES[table].fields.findIndex((f) => f.name === field);
  assert.ok(i >= 0, `${table}.${field} exists`);
  return i;
}

/** A valid block of a few conntrack rows, with its columns copied so they can be tampered with. */
function ctBlock(n = 4): ColumnBlock {
  return encodeBlock("conntrack", state.tables.conntrack.slice(0, n));
}

test("columnar - every table roundtrips through encodeBlock/pack/unpack/decodeBlock", () => {
  for (const t of TABLE_NAMES) {
    const rows = state.tables[t] as unknown[];
    assert.ok(rows.length > 0, `generated state has ${t} rows`);
    const out = wire(t, rows);
    assert.equal(out.table, t);
    assert.equal(out.rows.length, rows.length, `${t} row count`);
    assert.deepEqual(out.rows, rows, `${t} rows roundtrip`);
  }
  assert.equal(state.tables.conntrack.length, 3000);
});

test("columnar - an empty block roundtrips", () => {
  const out = wire("acls", []);
  assert.deepEqual(out, { table: "acls", rows: [] });
});

test("columnar - boolean, f64 and u32 extremes roundtrip", () => {
  const fdb = [
    { mac: "52:54:00:00:00:01", vlan: 0, ifaceId: "x", ageSec: 0xffffffff, static: true },
    { mac: "52:54:00:00:00:02", vlan: 0xffff, ifaceId: "x", ageSec: 0, static: false },
  ];
  assert.deepEqual(wire("fdb", fdb).rows, fdb);
  const counters = [{ ifaceId: "x", rxPackets: 2 ** 53 - 1, rxBytes: 1.5, txPackets: -0.25, txBytes: 1e300 }];
  assert.deepEqual(wire("counters", counters).rows, counters);
});

test("columnar - a string dictionary over 65535 entries uses u32 indices and roundtrips", () => {
  const base = state.tables.conntrack[0]!;
  const n = 280_000;
  const rows: ConntrackRow[] = [];
  // 66000 distinct labels, each four times: few enough to intern, too many for u16 indices.
  for (let i = 0; i < n; i++) rows.push({ ...base, origSport: i % 65536, labels: `lbl-${i % 66_000}`, state: i % 2 ? "ESTABLISHED" : "TIME_WAIT" });
  const block = encodeBlock("conntrack", rows);
  const labels = block.c[colIndex("conntrack", "labels")] as { d: string[]; i: Uint8Array };
  assert.equal(labels.d.length, 66_000);
  assert.equal(labels.i.byteLength, 4 * n, "u32 indices for a big dictionary");
  const state2 = block.c[colIndex("conntrack", "state")] as { d: string[]; i: Uint8Array };
  assert.equal(state2.d.length, 2);
  assert.equal(state2.i.byteLength, 2 * n, "u16 indices for a small dictionary");
  const out = decodeBlock(unpack(pack(block), 64 * 1024 * 1024));
  assert.equal(out.rows.length, n);
  assert.deepEqual(out.rows[0], rows[0]);
  assert.deepEqual(out.rows[n - 1], rows[n - 1]);
  assert.deepEqual(out.rows[65_536], rows[65_536]);
  assert.deepEqual(out.rows, rows);
});

test("columnar - a dictionary of exactly 65535 entries still uses u16 indices", () => {
  // 65535 distinct values, each four times.
  const n = 4 * 65_535;
  const rows = Array.from({ length: n }, (_, i) => ({ id: `a${i}`, direction: "ingress", priority: 1, table: 0, match: "", actions: `a${i % 65_535}` }));
  const block = encodeBlock("acls", rows);
  const actions = block.c[colIndex("acls", "actions")] as { d: string[]; i: Uint8Array };
  assert.equal(actions.d.length, 65_535);
  assert.equal(actions.i.byteLength, 2 * n);
  assert.deepEqual(decodeBlock(unpack(pack(block), 64 * 1024 * 1024)).rows, rows);
});

test("columnar - a column of mostly distinct strings goes uninterned and roundtrips", () => {
  const rows = Array.from({ length: 1000 }, (_, i) => ({ id: `a${i}`, direction: "ingress", priority: 1, table: 0, match: "", actions: "drop" }));
  const block = encodeBlock("acls", rows);
  const id = block.c[colIndex("acls", "id")] as { s: string[] };
  assert.deepEqual(id.s, rows.map((r) => r.id));
  const actions = block.c[colIndex("acls", "actions")] as { d: string[] };
  assert.deepEqual(actions.d, ["drop"], "a repeated value is still interned");
  assert.deepEqual(decodeBlock(unpack(pack(block))).rows, rows);
  // Plain string columns are checked like dictionaries.
  const c = [...block.c];
  c[colIndex("acls", "id")] = { s: id.s.slice(1) };
  rejects(() => decodeBlock({ ...block, c }), /acls\)\.id: expected 1000 strings/);
  c[colIndex("acls", "id")] = { s: id.s.map((v, i) => (i === 7 ? 7 : v)) };
  rejects(() => decodeBlock({ ...block, c }), /id: row 7 is not a string/);
});

test("columnar - a block with the wrong column count is rejected", () => {
  const b = ctBlock();
  rejects(() => decodeBlock({ ...b, c: b.c.slice(1) }), /conntrack block must have 18 columns/);
  rejects(() => decodeBlock({ ...b, c: [...b.c, new Uint8Array(4)] }), /must have 18 columns/);
  rejects(() => decodeBlock({ t: "conntrack", n: 0, c: "nope" }), /columns/);
});

test("columnar - a numeric column whose byte length does not match n is rejected", () => {
  const b = ctBlock(4);
  const c = [...b.c];
  c[colIndex("conntrack", "origSport")] = new Uint8Array(7); // u16 needs 8
  rejects(() => decodeBlock({ ...b, c }), /origSport: expected 8 bytes of u16/);
  rejects(() => decodeBlock({ ...b, n: 5 }), /expected 5 bytes of u8/); // first column, proto
  const c2 = [...b.c];
  c2[colIndex("conntrack", "status")] = Array.from(new Uint8Array(16)); // not bytes at all
  rejects(() => decodeBlock({ ...b, c: c2 }), /status: expected 16 bytes of u32/);
});

test("columnar - a string index outside the dictionary is rejected", () => {
  const b = ctBlock(4);
  const k = colIndex("conntrack", "state");
  const col = b.c[k] as { d: string[]; i: Uint8Array };
  const idx = new Uint16Array(4);
  idx[2] = col.d.length; // one past the end
  const c = [...b.c];
  c[k] = { d: col.d, i: new Uint8Array(idx.buffer) };
  rejects(() => decodeBlock({ ...b, c }), /state: row 2 has an index outside the dictionary/);
  // Index bytes not matching the row count.
  c[k] = { d: col.d, i: new Uint8Array(6) };
  rejects(() => decodeBlock({ ...b, c }), /state: index length does not match the row count/);
  // A non-string dictionary entry.
  c[k] = { d: [1, 2], i: new Uint8Array(8) };
  rejects(() => decodeBlock({ ...b, c }), /state: dictionary entry 0 is not a string/);
  // Not an interned column.
  c[k] = ["a", "b", "c", "d"];
  rejects(() => decodeBlock({ ...b, c }), /state: expected a string column \{d, i\} or \{s\}/);
});

test("columnar - ip columns carry IPv4 and IPv6 addresses as 16 bytes a row, read back in canonical form", () => {
  const base = state.tables.conntrack[0]!;
  const rows: ConntrackRow[] = [
    { ...base, origSrc: "198.18.0.1", origDst: "198.19.255.254" },
    { ...base, origSrc: "2001:DB8:0:0::1", origDst: "fd00::12:0:0:1", replySrc: "::ffff:198.18.0.9", replyDst: "::" },
  ];
  const block = encodeBlock("conntrack", rows);
  assert.equal((block.c[colIndex("conntrack", "origSrc")] as Uint8Array).byteLength, 32);
  // A column of IPv4 addresses only goes as one word a row.
  const v4 = encodeBlock("conntrack", [rows[0]!, rows[0]!]);
  assert.equal((v4.c[colIndex("conntrack", "origDst")] as { v4: Uint8Array }).v4.byteLength, 8);
  assert.deepEqual(decodeBlock(unpack(pack(v4))).rows, [rows[0], rows[0]]);
  const c4 = [...v4.c];
  c4[colIndex("conntrack", "origDst")] = { v4: new Uint8Array(7) };
  rejects(() => decodeBlock({ ...v4, c: c4 }), /origDst: expected \{v4\} with 8 bytes/);
  const out = decodeBlock(unpack(pack(block))).rows as unknown as ConntrackRow[];
  assert.deepEqual(out[0], rows[0]);
  assert.deepEqual([out[1]!.origSrc, out[1]!.origDst, out[1]!.replySrc, out[1]!.replyDst], ["2001:db8::1", "fd00::12:0:0:1", "198.18.0.9", "::"]);
  const c = [...block.c];
  c[colIndex("conntrack", "replyDst")] = new Uint8Array(31);
  rejects(() => decodeBlock({ ...block, c }), /replyDst: expected 32 bytes of ip/);
  assert.throws(() => encodeBlock("conntrack", [{ ...base, origDst: "198.18.0.256" }]), /origDst is not an IP address/);
});

test("columnar - a bool byte of 2 is rejected", () => {
  const fdb = state.tables.fdb.slice(0, 3);
  const b = encodeBlock("fdb", fdb);
  const c = [...b.c];
  c[colIndex("fdb", "static")] = new Uint8Array([1, 2, 0]);
  rejects(() => decodeBlock({ ...b, c }), /static: row 1 is not a boolean/);
});

test("columnar - an unknown table name is rejected", () => {
  const b = ctBlock();
  rejects(() => decodeBlock({ ...b, t: "routes" }), /unknown table "routes"/);
  rejects(() => decodeBlock({ ...b, t: "__proto__" }), /unknown table "__proto__"/);
  rejects(() => decodeBlock({ ...b, t: "toString" }), /unknown table "toString"/);
  rejects(() => decodeBlock({ ...b, t: 3 }), /unknown table 3/);
  rejects(() => decodeBlock(null), /expected a column block map/);
  rejects(() => decodeBlock([b.t, b.n, b.c]), /expected a column block map/);
});

test("columnar - a negative, fractional or huge row count is rejected", () => {
  const b = ctBlock();
  for (const n of [-1, 1.5, MAX_BLOCK_ROWS + 1, 2 ** 32, Number.MAX_SAFE_INTEGER, Infinity, NaN, "4"]) {
    rejects(() => decodeBlock({ ...b, n }), /row count must be an integer from 0 to 2000000/);
  }
});

test("columnar - a json column holding a class instance is rejected", () => {
  const ports = state.tables.ports.slice(0, 2);
  const b = encodeBlock("ports", ports);
  const k = colIndex("ports", "externalIds");
  class Sneaky {
    "iface-id" = "x";
  }
  for (const bad of [new Sneaky(), new Date(0), new Map([["a", "b"]]), { nested: new Sneaky() }, Object.create({ polluted: true }) as object]) {
    const c = [...b.c];
    c[k] = [ports[0]!.externalIds, bad];
    rejects(() => decodeBlock({ ...b, c }), /externalIds: row 1 is not plain JSON data/);
  }
  const c = [...b.c];
  c[colIndex("ports", "ips")] = [["198.18.0.1"]]; // one value for two rows
  rejects(() => decodeBlock({ ...b, c }), /ips: expected an array of 2 values/);
});

test("columnar - NaN and infinities in an f64 column are rejected", () => {
  const counters = state.tables.counters;
  const b = encodeBlock("counters", counters);
  const k = colIndex("counters", "rxBytes");
  for (const v of [NaN, Infinity, -Infinity]) {
    const f = new Float64Array(counters.length);
    f[counters.length - 1] = v;
    const c = [...b.c];
    c[k] = new Uint8Array(f.buffer);
    rejects(() => decodeBlock({ ...b, c }), new RegExp(`rxBytes: row ${counters.length - 1} is not a finite number`));
  }
});

test("columnar - the error names the block's place", () => {
  const b = ctBlock();
  rejects(() => decodeBlock({ ...b, n: -1 }, "chunk.blocks[3]"), /^chunk\.blocks\[3\]: /);
  const c = [...b.c];
  c[0] = new Uint8Array(1);
  rejects(() => decodeBlock({ ...b, c }, "chunk.blocks[3]"), /^chunk\.blocks\[3\]\(conntrack\)\.proto: /);
});

test("columnar - misaligned column bytes decode correctly", () => {
  const rows = state.tables.conntrack.slice(0, 257);
  const block = encodeBlock("conntrack", rows);
  const misaligned = (col: unknown): unknown => {
    if (col instanceof Uint8Array) {
      const buf = new Uint8Array(col.byteLength + 3);
      buf.set(col, 1); // byteOffset 1: misaligned for u16, u32 and f64
      const view = buf.subarray(1, 1 + col.byteLength);
      assert.equal(view.byteOffset % 2, 1);
      return view;
    }
    if (col && typeof col === "object" && !Array.isArray(col) && "i" in col) {
      const s = col as { d: string[]; i: Uint8Array };
      return { d: s.d, i: misaligned(s.i) };
    }
    return col;
  };
  const odd = { ...block, c: block.c.map(misaligned) };
  assert.deepEqual(decodeBlock(odd).rows, rows);
  // Also for f64 and a u32-indexed dictionary, and the input is not modified.
  const counters = state.tables.counters;
  const cb = encodeBlock("counters", counters);
  const before = cb.c.map((x) => (x instanceof Uint8Array ? Array.from(x) : x));
  assert.deepEqual(decodeBlock({ ...cb, c: cb.c.map(misaligned) }).rows, counters);
  assert.deepEqual(cb.c.map((x) => (x instanceof Uint8Array ? Array.from(x) : x)), before);
  const big = Array.from({ length: 280_000 }, (_, i) => ({ ifaceId: `if-${i % 66_000}`, rxPackets: i, rxBytes: i * 2, txPackets: 0, txBytes: 0.5 }));
  const bb = encodeBlock("counters", big);
  assert.equal((bb.c[0] as { i: Uint8Array }).i.byteLength, 4 * big.length);
  assert.deepEqual(decodeBlock({ ...bb, c: bb.c.map(misaligned) }).rows, big);
});

test("columnar - decoded rows are fresh plain objects that pass as valid rows", () => {
  const out = wire("ports", state.tables.ports);
  for (const r of out.rows) {
    assert.equal(Object.getPrototypeOf(r), Object.prototype);
    assert.deepEqual(Object.keys(r), TABLES.ports.fields.map((f) => f.name));
  }
  assert.notEqual(out.rows[0], state.tables.ports[0]);
});

test("columnar - hostile blocks throw only netmig errors", () => {
  const b = ctBlock(2);
  const variants: unknown[] = [
    { ...b, c: b.c.map(() => null) },
    { ...b, c: b.c.map(() => ({})) },
    { ...b, c: b.c.map(() => ({ d: null, i: null })) },
    { ...b, c: b.c.map(() => 5) },
    { t: "ports", n: 1, c: TABLES.ports.fields.map(() => undefined) },
    { t: "ports", n: 2 },
  ];
  for (const v of variants) {
    assert.throws(() => decodeBlock(v), (e: unknown) => e instanceof NetmigError);
  }
});
