/**
 * One table of a `TableSet` as columns (struct of arrays: a typed array per
 * numeric field, ids into the table's string pool per str field, a plain
 * array per json field, see `Columns` in row-code.ts), with its key index.
 *
 * The key index is an open-addressing hash table over row positions (an
 * Int32Array) with each row's key hash beside it, so it holds no key strings:
 * indexing and upserts hash and compare keys field by field from the
 * columns (a block's against the table's), and a lookup by key text (a get,
 * a delete) rebuilds only the candidates' keys. Rows known to be new and
 * distinct (the chunks of a full snapshot) are appended by `append` without
 * computing their keys; the index catches up when a keyed operation needs
 * it, or a slice at a time through `indexSome`.
 *
 * Typed columns are carved from one ArrayBuffer per table (see
 * `emptyColumnsLike`). A copy-on-write snapshot (`snapshot`) shares them
 * until the next change; live reads (`viewRange`) view them, and are told of
 * rows that move behind them (`readers`).
 */
import type { StateDigest } from "./digest.js";
import { ipCopyRows, lanesOf } from "./ip-column.js";
import { allocateColumns, emptyColumnsLike, RowBlock, StringPool, strFields, TYPED_COLUMN } from "./row-block.js";
import { keyHash, ROW_CODE, type Columns, type Dicts, type TableCode } from "./row-code.js";
import { TABLES, type TableName } from "./tables.js";

type Row = Record<string, unknown>;
type TypedColumn = Uint8Array | Uint16Array | Uint32Array | Float64Array;

/** One live read of one table: how far it has read, and whom to tell of rows it missed. */
export interface TableReader {
  frontier: number;
  missed(position: number): void;
}

/**
 * One table as columns. Positions [0, indexed) are in the key index;
 * appended rows at [indexed, n) are not yet.
 */
export class ColumnTable {
  cols: Columns;
  n = 0;
  indexed = 0;
  private cap = 0;
  /** Key hash of each indexed row, by position. */
  private hashes = new Uint32Array(0);
  /** Open addressing, linear probing: position + 1, 0 = empty. */
  private slots = new Int32Array(16);
  private mask = 15;
  private readonly code: TableCode;
  /** Indices of the plain-array (json) columns, kept exactly `n` long. */
  private readonly plain: number[];
  /** Indices of the str columns, whose ids point into `pool`. */
  private readonly strs: number[];
  private pool = new StringPool();
  dicts: Dicts;
  /** `cols` are shared with a block handed out by `snapshot`: copy them before any change. */
  private shared = false;
  /** The private copy being made a slice at a time (`unshareSome`), and how many rows it holds. */
  private copy: Columns | null = null;
  private copied = 0;
  /** Live reads of this table in progress (see `TableSet.openRead`). */
  readonly readers = new Set<TableReader>();

  /**
   * Row `from` went to position `to` (relocated, or merged into the row
   * there): a reader that had read `to` but not yet `from` missed it.
   */
  private moved(from: number, to: number): void {
    for (const r of this.readers) if (to < r.frontier && from >= r.frontier) r.missed(to);
  }

  constructor(readonly name: TableName, private readonly digest: StateDigest) {
    this.code = ROW_CODE[name];
    this.plain = TABLES[name].fields.flatMap((f, k) => (TYPED_COLUMN[f.type] ? [] : [k]));
    this.strs = strFields(name);
    this.cols = allocateColumns(name, 0);
    this.dicts = this.dictsOf(this.pool);
  }

  private dictsOf(pool: StringPool): Dicts {
    return TABLES[this.name].fields.map((f) => (f.type === "str" ? pool.strings : null));
  }

  /**
   * Replaces the pool by one holding only the strings rows use now, once
   * replaced rows have left it mostly garbage. Blocks read earlier keep the
   * old pool's array, which stays as it was.
   */
  trimPool(): void {
    if (this.pool.size <= 2 * this.n * this.strs.length + 65536) return;
    this.own();
    const fresh = new StringPool();
    const old = this.pool.strings;
    for (const k of this.strs) {
      const ids = this.cols[k] as Uint32Array;
      for (let i = 0; i < this.n; i++) ids[i] = fresh.intern(old[ids[i]!]!);
    }
    this.pool = fresh;
    this.dicts = this.dictsOf(fresh);
  }

