/**
 * Columnar encoding of table rows: one typed array per numeric field, strings
 * interned per block, small nested values as plain arrays. A block is plain
 * msgpack data:
 *
 *   { t: "conntrack", n: 1000, c: [ col0, col1, ... ] }   // columns in field order
 *
 *   u8/bool   bytes (n)            u16  bytes (2n, little-endian)
 *   u32       bytes (4n, LE)       f64  bytes (8n, LE)
 *   str       { d: string[], i: bytes }  // interned: i holds u16 or u32 indices into d, by d's size
 *             { s: string[] }            // or plain, when most values are distinct
 *   json      plain array (n)
 *
 * Blocks are encoded from and decoded into `RowBlock`s (the in-memory column
 * form): numeric columns are copied as bytes, string columns interned or
 * expanded. Decoding checks every length, index and value against the table
 * descriptor.
 */
import { endianness } from "node:os";
import { BadRequestError, InvalidStateError } from "../errors.js";
import { TABLES, isTableName, type FieldSpec, type TableName } from "../state/tables.js";
import { checkField, isPlainJson } from "../state/validate.js";
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

/** Rows sampled to decide how a string column is encoded. */
const SAMPLE_ROWS = 512;
/** Smaller blocks are always interned (it costs next to nothing). */
const MIN_SAMPLE_ROWS = 64;
/** Above this share of distinct values in the sample, strings go uninterned. */
const MAX_DISTINCT_SHARE = 0.25;

const WIDTH: Record<string, number> = { u8: 1, bool: 1, u16: 2, u32: 4, f64: 8 };

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A str or json column as it goes on the wire: an interned or plain string column, or a plain array. */
function finishColumn(spec: FieldSpec, col: { [i: number]: unknown }, n: number): unknown {
  const all = col as unknown[];
  const values = (all.length === n ? all : all.slice(0, n)) as string[];
  if (spec.type === "json") return values;
  // Interning pays off for repeated values (states, a VM's own addresses);
  // a column of mostly distinct values (peer addresses) goes as plain strings.
  const sample = Math.min(n, SAMPLE_ROWS);
  if (sample >= MIN_SAMPLE_ROWS && new Set(values.slice(0, sample)).size > sample * MAX_DISTINCT_SHARE) return { s: values } satisfies RawStrColumn;
  const dict: string[] = [];
  const index = new Map<string, number>();
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const s = values[i]!;
    let k = index.get(s);
    if (k === undefined) {
      k = dict.length;
      index.set(s, k);
      dict.push(s);
    }
    idx[i] = k;
  }
  const out: StrColumn = { d: dict, i: dict.length <= 0xffff ? bytesOf(Uint16Array.from(idx)) : bytesOf(idx) };
  return out;
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
      if (WIDTH[fl.type] !== undefined) {
        const a = col as Uint8Array | Uint16Array | Uint32Array | Float64Array;
        return bytesOf(a.length === n ? a : a.subarray(0, n));
      }
      return finishColumn(fl, col, n);
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

/** Validates one encoded column; returns what the row builder reads (and the dictionary of a string column). */
function checkColumn(spec: FieldSpec, col: unknown, n: number, where: string): { col: unknown; dict: string[] | null } {
  const w = `${where}.${spec.name}`;
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
  const cols = spec.fields.map((fl, k) => {
    const { col, dict } = checkColumn(fl, (b.c as unknown[])[k], n as number, `${where}(${table})`);
    if (dict === null) return col as { [i: number]: unknown };
    const idx = col as Uint16Array | Uint32Array;
    const values = new Array<string>(n as number);
    for (let i = 0; i < (n as number); i++) values[i] = dict[idx[i]!]!;
    return values;
  });
  return new RowBlock(table, n as number, cols);
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
