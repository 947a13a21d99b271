/**
 * A VM's tables in memory: rows by key, an incrementally kept digest, a
 * generation bumped once per applied change, and — while a migration reads
 * deltas — a change log of (generation, table, key) for dirty tracking.
 *
 * Each table is held as columns (struct of arrays: a typed array per
 * numeric field, ids into the table's string pool per str field, a plain
 * array per json field, see `Columns` in row-code.ts), not as one object per
 * row: a million conntrack entries are a few dozen arrays and their distinct
 * strings for the garbage collector, not a million objects and six million
 * string references, and a block of received columns is appended by copying
 * arrays and translating dictionary ids. Rows handed out
 * (`get`, `rows`, `full`, `since`) are built on demand and belong to the
 * caller.
 *
 * Each table is a `ColumnTable` (column-table.ts): its columns and its key
 * index, which holds no key strings. Key text is built for the change log
 * only, while a migration tracks changes.
 */
import { BadRequestError } from "../errors.js";
import { StateDigest } from "./digest.js";
import { emptyTables, type StateDelta, type Tables } from "./model.js";
import { ColumnTable, type TableReader } from "./column-table.js";
import { setBlock, type Blocks, type RowBlock, type RowSource, type Sources } from "./row-block.js";
import { TABLE_NAMES, type TableName } from "./tables.js";

/** Rows to insert or replace, keys to delete. */
export type Change = Pick<StateDelta, "upserts" | "deletes">;

type Row = Record<string, unknown>;

interface LogEntry {
  gen: number;
  table: TableName;
  key: string;
}

/**
 * A read of a set's live tables, a slice at a time (see `TableSet.openRead`).
 * `close` it when done: until then, rows moving behind it are reported.
 */
export interface LiveRead {
  readonly sources: Sources;
  close(): void;
}

/**
 * The same string, stored flat. A key built by concatenation (a template
 * literal over its fields) is a rope in V8, a node per piece: ~470 bytes for
 * a conntrack key against ~80 once flat, and the change log keeps one per
 * changed row for as long as a migration tracks them (tens of thousands
 * under churn at a million rows). Reading a character from inside a rope
 * makes V8 flatten it in place.
 */
function flat(s: string): string {
  s.charCodeAt(s.length >> 1);
  return s;
}

export class TableSet {
  readonly digest = new StateDigest();
  private readonly byName = new Map<TableName, ColumnTable>(TABLE_NAMES.map((t) => [t, new ColumnTable(t, this.digest)]));
  gen = 0;
  private log: LogEntry[] | null = null;
  private logFrom = 0;
  /** A migration's full round being read (see `liveRead`). */
  private roundRead: LiveRead | null = null;

  private table(t: TableName): ColumnTable {
    return this.byName.get(t)!;
  }

  private note(table: TableName, key: string): void {
    this.log?.push({ gen: this.gen, table, key: flat(key) });
  }

  /** Applies a change as one new generation; returns it. */
  apply(change: Change): number {
    this.gen++;
    for (const t of TABLE_NAMES) {
      const tab = this.table(t);
      for (const key of change.deletes[t] ?? []) if (tab.remove(key)) this.note(t, key);
      const block = change.upserts[t];
      if (block) {
        // A bulk write grows the table once; small ones (most rows replace others) grow it as needed.
        if (block.length >= 4096) tab.reserve(tab.n + block.length);
        for (let i = 0; i < block.length; i++) {
          tab.upsert(block, i);
          if (this.log) this.note(t, block.keyAt(i));
        }
        tab.trimPool();
      }
    }
    return this.gen;
  }