  /** Copies the columns a snapshot shares, so a change does not reach it (copy on write). */
  private own(): void {
    if (this.shared) this.unshareSome(Infinity);
  }

  /** Rows of shared columns not yet copied (see `unshareSome`). */
  get unshared(): number {
    return this.shared ? this.n - this.copied : 0;
  }

  /**
   * Copies up to `max` more rows of shared columns into private ones; once
   * all are copied the table uses them and the snapshot keeps the old ones.
   * Done a slice per event-loop turn after an export (`full`), it leaves nothing to
   * copy when the next change comes. Returns the rows left to copy.
   */
  unshareSome(max: number): number {
    if (!this.shared) return 0;
    this.copy ??= emptyColumnsLike(this.cols, this.cap);
    const to = Math.min(this.n, this.copied + max);
    this.cols.forEach((src, k) => {
      const dst = this.copy![k]!;
      if (Array.isArray(src)) {
        for (let i = this.copied; i < to; i++) (dst as unknown[]).push(src[i]);
      } else {
        const l = lanesOf(src as TypedColumn);
        (dst as TypedColumn).set((src as TypedColumn).subarray(this.copied * l, to * l), this.copied * l);
      }
    });
    this.copied = to;
    if (to < this.n) return this.n - to;
    this.cols = this.copy;
    this.copy = null;
    this.copied = 0;
    this.shared = false;
    return 0;
  }

  /** Makes room for `want` rows. */
  reserve(want: number): void {
    if (want <= this.cap) return;
    const cap = Math.max(want, this.cap * 2, 64);
    // New arrays: a snapshot sharing the old ones keeps them.
    const next = emptyColumnsLike(this.cols, cap);
    this.cols = this.cols.map((c, k) => {
      if (Array.isArray(c)) return this.shared ? c.slice() : c;
      (next[k] as TypedColumn).set((c as TypedColumn).subarray(0, this.n * lanesOf(c as TypedColumn)));
      return next[k]!;
    });
    this.shared = false;
    this.copy = null;
    this.copied = 0;
    const h = new Uint32Array(cap);
    h.set(this.hashes.subarray(0, this.n));
    this.hashes = h;
    this.cap = cap;
  }

  /**
   * The memory that appending the first `rows` rows fills: a view of each
   * typed column's part (json columns have none), so a caller can touch it
   * ahead of a bulk append (TableSet.fillRegions). None once rows are in.
   */
  fillRegions(rows: number): Uint8Array[] {
    if (this.n > 0) return [];
    const m = Math.min(rows, this.cap);
    return this.cols.flatMap((c) => {
      if (Array.isArray(c)) return [];
      const t = c as TypedColumn;
      return [new Uint8Array(t.buffer, t.byteOffset, m * lanesOf(t) * t.BYTES_PER_ELEMENT)];
    });
  }

  // ------------------------------------------------------------- key index

