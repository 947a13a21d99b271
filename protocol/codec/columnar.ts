/**
 * Columnar encoding of table rows: one typed array per numeric field, strings
 * interned per column, small nested values as plain arrays. A block is plain
 * msgpack data:
 *
 *   { t: "conntrack", n: 1000, c: [ col0, col1, ... ] }   // columns in field order
 *
 *   u8/bool   bytes (n)            u16  bytes (2n, little-endian)
 *   u32       bytes (4n, LE)       f64  bytes (8n, LE)
 *   ip        bytes (16n): per row four u32 words (LE), each the big-endian
 *             value of four address bytes; IPv4 as ::ffff:a.b.c.d (see ip.ts)
 *             { v4: bytes (4n) }         // or, when every row is IPv4, the last word alone
 *   str       { d: string[], i: bytes }  // interned: i holds u16 or u32 indices into d, by d's size
 *             { s: string[] }            // or plain, when most values are distinct
 *   json      plain array (n)
 *
 * Blocks are encoded from and decoded into `RowBlock`s (the in-memory column
 * form): fixed-width columns are copied as bytes, string columns interned
 * from or into dictionaries. Decoding checks every length, index and value
 * against the table descriptor (any 16 bytes are a valid address).
 */
import { endianness } from "node:os";
import { BadRequestError, InvalidStateError } from "../errors.js";
import { TABLES, isTableName, type FieldSpec, type TableName } from "../state/tables.js";
import { checkField, isPlainJson } from "../state/validate.js";
import { allV4, lanesOf, narrow, WideIpColumn } from "../state/ip-column.js";
import { RowBlock, setBlock, type Blocks } from "../state/row-block.js";

if (endianness() !== "LE") throw new Error("netmig's columnar codec assumes a little-endian host");

export interface ColumnBlock {
  t: TableName;
  n: number;
  c: unknown[];
}

interface StrColumn {
  d: string[];
  i: Uint8Array;
}

interface RawStrColumn {
  s: string[];
}

/** Smaller blocks are always interned (it costs next to nothing). */
const MIN_INTERN_CHECK_ROWS = 64;
/** Above this share of distinct values, strings go uninterned. */
const MAX_DISTINCT_SHARE = 0.25;

/** Bytes per row of the fixed-width column types (an ip address: four u32 words, see ip.ts). */
const WIDTH: Record<string, number> = { u8: 1, bool: 1, u16: 2, u32: 4, f64: 8, ip: 16 };

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * A str column as it goes on the wire, from ids into `dict`: the strings it
 * uses, interned (`{d, i}`), or plain (`{s}`) when most are distinct. The ids
 * used are compacted into a dictionary of this column's own, so a block cut
 * from a large table carries only its own strings.
 */
function strColumn(ids: Uint32Array, dict: readonly string[], n: number): StrColumn | RawStrColumn {
  const local: string[] = [];
  const idx = new Uint32Array(n);
  if (dict.length <= 8 * n + 1024) {
    const seen = new Int32Array(dict.length).fill(-1);
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      let k = seen[id]!;
      if (k < 0) {
        seen[id] = k = local.length;
        local.push(dict[id]!);
      }
      idx[i] = k;
    }
  } else {
    const seen = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      let k = seen.get(id);
      if (k === undefined) {
        seen.set(id, (k = local.length));
        local.push(dict[id]!);
      }
      idx[i] = k;
    }
  }
  // Interning pays off for repeated values (states, a VM's own addresses);
  // a column of mostly distinct values (peer addresses) goes as plain strings.
  if (n >= MIN_INTERN_CHECK_ROWS && local.length > n * MAX_DISTINCT_SHARE) {
    const values = new Array<string>(n);
    for (let i = 0; i < n; i++) values[i] = local[idx[i]!]!;
    return { s: values };
  }
  return { d: local, i: local.length <= 0xffff ? bytesOf(Uint16Array.from(idx)) : bytesOf(idx) };
}