  /**
   * Applies upserts of rows that are absent and distinct from each other
   * (a full snapshot's chunks into an emptied set) as one new generation,
   * without looking up their keys. Rows that break the promise are resolved
   * when the index catches up (the later row wins); a digest check against
   * the sender catches them first. While tracking, this is `apply`.
   */
  append(change: Pick<Change, "upserts">): number {
    if (this.log) return this.apply({ upserts: change.upserts, deletes: {} });
    this.gen++;
    for (const t of TABLE_NAMES) {
      const block = change.upserts[t];
      if (block?.length) this.table(t).append(block);
    }
    return this.gen;
  }

  /** Copies up to `max` rows of columns shared with an export (`full`) (see ColumnTable.unshareSome); returns how many remain. */
  unshareSome(max: number): number {
    let left = max;
    let remaining = 0;
    for (const tab of this.byName.values()) {
      const before = tab.unshared;
      const after = tab.unshareSome(left);
      left -= before - after;
      remaining += after;
    }
    return remaining;
  }

  /** Makes room for this many rows per table (a full snapshot's announced sizes): its chunks then append without regrowing. */
  reserve(sizes: Partial<Record<TableName, number>>): void {
    // An eighth more, so the first rows added later do not copy the whole table.
    for (const t of TABLE_NAMES) if (sizes[t]) this.table(t).reserve(sizes[t]! + (sizes[t]! >> 3));
  }

  /**
   * The memory a full snapshot of these sizes fills once `reserve`d: views
   * of each empty table's columns (see ColumnTable.fillRegions), to touch
   * before its chunks come.
   */
  fillRegions(sizes: Partial<Record<TableName, number>>): Uint8Array[] {
    return TABLE_NAMES.flatMap((t) => (sizes[t] ? this.table(t).fillRegions(sizes[t]!) : []));
  }

  /** Indexes up to `max` appended rows; returns how many remain (0: fully indexed). */
  indexSome(max: number): number {
    let left = max;
    let remaining = 0;
    const logged = this.log?.length ?? 0;
    for (const tab of this.byName.values()) {
      const before = tab.indexed;
      remaining += tab.indexSome(left);
      left -= tab.indexed - before;
    }
    // Merging rows of one key changed the set outside `apply`: that is a new generation.
    if (this.log && this.log.length > logged) {
      this.gen++;
      for (let i = logged; i < this.log.length; i++) this.log[i]!.gen = this.gen;
    }
    return remaining;
  }

  /** Appended rows not indexed yet (a keyed operation indexes them first). */
  get unindexed(): number {
    let n = 0;
    for (const tab of this.byName.values()) n += tab.n - tab.indexed;
    return n;
  }

  /** Removes every row as one new generation (logged as deletions while tracking). */
  clear(): void {
    this.gen++;
    for (const t of TABLE_NAMES) {
      const tab = this.table(t);
      if (this.log) for (let i = 0; i < tab.n; i++) this.note(t, tab.keyAt(i));
      tab.clear();
    }
  }

  get(table: TableName, key: string): Row | undefined {
    return this.table(table).get(key);
  }

  rows(table: TableName): IterableIterator<Row> {
    return this.table(table).rows();
  }

  count(table: TableName): number {
    return this.table(table).n;
  }

  counts(): Record<TableName, number> {
    return Object.fromEntries(TABLE_NAMES.map((t) => [t, this.count(t)])) as Record<TableName, number>;
  }

  /** Every row, as blocks (copies: later changes do not reach them), one per non-empty table. */
  full(): Blocks {
    const out: Blocks = {};
    for (const t of TABLE_NAMES) if (this.count(t) > 0) setBlock(out, this.table(t).snapshot());
    return out;
  }