  /** The slot holding `key`, or -1. */
  private find(key: string, h: number): number {
    const { slots, mask, hashes, cols, dicts } = this;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const v = slots[i]!;
      if (v === 0) return -1;
      if (hashes[v - 1] === h && this.code.keyAt(cols, dicts, v - 1) === key) return i;
    }
  }

  /**
   * The slot of an indexed row with the same key as row `i` of `cols` (a
   * block's columns, or this table's own), or -1 (no key text is built).
   */
  private findLike(cols: Columns, dicts: Dicts, i: number, h: number): number {
    const { slots, mask, hashes } = this;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const v = slots[s]!;
      if (v === 0) return -1;
      if (hashes[v - 1] === h && this.code.keysEqual(this.cols, this.dicts, v - 1, cols, dicts, i)) return s;
    }
  }

  /** The slot that points at position `p` (which is indexed). */
  private slotOfPos(p: number): number {
    const { slots, mask } = this;
    for (let i = this.hashes[p]! & mask; ; i = (i + 1) & mask) if (slots[i] === p + 1) return i;
  }

  /** Rebuilds the index over [0, indexed) with room for `rows` entries at half load. */
  private rehash(rows: number): void {
    let size = 16;
    while (size < rows * 2) size *= 2;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    for (let p = 0; p < this.indexed; p++) this.place(p);
  }

  private place(p: number): void {
    const { slots, mask } = this;
    let i = this.hashes[p]! & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = p + 1;
  }

  /** Adds position p (with its hash set) to the index. */
  private insert(p: number): void {
    if ((this.indexed + 1) * 2 > this.slots.length) this.rehash(Math.max(this.n, this.indexed + 1));
    this.place(p);
  }

  /** Empties slot s, shifting later entries of its probe run back (no tombstones). */
  private unslot(s: number): void {
    const { slots, mask, hashes } = this;
    let hole = s;
    slots[hole] = 0;
    for (let j = (hole + 1) & mask; slots[j] !== 0; j = (j + 1) & mask) {
      const home = hashes[slots[j]! - 1]! & mask;
      // Move the entry at j into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      slots[hole] = slots[j]!;
      slots[j] = 0;
      hole = j;
    }
  }

  /** Moves the row at `from` to `to` (overwriting it), keeping the index pointing at it when `from` is indexed. */
  private relocate(from: number, to: number, indexed: boolean): void {
    if (indexed) this.slots[this.slotOfPos(from)] = to + 1;
    this.code.copy(this.cols, to, this.cols, from);
    this.hashes[to] = this.hashes[from]!;
    this.moved(from, to);
  }

  private pop(): void {
    this.n--;
    for (const k of this.plain) (this.cols[k] as unknown[]).pop();
  }

  /** Removes position i (`keyed`: i is indexed and already unslotted), keeping [0, indexed) dense. */
  private dropAt(i: number, keyed: boolean): void {
    const last = this.n - 1;
    if (keyed) {
      const li = this.indexed - 1;
      if (i !== li) this.relocate(li, i, true);
      if (li !== last) this.relocate(last, li, false);
      this.indexed--;
    } else if (i !== last) {
      this.relocate(last, i, false);
    }
    this.pop();
  }

  /** Indexes up to `max` more rows; returns how many remain unindexed. */
  indexSome(max: number): number {
    let budget = max;
    if (this.indexed < this.n && this.slots.length < this.n * 2) this.rehash(this.n);
    while (this.indexed < this.n && budget-- > 0) {
      const i = this.indexed;
      const h = this.code.keyHashAt(this.cols, this.dicts, i);
      const s = this.findLike(this.cols, this.dicts, i, h);
      if (s >= 0) {
        // Two appended rows with one key: the later one wins, as in `upsert`.
        this.own();
        const dup = this.slots[s]! - 1;
        this.digest.removeAt(this.name, this.cols, this.dicts, dup);
        this.code.copy(this.cols, dup, this.cols, i);
        this.moved(i, dup);
        this.dropAt(i, false);
        continue;
      }
      this.hashes[i] = h;
      this.insert(i);
      this.indexed++;
    }
    return this.n - this.indexed;
  }

  private ready(): void {
    if (this.indexed < this.n) this.indexSome(Infinity);
  }

  // ------------------------------------------------------------- rows

  get(key: string): Row | undefined {
    this.ready();
    const s = this.find(key, keyHash(key));
    return s < 0 ? undefined : this.code.readAt(this.cols, this.dicts, this.slots[s]! - 1);
  }

  /** Inserts or replaces row i of a block of this table (found by its key's fields: no key text is built). */
  upsert(block: RowBlock, i: number): void {
    this.ready();
    const h = this.code.keyHashAt(block.cols, block.dicts, i);
    const s = this.findLike(block.cols, block.dicts, i, h);
    // Growing gives the table new arrays: then there is nothing shared left to copy.
    if (s < 0) this.reserve(this.n + 1);
    this.own();
    let p: number;
    if (s >= 0) {
      p = this.slots[s]! - 1;
      this.digest.removeAt(this.name, this.cols, this.dicts, p);
    } else {
      p = this.n++;
      this.hashes[p] = h;
      this.insert(p);
      this.indexed++;
    }
    this.code.copy(this.cols, p, block.cols, i);
    for (const k of this.strs) {
      const dict = block.dicts[k]!;
      if (dict !== this.pool.strings) (this.cols[k] as Uint32Array)[p] = this.pool.intern(dict[(block.cols[k] as Uint32Array)[i]!]!);
    }
    this.digest.addColumns(this.name, this.cols, this.dicts, p, p + 1);
  }

  /** Returns false when the key is absent. */
  remove(key: string): boolean {
    this.ready();
    const s = this.find(key, keyHash(key));
    if (s < 0) return false;
    this.own();
    const p = this.slots[s]! - 1;
    this.digest.removeAt(this.name, this.cols, this.dicts, p);
    this.unslot(s);
    this.dropAt(p, true);
    return true;
  }

  /** Appends a block's rows unindexed, copying its columns. */
  append(block: RowBlock): void {
    const from = this.n;
    const m = block.length;
    // Growing gives the table new arrays anyway; only then is there nothing shared to copy.
    this.reserve(from + m);
    this.own();
    TABLES[this.name].fields.forEach((f, k) => {
      const src = block.cols[k]!;
      if (f.type === "str") {
        const s = src as Uint32Array;
        const dst = this.cols[k] as Uint32Array;
        const tr = this.pool.translator(block.dicts[k]!);
        for (let i = 0; i < m; i++) dst[from + i] = tr(s[i]!);
      } else if (f.type === "ip") {
        this.cols[k] = ipCopyRows(this.cols[k] as Uint32Array, from, src as Uint32Array, m);
      } else if (TYPED_COLUMN[f.type]) {
        const s = src as TypedColumn;
        (this.cols[k] as TypedColumn).set(s.length === m ? s : s.subarray(0, m), from);
      } else {
        const dst = this.cols[k] as unknown[];
        const s = src as unknown[];
        for (let i = 0; i < m; i++) dst.push(s[i]);
      }
    });
    this.n += m;
    this.digest.addColumns(this.name, this.cols, this.dicts, from, this.n);
  }

  /** The position of a key's row, or -1. */
  positionOf(key: string): number {
    this.ready();
    const s = this.find(key, keyHash(key));
    return s < 0 ? -1 : this.slots[s]! - 1;
  }

  /** A block holding copies of the rows at these positions. */
  gather(positions: readonly number[]): RowBlock {
    const cols = allocateColumns(this.name, positions.length);
    for (let j = 0; j < positions.length; j++) this.code.copy(cols, j, this.cols, positions[j]!);
    return new RowBlock(this.name, positions.length, cols, this.dicts);
  }

  /**
   * A block of rows [from, to) (clamped to the rows there are) that views
   * the table's typed columns: it reads what they hold when it is read, so
   * it must be read before the table changes.
   */
  viewRange(from: number, to: number): RowBlock {
    const a = Math.max(0, Math.min(from, this.n));
    const b = Math.max(a, Math.min(to, this.n));
    const cols = this.cols.map((c) => {
      if (Array.isArray(c)) return c.slice(a, b);
      const l = lanesOf(c as TypedColumn);
      return (c as TypedColumn).subarray(a * l, b * l);
    });
    return new RowBlock(this.name, b - a, cols, this.dicts);
  }

  /** A block of every row as they are now: it shares the columns until the next change copies them. */
  snapshot(): RowBlock {
    const cols = this.cols.map((c) => (Array.isArray(c) ? c : (c as TypedColumn).subarray(0, this.n * lanesOf(c as TypedColumn))));
    this.shared = true;
    return new RowBlock(this.name, this.n, cols, this.dicts);
  }

  keyAt(i: number): string {
    return this.code.keyAt(this.cols, this.dicts, i);
  }

  *rows(): IterableIterator<Row> {
    for (let i = 0; i < this.n; i++) yield this.code.readAt(this.cols, this.dicts, i);
  }

  all(): Row[] {
    const out = new Array<Row>(this.n);
    for (let i = 0; i < this.n; i++) out[i] = this.code.readAt(this.cols, this.dicts, i);
    return out;
  }

  clear(): void {
    this.digest.clearTable(this.name);
    this.pool = new StringPool();
    this.dicts = this.dictsOf(this.pool);
    this.cols = allocateColumns(this.name, 0);
    this.shared = false;
    this.copy = null;
    this.copied = 0;
    this.cap = 0;
    this.hashes = new Uint32Array(0);
    this.n = 0;
    this.indexed = 0;
    this.rehash(0);
  }
}
