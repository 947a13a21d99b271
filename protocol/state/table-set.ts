/**
 * A VM's tables in memory: rows by key, an incrementally kept digest, a
 * generation bumped once per applied change, and — while a migration reads
 * deltas — a change log of (generation, table, key) for dirty tracking.
 *
 * Rows are treated as immutable: a change replaces the row object, so rows
 * handed out by `full()`/`since()` may be encoded without copying.
 *
 * Each table keeps its rows in a dense array with a key → position index.
 * Rows known to be new and distinct (the chunks of a full snapshot) are
 * appended by `append` without computing their keys; the index catches up
 * when a keyed operation needs it, or a slice at a time through
 * `indexSome`, so a bulk copy pays for neither key strings nor map inserts.
 */
import { BadRequestError } from "../errors.js";
import { StateDigest } from "./digest.js";
import { emptyTables, type StateDelta, type Tables } from "./model.js";
import { keyOf, TABLE_NAMES, type TableName } from "./tables.js";

/** Rows to insert or replace, keys to delete. */
export type Change = Pick<StateDelta, "upserts" | "deletes">;

type Row = Record<string, unknown>;

interface LogEntry {
  gen: number;
  table: TableName;
  key: string;
}

/** One table: dense rows and the index of the first `indexed` of them. */
class RowTable {
  rows: Row[] = [];
  readonly pos = new Map<string, number>();
  indexed = 0;

  constructor(readonly name: TableName, private readonly digest: StateDigest) {}

  /** Indexes up to `max` more rows; returns how many remain unindexed. */
  indexSome(max: number): number {
    let budget = max;
    while (this.indexed < this.rows.length && budget-- > 0) {
      const i = this.indexed;
      const key = keyOf(this.name, this.rows[i]);
      const dup = this.pos.get(key);
      if (dup !== undefined) {
        // Two appended rows with one key: the later one wins, as in `upsert`.
        this.digest.remove(this.name, this.rows[dup]!);
        this.rows[dup] = this.rows[i]!;
        this.dropAt(i, false);
        continue;
      }
      this.pos.set(key, i);
      this.indexed++;
    }
    return this.rows.length - this.indexed;
  }

  private ready(): void {
    if (this.indexed < this.rows.length) this.indexSome(Infinity);
  }

  /** Removes position i by moving the last row into it (`keyed`: i is indexed). */
  private dropAt(i: number, keyed: boolean): void {
    const last = this.rows.length - 1;
    if (keyed) {
      // Keep the indexed prefix dense: the last indexed row fills the hole,
      // and the last row (indexed or not) fills that one's place.
      const li = this.indexed - 1;
      if (i !== li) {
        const moved = this.rows[li]!;
        this.rows[i] = moved;
        this.pos.set(keyOf(this.name, moved), i);
      }
      if (li !== last) this.rows[li] = this.rows[last]!;
      this.indexed--;
    } else if (i !== last) {
      this.rows[i] = this.rows[last]!;
    }
    this.rows.pop();
  }

  get(key: string): Row | undefined {
    this.ready();
    const i = this.pos.get(key);
    return i === undefined ? undefined : this.rows[i];
  }

  upsert(key: string, row: Row): void {
    this.ready();
    const i = this.pos.get(key);
    if (i !== undefined) {
      this.digest.remove(this.name, this.rows[i]!);
      this.rows[i] = row;
    } else {
      this.pos.set(key, this.rows.length);
      this.rows.push(row);
      this.indexed++;
    }
    this.digest.add(this.name, row);
  }

  /** Returns false when the key is absent. */
  remove(key: string): boolean {
    this.ready();
    const i = this.pos.get(key);
    if (i === undefined) return false;
    this.digest.remove(this.name, this.rows[i]!);
    this.pos.delete(key);
    this.dropAt(i, true);
    return true;
  }