/** An ip column as it goes on the wire: one word a row when every row is IPv4, four otherwise. */
function ipColumn(col: Uint32Array, n: number): Uint8Array | { v4: Uint8Array } {
  return allV4(col, n) ? { v4: bytesOf(narrow(col, n)) } : bytesOf(col);
}

/** Encodes a block of rows (already valid) for the wire. */
export function encodeColumns(block: RowBlock): ColumnBlock {
  const n = block.length;
  const fields = TABLES[block.table].fields;
  return {
    t: block.table,
    n,
    c: fields.map((fl, k) => {
      const col = block.cols[k]!;
      if (fl.type === "json") {
        const a = col as unknown[];
        return a.length === n ? a : a.slice(0, n);
      }
      const a = col as Uint8Array | Uint16Array | Uint32Array | Float64Array;
      const l = lanesOf(a);
      const exact = a.length === n * l ? a : a.subarray(0, n * l);
      if (fl.type === "str") return strColumn(exact as Uint32Array, block.dicts[k]!, n);
      if (fl.type === "ip") return ipColumn(exact as Uint32Array, n);
      return bytesOf(exact);
    }),
  };
}

/** Encodes rows (objects, already valid) of one table. */
export function encodeBlock(table: TableName, rows: readonly unknown[]): ColumnBlock {
  return encodeColumns(RowBlock.of(table, rows));
}

/** A typed view over bytes, copying only when the bytes are misaligned. */
function typed<T extends Uint16Array | Uint32Array | Float64Array>(
  C: { new (b: ArrayBuffer, o: number, l: number): T; BYTES_PER_ELEMENT: number },
  b: Uint8Array,
): T {
  const w = C.BYTES_PER_ELEMENT;
  if (b.byteOffset % w === 0) return new C(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / w);
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return new C(copy.buffer, 0, b.byteLength / w);
}

function bad(where: string, msg: string): never {
  throw new BadRequestError(`${where}: ${msg}`);
}

/** Validates one encoded column; returns its values (typed, or plain strings or json) and, for an interned string column, its dictionary. */
function checkColumn(spec: FieldSpec, col: unknown, n: number, where: string): { col: unknown; dict: string[] | null } {
  const w = `${where}.${spec.name}`;
  if (spec.type === "ip" && col !== null && typeof col === "object" && !(col instanceof Uint8Array)) {
    const v4 = (col as { v4?: unknown }).v4;
    if (!(v4 instanceof Uint8Array) || v4.byteLength !== 4 * n) bad(w, `expected {v4} with ${4 * n} bytes`);
    return { col: typed(Uint32Array, v4), dict: null };
  }
  const width = WIDTH[spec.type];
  if (width !== undefined) {
    if (!(col instanceof Uint8Array) || col.byteLength !== n * width) bad(w, `expected ${n * width} bytes of ${spec.type}`);
    const b = col as Uint8Array;
    switch (spec.type) {
      case "u8":
        return { col: b, dict: null };
      case "bool":
        for (let i = 0; i < n; i++) if (b[i]! > 1) bad(w, `row ${i} is not a boolean`);
        return { col: b, dict: null };
      case "u16":
        return { col: typed(Uint16Array, b), dict: null };
      case "u32":
        return { col: typed(Uint32Array, b), dict: null };
      case "ip": {
        const w = typed(Uint32Array, b);
        return { col: new WideIpColumn(w.buffer, w.byteOffset, w.length), dict: null };
      }
      default: {
        const a = typed(Float64Array, b);
        for (let i = 0; i < n; i++) if (!Number.isFinite(a[i]!)) bad(w, `row ${i} is not a finite number`);
        return { col: a, dict: null };
      }
    }
  }
  if (spec.type === "str") {
    const raw = col as RawStrColumn;
    if (raw !== null && typeof raw === "object" && Array.isArray(raw.s)) {
      const v = raw.s;
      if (v.length !== n) bad(w, `expected ${n} strings`);
      for (let i = 0; i < n; i++) if (typeof v[i] !== "string" || v[i]!.length > 4096) bad(w, `row ${i} is not a string of at most 4096 characters`);
      return { col: v, dict: null };
    }
    const c = col as StrColumn;
    if (c === null || typeof c !== "object" || !Array.isArray(c.d) || !(c.i instanceof Uint8Array)) bad(w, "expected a string column {d, i} or {s}");
    const d = c.d;
    for (let k = 0; k < d.length; k++) if (typeof d[k] !== "string" || d[k]!.length > 4096) bad(w, `dictionary entry ${k} is not a string of at most 4096 characters`);
    const idx = d.length <= 0xffff ? (c.i.byteLength === 2 * n ? typed(Uint16Array, c.i) : null) : c.i.byteLength === 4 * n ? typed(Uint32Array, c.i) : null;
    if (!idx) bad(w, "index length does not match the row count");
    const size = d.length;
    for (let i = 0; i < n; i++) if (idx[i]! >= size) bad(w, `row ${i} has an index outside the dictionary`);
    return { col: idx, dict: d };
  }
  // json
  if (!Array.isArray(col) || col.length !== n) bad(w, `expected an array of ${n} values`);
  for (let i = 0; i < n; i++) {
    const v = (col as unknown[])[i];
    if (!isPlainJson(v)) bad(w, `row ${i} is not plain JSON data`);
    const p = checkField(spec, v);
    if (p) throw new InvalidStateError(`${w}: row ${i} ${p}`);
  }
  return { col, dict: null };
}

