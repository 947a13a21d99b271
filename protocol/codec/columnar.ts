/**
 * Columnar encoding of table rows: one typed array per numeric field, strings
 * interned per block, small nested values as plain arrays. A block is plain
 * msgpack data:
 *
 *   { t: "conntrack", n: 1000, c: [ col0, col1, ... ] }   // columns in field order
 *
 *   u8/bool   bytes (n)            u16  bytes (2n, little-endian)
 *   u32       bytes (4n, LE)       f64  bytes (8n, LE)
 *   str       { d: string[], i: bytes }  // i: u16 or u32 indices into d, by d's size
 *   json      plain array (n)
 *
 * Decoding checks every length, index and value against the table descriptor
 * and returns validated rows.
 */
import { endianness } from "node:os";
import { BadRequestError, InvalidStateError } from "../errors.js";
import { TABLES, isTableName, type FieldSpec, type TableName } from "../state/tables.js";
import { checkField, isPlainJson } from "../state/validate.js";

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

const WIDTH: Record<string, number> = { u8: 1, bool: 1, u16: 2, u32: 4, f64: 8 };

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function encodeColumn(spec: FieldSpec, rows: readonly Record<string, unknown>[]): unknown {
  const n = rows.length;
  const name = spec.name;
  switch (spec.type) {
    case "u8":
    case "bool": {
      const a = new Uint8Array(n);
      for (let i = 0; i < n; i++) a[i] = Number(rows[i]![name]);
      return a;
    }
    case "u16": {
      const a = new Uint16Array(n);
      for (let i = 0; i < n; i++) a[i] = rows[i]![name] as number;
      return bytesOf(a);
    }
    case "u32": {
      const a = new Uint32Array(n);
      for (let i = 0; i < n; i++) a[i] = rows[i]![name] as number;
      return bytesOf(a);
    }
    case "f64": {
      const a = new Float64Array(n);
      for (let i = 0; i < n; i++) a[i] = rows[i]![name] as number;
      return bytesOf(a);
    }
    case "str": {
      const dict: string[] = [];
      const index = new Map<string, number>();
      const idx = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        const s = rows[i]![name] as string;
        let k = index.get(s);
        if (k === undefined) {
          k = dict.length;
          index.set(s, k);
          dict.push(s);
        }
        idx[i] = k;
      }
      const col: StrColumn = { d: dict, i: dict.length <= 0xffff ? bytesOf(Uint16Array.from(idx)) : bytesOf(idx) };
      return col;
    }
    case "json": {
      const a = new Array<unknown>(n);
      for (let i = 0; i < n; i++) a[i] = rows[i]![name];
      return a;
    }
  }
}

/** Encodes rows of one table into a column block. Rows must already be valid. */
export function encodeBlock(table: TableName, rows: readonly unknown[]): ColumnBlock {
  const r = rows as readonly Record<string, unknown>[];
  return { t: table, n: r.length, c: TABLES[table].fields.map((fl) => encodeColumn(fl, r)) };
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

/** Fills `rows[i][field]` from one encoded column, validating as it goes. */
function decodeColumn(spec: FieldSpec, col: unknown, rows: Record<string, unknown>[], where: string): void {
  const n = rows.length;
  const name = spec.name;
  const w = `${where}.${name}`;
  const width = WIDTH[spec.type];
  if (width !== undefined) {
    if (!(col instanceof Uint8Array) || col.byteLength !== n * width) bad(w, `expected ${n * width} bytes of ${spec.type}`);
    const b = col as Uint8Array;
    switch (spec.type) {
      case "u8":
        for (let i = 0; i < n; i++) rows[i]![name] = b[i];
        return;
      case "bool":
        for (let i = 0; i < n; i++) {
          const v = b[i]!;
          if (v > 1) bad(w, `row ${i} is not a boolean`);
          rows[i]![name] = v === 1;
        }
        return;
      case "u16": {
        const a = typed(Uint16Array, b);
        for (let i = 0; i < n; i++) rows[i]![name] = a[i];
        return;
      }
      case "u32": {
        const a = typed(Uint32Array, b);
        for (let i = 0; i < n; i++) rows[i]![name] = a[i];
        return;
      }
      case "f64": {
        const a = typed(Float64Array, b);
        for (let i = 0; i < n; i++) {
          const v = a[i]!;
          if (!Number.isFinite(v)) bad(w, `row ${i} is not a finite number`);
          rows[i]![name] = v;
        }
        return;
      }
    }
  }
  if (spec.type === "str") {
    const c = col as StrColumn;
    if (c === null || typeof c !== "object" || !Array.isArray(c.d) || !(c.i instanceof Uint8Array)) bad(w, "expected an interned string column {d, i}");
    const d = c.d;
    for (let k = 0; k < d.length; k++) if (typeof d[k] !== "string" || d[k]!.length > 4096) bad(w, `dictionary entry ${k} is not a string of at most 4096 characters`);
    const idx = d.length <= 0xffff ? (c.i.byteLength === 2 * n ? typed(Uint16Array, c.i) : null) : c.i.byteLength === 4 * n ? typed(Uint32Array, c.i) : null;
    if (!idx) bad(w, "index length does not match the row count");
    for (let i = 0; i < n; i++) {
      const s = d[idx[i]!];
      if (s === undefined) bad(w, `row ${i} has an index outside the dictionary`);
      rows[i]![name] = s;
    }
    return;
  }
  // json
  if (!Array.isArray(col) || col.length !== n) bad(w, `expected an array of ${n} values`);
  for (let i = 0; i < n; i++) {
    const v = (col as unknown[])[i];
    if (!isPlainJson(v)) bad(w, `row ${i} is not plain JSON data`);
    const p = checkField(spec, v);
    if (p) throw new InvalidStateError(`${w}: row ${i} ${p}`);
    rows[i]![name] = v;
  }
}

/** Maximum rows a single block may claim (guards allocation on hostile input). */
export const MAX_BLOCK_ROWS = 2_000_000;

/** Decodes and validates a block received from the wire. */
export function decodeBlock(raw: unknown, where = "block"): { table: TableName; rows: Record<string, unknown>[] } {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) bad(where, "expected a column block map");
  const b = raw as Record<string, unknown>;
  if (typeof b.t !== "string" || !isTableName(b.t)) bad(where, `unknown table ${JSON.stringify(b.t)}`);
  const table = b.t as TableName;
  const n = b.n;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_BLOCK_ROWS) bad(where, `row count must be an integer from 0 to ${MAX_BLOCK_ROWS}`);
  const spec = TABLES[table];
  if (!Array.isArray(b.c) || b.c.length !== spec.fields.length) bad(where, `${table} block must have ${spec.fields.length} columns`);
  const rows: Record<string, unknown>[] = new Array(n as number);
  for (let i = 0; i < (n as number); i++) rows[i] = {};
  spec.fields.forEach((fl, k) => decodeColumn(fl, (b.c as unknown[])[k], rows, `${where}(${table})`));
  return { table, rows };
}
