/**
 * Rows of one table as columns: the form in which rows travel through netmig
 * (deltas, chunks, journals) and are stored (`TableSet`). One typed array
 * per numeric field, a plain array per string or json field (see `Columns`
 * in row-code.ts), `length` rows long. Row objects are built only where a
 * caller asks for them (`row`, `rows`, iteration): a block of a million
 * conntrack entries is a few dozen arrays, not a million objects.
 *
 * A block is immutable by convention: `slice` shares its arrays, so nobody
 * writes into a block's columns after building it.
 */
import { ROW_CODE, type Columns } from "./row-code.js";
import { TABLES, type FieldType, type RowTypes, type TableName } from "./tables.js";

type Row = Record<string, unknown>;
type NumericColumn = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/** The typed array holding each numeric field type (u8 and bool share one). */
export const NUMERIC_COLUMN: Partial<Record<FieldType, { new (n: number): NumericColumn }>> = {
  u8: Uint8Array, bool: Uint8Array, u16: Uint16Array, u32: Uint32Array, f64: Float64Array,
};

/** Empty columns with room for `n` rows (plain arrays start empty and grow). */
export function allocateColumns(table: TableName, n: number): Columns {
  return TABLES[table].fields.map((f) => {
    const T = NUMERIC_COLUMN[f.type];
    return T ? new T(n) : [];
  });
}

export class RowBlock<T extends TableName = TableName> implements Iterable<RowTypes[T]> {
  constructor(readonly table: T, readonly length: number, readonly cols: Columns) {}

  /** A block holding copies of these rows' fields (rows must be valid for the table). */
  static of<T extends TableName>(table: T, rows: readonly unknown[]): RowBlock<T> {
    const cols = allocateColumns(table, rows.length);
    const write = ROW_CODE[table].write;
    for (let i = 0; i < rows.length; i++) write(cols, i, rows[i] as Row);
    return new RowBlock(table, rows.length, cols);
  }

  static empty<T extends TableName>(table: T): RowBlock<T> {
    return new RowBlock(table, 0, allocateColumns(table, 0));
  }

  /** The row at position i, as a new object. */
  row(i: number): RowTypes[T] {
    return ROW_CODE[this.table].readAt(this.cols, i) as unknown as RowTypes[T];
  }

  keyAt(i: number): string {
    return ROW_CODE[this.table].keyAt(this.cols, i);
  }

  /** Every row, as new objects. */
  rows(): RowTypes[T][] {
    const read = ROW_CODE[this.table].readAt;
    const out = new Array<RowTypes[T]>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = read(this.cols, i) as unknown as RowTypes[T];
    return out;
  }

  *[Symbol.iterator](): Iterator<RowTypes[T]> {
    const read = ROW_CODE[this.table].readAt;
    for (let i = 0; i < this.length; i++) yield read(this.cols, i) as unknown as RowTypes[T];
  }

  /** Rows [from, to), sharing this block's arrays where they are typed. */
  slice(from: number, to: number): RowBlock<T> {
    const a = Math.max(0, Math.min(from, this.length));
    const b = Math.max(a, Math.min(to, this.length));
    if (a === 0 && b === this.length) return this;
    const cols = this.cols.map((c) => (Array.isArray(c) ? c.slice(a, b) : (c as NumericColumn).subarray(a, b)));
    return new RowBlock(this.table, b - a, cols);
  }

  /** This block with field `name`'s column replaced (same length). */
  withColumn(name: string, column: { [i: number]: unknown }): RowBlock<T> {
    const k = TABLES[this.table].fields.findIndex((f) => f.name === name);
    if (k < 0) throw new Error(`table ${this.table} has no field ${name}`);
    const cols = this.cols.slice();
    cols[k] = column;
    return new RowBlock(this.table, this.length, cols);
  }

  /** One block holding the rows of several blocks of one table, in order. */
  static concat<T extends TableName>(table: T, blocks: readonly RowBlock<T>[]): RowBlock<T> {
    if (blocks.length === 1) return blocks[0]!;
    let n = 0;
    for (const b of blocks) n += b.length;
    const cols = TABLES[table].fields.map((f, k) => {
      const T = NUMERIC_COLUMN[f.type];
      if (T) {
        const out = new T(n);
        let at = 0;
        for (const b of blocks) {
          const c = b.cols[k] as NumericColumn;
          out.set(c.length === b.length ? c : c.subarray(0, b.length), at);
          at += b.length;
        }
        return out;
      }
      const out: unknown[] = [];
      for (const b of blocks) {
        const c = b.cols[k] as unknown[];
        for (let i = 0; i < b.length; i++) out.push(c[i]);
      }
      return out;
    });
    return new RowBlock(table, n, cols);
  }

  /** The column of field `name`. */
  column(name: string): { [i: number]: unknown } {
    const k = TABLES[this.table].fields.findIndex((f) => f.name === name);
    if (k < 0) throw new Error(`table ${this.table} has no field ${name}`);
    return this.cols[k]!;
  }
}

/** Row blocks per table, as a delta carries its upserts. */
export type Blocks = { [T in TableName]?: RowBlock<T> };

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