/** Maximum rows a single block may claim (guards allocation on hostile input). */
export const MAX_BLOCK_ROWS = 2_000_000;

/** Decodes and validates a block received from the wire. */
export function decodeColumns(raw: unknown, where = "block"): RowBlock {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) bad(where, "expected a column block map");
  const b = raw as Record<string, unknown>;
  if (typeof b.t !== "string" || !isTableName(b.t)) bad(where, `unknown table ${JSON.stringify(b.t)}`);
  const table = b.t as TableName;
  const n = b.n;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_BLOCK_ROWS) bad(where, `row count must be an integer from 0 to ${MAX_BLOCK_ROWS}`);
  const spec = TABLES[table];
  if (!Array.isArray(b.c) || b.c.length !== spec.fields.length) bad(where, `${table} block must have ${spec.fields.length} columns`);
  const dicts: (readonly string[] | null)[] = [];
  const cols = spec.fields.map((fl, k) => {
    const { col, dict } = checkColumn(fl, (b.c as unknown[])[k], n as number, `${where}(${table})`);
    dicts.push(null);
    if (fl.type !== "str") return col as { [i: number]: unknown };
    if (dict === null) {
      // Plain strings: the column is its own dictionary.
      dicts[k] = col as string[];
      const ids = new Uint32Array(n as number);
      for (let i = 0; i < ids.length; i++) ids[i] = i;
      return ids;
    }
    dicts[k] = dict;
    return col instanceof Uint32Array ? col : Uint32Array.from(col as Uint16Array);
  });
  return new RowBlock(table, n as number, cols, dicts);
}

/** Decodes and validates a list of blocks (`where` names it in errors), joining those of one table in order. */
export function decodeBlocks(raw: readonly unknown[], where: string): Blocks {
  const byTable = new Map<TableName, RowBlock[]>();
  raw.forEach((b, i) => {
    const block = decodeColumns(b, `${where}[${i}]`);
    const list = byTable.get(block.table);
    if (list) list.push(block);
    else byTable.set(block.table, [block]);
  });
  const out: Blocks = {};
  for (const [t, list] of byTable) setBlock(out, RowBlock.concat(t, list));
  return out;
}

/** Decodes and validates a block into row objects (tools and tests; netmig keeps blocks). */
export function decodeBlock(raw: unknown, where = "block"): { table: TableName; rows: Record<string, unknown>[] } {
  const block = decodeColumns(raw, where);
  return { table: block.table, rows: block.rows() as unknown as Record<string, unknown>[] };
}
