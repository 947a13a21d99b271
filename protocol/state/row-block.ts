/**
 * Rows of one table as columns: the form in which rows travel through netmig
 * (deltas, chunks, journals) and are stored (`TableSet`). One typed array
 * per numeric field; per str field, a Uint32Array of ids into a dictionary
 * of strings; per json field, a plain array (see `Columns` in row-code.ts).
 * Row objects are built only where a caller asks for them (`row`, `rows`,
 * iteration): a block of a million conntrack entries is a few dozen arrays
 * and its distinct strings, not a million objects.
 *
 * A block is immutable by convention: `slice` shares its arrays, and blocks
 * read from a `TableSet` share its dictionaries (which only ever grow).
 */
import { ipCopyRows, lanesOf, WideIpColumn } from "./ip-column.js";
import { ROW_CODE, type Columns, type Dicts } from "./row-code.js";
import { TABLES, type FieldType, type RowTypes, type TableName } from "./tables.js";

type Row = Record<string, unknown>;
type TypedColumn = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/**
 * The typed array holding each field type's column (str: ids into a
 * dictionary; ip: a narrow column, widened on the first IPv6 address, see
 * ip-column.ts).
 */
export const TYPED_COLUMN: Partial<Record<FieldType, { new (n: number): TypedColumn }>> = {
  u8: Uint8Array, bool: Uint8Array, u16: Uint16Array, u32: Uint32Array, f64: Float64Array, str: Uint32Array, ip: Uint32Array,
};

/** Empty columns with room for `n` rows (json columns start empty and grow). */
export function allocateColumns(table: TableName, n: number): Columns {
  return TABLES[table].fields.map((f) => {
    const T = TYPED_COLUMN[f.type];
    return T ? new T(n) : [];
  });
}

/**
 * Empty typed columns of the same kinds (and ip widths) as `cols`, with room
 * for `rows` rows, all carved from one ArrayBuffer (json columns: new empty
 * arrays). A big table is then one allocation, which the C allocator maps on
 * its own and unmaps as soon as it is freed; a dozen arrays of a few MB each
 * would be served from its heap after the first few are freed, and kept
 * there (resident) once freed.
 */
export function emptyColumnsLike(cols: Columns, rows: number): Columns {
  let bytes = 0;
  const at = cols.map((c) => {
    if (Array.isArray(c)) return -1;
    const off = bytes;
    bytes += (rows * lanesOf(c as TypedColumn) * (c as TypedColumn).BYTES_PER_ELEMENT + 7) & ~7;
    return off;
  });
  const buffer = new ArrayBuffer(bytes);
  return cols.map((c, k) => {
    if (Array.isArray(c)) return [];
    const C = c.constructor as new (b: ArrayBuffer, offset: number, length: number) => TypedColumn;
    return new C(buffer, at[k]!, rows * lanesOf(c as TypedColumn));
  });
}

/** The indices of a table's str fields (those with dictionaries). */
export function strFields(table: TableName): number[] {
  return TABLES[table].fields.flatMap((f, k) => (f.type === "str" ? [k] : []));
}

/**
 * Rows to be read a slice at a time: a block, or a table being read live
 * (`TableSet.liveRead`), whose length may change between slices and whose
 * slices view the table: valid only until the table next changes.
 */
export interface RowSource<T extends TableName = TableName> {
  readonly table: T;
  readonly length: number;
  slice(from: number, to: number): RowBlock<T>;
}

export class RowBlock<T extends TableName = TableName> implements Iterable<RowTypes[T]>, RowSource<T> {
  constructor(readonly table: T, readonly length: number, readonly cols: Columns, readonly dicts: Dicts) {}

  /** A block holding these rows' fields (rows must be valid for the table), each str field with its own dictionary. */
  static of<T extends TableName>(table: T, rows: readonly unknown[]): RowBlock<T> {
    const cols = allocateColumns(table, rows.length);
    const dicts = TABLES[table].fields.map((f) => (f.type === "str" ? ([] as string[]) : null));
    const index = dicts.map((d) => (d ? new Map<string, number>() : null));
    const intern = (k: number, s: string): number => {
      const m = index[k]!;
      let id = m.get(s);
      if (id === undefined) {
        id = dicts[k]!.length;
        dicts[k]!.push(s);
        m.set(s, id);
      }
      return id;
    };
    const write = ROW_CODE[table].write;
    for (let i = 0; i < rows.length; i++) write(cols, i, rows[i] as Row, intern);
    return new RowBlock(table, rows.length, cols, dicts);
  }

  /** The row at position i, as a new object. */
  row(i: number): RowTypes[T] {
    return ROW_CODE[this.table].readAt(this.cols, this.dicts, i) as unknown as RowTypes[T];
  }

  keyAt(i: number): string {
    return ROW_CODE[this.table].keyAt(this.cols, this.dicts, i);
  }

  /** Every row, as new objects. */
  rows(): RowTypes[T][] {
    const read = ROW_CODE[this.table].readAt;
    const out = new Array<RowTypes[T]>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = read(this.cols, this.dicts, i) as unknown as RowTypes[T];
    return out;
  }

  *[Symbol.iterator](): Iterator<RowTypes[T]> {
    const read = ROW_CODE[this.table].readAt;
    for (let i = 0; i < this.length; i++) yield read(this.cols, this.dicts, i) as unknown as RowTypes[T];
  }