  /**
   * Every row, read from the live tables a slice at a time, each table front
   * to back, with no copy of the tables: a slice views the table's columns,
   * so the reader must be done with it (encoded and packed it) before it
   * lets a change be applied (the round encoder and the snapshot writer
   * are: they pack each slice before they yield). While no change is
   * applied, the slices are exactly the set at this generation. If changes
   * are applied between slices, the slices mix generations and may miss a
   * row that moved (a delete fills its hole with the last row) to where the
   * read had already been; `missed` is told each such row's key when it
   * moves, until the read is closed. The changes themselves the caller
   * learns otherwise (the change log, the journal).
   */
  openRead(missed?: (table: TableName, key: string) => void): LiveRead {
    const sources: Record<string, RowSource> = {};
    const readers: [ColumnTable, TableReader][] = [];
    for (const t of TABLE_NAMES) {
      const tab = this.table(t);
      const reader: TableReader = { frontier: 0, missed: (p) => missed?.(t, tab.keyAt(p)) };
      if (missed) {
        tab.readers.add(reader);
        readers.push([tab, reader]);
      }
      if (tab.n === 0) continue;
      const slice = (from: number, to: number): RowBlock => {
        const block = tab.viewRange(from, to);
        // Where the reader is now: a slice that starts over (a sample) moves it back.
        reader.frontier = from + block.length;
        return block;
      };
      sources[t] = { table: t, get length() { return tab.n; }, slice };
    }
    return { sources: sources as Sources, close: () => readers.forEach(([tab, r]) => tab.readers.delete(r)) };
  }

  /**
   * A migration's full round: a live read (see `openRead`) whose missed rows
   * go to the change log, so with tracking on since before this call,
   * `since(gen)` afterwards names every row the round may have got wrong
   * (changed, deleted, or missed) and the next delta makes it exact. The
   * read is closed by that delta (or by a new full round).
   */
  liveRead(): Sources {
    this.roundRead?.close();
    this.roundRead = this.openRead((t, key) => this.note(t, key));
    return this.roundRead.sources;
  }

  /** Every row, as objects (documents, tests). */
  tables(): Tables {
    const out = emptyTables();
    for (const t of TABLE_NAMES) (out as Record<TableName, unknown[]>)[t] = this.table(t).all();
    return out;
  }

  /** Starts (or restarts) keeping the change log from the current generation. */
  startTracking(): void {
    this.log = [];
    this.logFrom = this.gen;
  }

  stopTracking(): void {
    this.log = null;
    this.roundRead?.close();
    this.roundRead = null;
  }

  get tracking(): boolean {
    return this.log !== null;
  }

  /** What changed after generation `g`: rows present now, keys gone now. */
  since(g: number): Change {
    if (!this.log || g < this.logFrom || g > this.gen) {
      throw new BadRequestError(`cannot give changes since generation ${g} (tracking ${this.log ? `from ${this.logFrom} to ${this.gen}` : "is off"})`);
    }
    const log = this.log;
    let lo = 0;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (log[mid]!.gen <= g) lo = mid + 1;
      else hi = mid;
    }
    // Earlier entries are never asked for again: the next request starts at g or later.
    if (lo > 4096) {
      this.log = log.slice(lo);
      this.logFrom = g;
      lo = 0;
    }
    // Once this delta is applied the receiver holds the rows by key: where rows move no longer matters.
    this.roundRead?.close();
    this.roundRead = null;
    const touched = new Map<TableName, Set<string>>();
    for (let i = lo; i < this.log.length; i++) {
      const e = this.log[i]!;
      let s = touched.get(e.table);
      if (!s) touched.set(e.table, (s = new Set()));
      s.add(e.key);
    }
    return this.current(touched);
  }

  /** The rows these keys name as they are now (upserts), and the keys with no row (deletes). */
  current(keys: ReadonlyMap<TableName, Iterable<string>>): Change {
    const change: Change = { upserts: {}, deletes: {} };
    for (const [t, list] of keys) {
      const tab = this.table(t);
      const ups: number[] = [];
      const dels: string[] = [];
      for (const k of list) {
        const p = tab.positionOf(k);
        if (p >= 0) ups.push(p);
        else dels.push(k);
      }
      if (ups.length) setBlock(change.upserts, tab.gather(ups));
      if (dels.length) change.deletes[t] = dels;
    }
    return change;
  }
}