  append(rows: readonly Row[]): void {
    for (let i = 0; i < rows.length; i++) {
      this.rows.push(rows[i]!);
      this.digest.add(this.name, rows[i]!);
    }
  }

  clear(): void {
    for (const row of this.rows) this.digest.remove(this.name, row);
    this.rows = [];
    this.pos.clear();
    this.indexed = 0;
  }
}

export class TableSet {
  readonly digest = new StateDigest();
  private readonly tables = new Map<TableName, RowTable>(TABLE_NAMES.map((t) => [t, new RowTable(t, this.digest)]));
  gen = 0;
  private log: LogEntry[] | null = null;
  private logFrom = 0;

  private table(t: TableName): RowTable {
    return this.tables.get(t)!;
  }

  private note(table: TableName, key: string): void {
    this.log?.push({ gen: this.gen, table, key });
  }

  /** Applies a change as one new generation; returns it. */
  apply(change: Change): number {
    this.gen++;
    for (const t of TABLE_NAMES) {
      const tab = this.table(t);
      for (const key of change.deletes[t] ?? []) if (tab.remove(key)) this.note(t, key);
      for (const row of (change.upserts[t] ?? []) as unknown as Row[]) {
        const key = keyOf(t, row);
        tab.upsert(key, row);
        this.note(t, key);
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
      const rows = change.upserts[t] as unknown as Row[] | undefined;
      if (rows?.length) this.table(t).append(rows);
    }
    return this.gen;
  }

  /** Indexes up to `max` appended rows; returns how many remain (0: fully indexed). */
  indexSome(max: number): number {
    let left = max;
    let remaining = 0;
    for (const tab of this.tables.values()) {
      const before = tab.indexed;
      remaining += tab.indexSome(left);
      left -= tab.indexed - before;
    }
    return remaining;
  }

  /** Appended rows not indexed yet (a keyed operation indexes them first). */
  get unindexed(): number {
    let n = 0;
    for (const tab of this.tables.values()) n += tab.rows.length - tab.indexed;
    return n;
  }

  /** Removes every row as one new generation (logged as deletions while tracking). */
  clear(): void {
    this.gen++;
    for (const t of TABLE_NAMES) {
      const tab = this.table(t);
      if (this.log) for (const row of tab.rows) this.note(t, keyOf(t, row));
      tab.clear();
    }
  }

  get(table: TableName, key: string): Row | undefined {
    return this.table(table).get(key);
  }

  rows(table: TableName): IterableIterator<Row> {
    return this.table(table).rows.values();
  }

  count(table: TableName): number {
    return this.table(table).rows.length;
  }

  counts(): Record<TableName, number> {
    return Object.fromEntries(TABLE_NAMES.map((t) => [t, this.count(t)])) as Record<TableName, number>;
  }

  full(): Tables {
    const out = emptyTables();
    for (const t of TABLE_NAMES) (out as Record<TableName, unknown[]>)[t] = this.table(t).rows.slice();
    return out;
  }

  /** Starts (or restarts) keeping the change log from the current generation. */
  startTracking(): void {
    this.log = [];
    this.logFrom = this.gen;
  }

  stopTracking(): void {
    this.log = null;
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
    const touched = new Map<TableName, Set<string>>();
    for (let i = lo; i < this.log.length; i++) {
      const e = this.log[i]!;
      let s = touched.get(e.table);
      if (!s) touched.set(e.table, (s = new Set()));
      s.add(e.key);
    }
    const change: Change = { upserts: {}, deletes: {} };
    for (const [t, keys] of touched) {
      const tab = this.table(t);
      const ups: Row[] = [];
      const dels: string[] = [];
      for (const k of keys) {
        const row = tab.get(k);
        if (row) ups.push(row);
        else dels.push(k);
      }
      if (ups.length) (change.upserts as Record<string, Row[]>)[t] = ups;
      if (dels.length) change.deletes[t] = dels;
    }
    return change;
  }
}