  /** Rows [from, to), sharing this block's arrays. */
  slice(from: number, to: number): RowBlock<T> {
    const a = Math.max(0, Math.min(from, this.length));
    const b = Math.max(a, Math.min(to, this.length));
    if (a === 0 && b === this.length) return this;
    const cols = this.cols.map((c) => {
      if (Array.isArray(c)) return c.slice(a, b);
      const l = lanesOf(c as TypedColumn);
      return (c as TypedColumn).subarray(a * l, b * l);
    });
    return new RowBlock(this.table, b - a, cols, this.dicts);
  }

  /** This block with a numeric field's column replaced (same length). */
  withColumn(name: string, column: TypedColumn): RowBlock<T> {
    const k = fieldIndex(this.table, name);
    const cols = this.cols.slice();
    cols[k] = column;
    return new RowBlock(this.table, this.length, cols, this.dicts);
  }

  /**
   * This block with a numeric field's values passed through `map` (called
   * once per distinct value); the column is copied only if a value changes.
   */
  mapColumn(name: string, map: (v: number) => number): RowBlock<T> {
    const col = this.column(name);
    const cache = new Map<number, number>();
    let out: TypedColumn | null = null;
    for (let i = 0; i < this.length; i++) {
      const v = col[i]!;
      let m = cache.get(v);
      if (m === undefined) cache.set(v, (m = map(v)));
      if (m !== v) (out ??= col.slice(0, this.length))[i] = m;
    }
    return out ? this.withColumn(name, out) : this;
  }

  /** The column of a numeric field. */
  column(name: string): TypedColumn {
    return this.cols[fieldIndex(this.table, name)] as TypedColumn;
  }

  /** One block holding the rows of several blocks of one table, in order (dictionaries merged). */
  static concat<T extends TableName>(table: T, blocks: readonly RowBlock<T>[]): RowBlock<T> {
    if (blocks.length === 1) return blocks[0]!;
    let n = 0;
    for (const b of blocks) n += b.length;
    const fields = TABLES[table].fields;
    const dicts = fields.map((f) => (f.type === "str" ? ([] as string[]) : null));
    const cols = fields.map((f, k) => {
      if (f.type === "json") {
        const out: unknown[] = [];
        for (const b of blocks) for (let i = 0; i < b.length; i++) out.push((b.cols[k] as unknown[])[i]);
        return out;
      }
      const wide = f.type === "ip" && blocks.some((b) => b.cols[k] instanceof WideIpColumn);
      let out: TypedColumn = wide ? new WideIpColumn(n * 4) : new TYPED_COLUMN[f.type]!(n);
      let at = 0;
      const pool = f.type === "str" ? new StringPool(dicts[k] as string[]) : null;
      for (const b of blocks) {
        const c = b.cols[k] as TypedColumn;
        if (pool) {
          const tr = pool.translator(b.dicts[k]!);
          for (let i = 0; i < b.length; i++) out[at + i] = tr(c[i]!);
        } else if (f.type === "ip") {
          out = ipCopyRows(out as Uint32Array, at, c as Uint32Array, b.length);
        } else {
          out.set(c.length === b.length ? c : c.subarray(0, b.length), at);
        }
        at += b.length;
      }
      return out;
    });
    return new RowBlock(table, n, cols, dicts);
  }
}

function fieldIndex(table: TableName, name: string): number {
  const k = TABLES[table].fields.findIndex((f) => f.name === name);
  if (k < 0) throw new Error(`table ${table} has no field ${name}`);
  return k;
}

const NONE = 0xffffffff;

/** Distinct strings with an id each, in an append-only array (blocks may share it). */
export class StringPool {
  private readonly index = new Map<string, number>();

  constructor(readonly strings: string[] = []) {
    for (let i = 0; i < strings.length; i++) if (!this.index.has(strings[i]!)) this.index.set(strings[i]!, i);
  }

  get size(): number {
    return this.strings.length;
  }

  intern(s: string): number {
    let id = this.index.get(s);
    if (id === undefined) {
      id = this.strings.length;
      this.strings.push(s);
      this.index.set(s, id);
    }
    return id;
  }

  /** Maps ids of another dictionary to ids here, interning each entry the first time it is met. */
  translator(dict: readonly string[]): (id: number) => number {
    if (dict === this.strings) return (id) => id;
    const tr = new Uint32Array(dict.length).fill(NONE);
    return (id) => {
      let t = tr[id]!;
      if (t === NONE) tr[id] = t = this.intern(dict[id]!);
      return t;
    };
  }
}

/** Row blocks per table, as a delta carries its upserts. */
export type Blocks = { [T in TableName]?: RowBlock<T> };

/** Row sources per table, as a read hands them to the encoder. */
export type Sources = { [T in TableName]?: RowSource<T> };

/** Whole tables of row objects as blocks. */
export function blocksOf(tables: Partial<Record<TableName, readonly unknown[]>>): Blocks {
  const out: Blocks = {};
  for (const [t, rows] of Object.entries(tables) as [TableName, readonly unknown[] | undefined][]) if (rows?.length) setBlock(out, RowBlock.of(t, rows));
  return out;
}

/** Puts a block under its table (a typed helper for code holding a table name of the union type). */
export function setBlock(blocks: Blocks, block: RowBlock): void {
  (blocks as Record<TableName, RowBlock>)[block.table] = block;
}
