/**
 * A VM's tables in memory: rows by key, an incrementally kept digest, a
 * generation bumped once per applied change, and — while a migration reads
 * deltas — a change log of (generation, table, key) for dirty tracking.
 *
 * Rows are treated as immutable: a change replaces the row object, so rows
 * handed out by `full()`/`since()` may be encoded without copying.
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

export class TableSet {
  readonly maps = new Map<TableName, Map<string, Row>>(TABLE_NAMES.map((t) => [t, new Map()]));
  readonly digest = new StateDigest();
  gen = 0;
  private log: LogEntry[] | null = null;
  private logFrom = 0;

  private map(table: TableName): Map<string, Row> {
    return this.maps.get(table)!;
  }

  private note(table: TableName, key: string): void {
    this.log?.push({ gen: this.gen, table, key });
  }

  private upsert(table: TableName, row: Row): void {
    const key = keyOf(table, row);
    const m = this.map(table);
    const old = m.get(key);
    if (old) this.digest.remove(table, old);
    m.set(key, row);
    this.digest.add(table, row);
    this.note(table, key);
  }

  private remove(table: TableName, key: string): void {
    const m = this.map(table);
    const old = m.get(key);
    if (!old) return;
    this.digest.remove(table, old);
    m.delete(key);
    this.note(table, key);
  }

  /** Applies a change as one new generation; returns it. */
  apply(change: Change): number {
    this.gen++;
    for (const t of TABLE_NAMES) {
      for (const key of change.deletes[t] ?? []) this.remove(t, key);
      for (const row of (change.upserts[t] ?? []) as unknown as Row[]) this.upsert(t, row);
    }
    return this.gen;
  }

  /** Removes every row as one new generation (logged as deletions while tracking). */
  clear(): void {
    this.gen++;
    for (const t of TABLE_NAMES) {
      const m = this.map(t);
      for (const [key, row] of m) {
        this.digest.remove(t, row);
        this.note(t, key);
      }
      m.clear();
    }
  }

  get(table: TableName, key: string): Row | undefined {
    return this.map(table).get(key);
  }

  rows(table: TableName): IterableIterator<Row> {
    return this.map(table).values();
  }

  count(table: TableName): number {
    return this.map(table).size;
  }

  counts(): Record<TableName, number> {
    return Object.fromEntries(TABLE_NAMES.map((t) => [t, this.count(t)])) as Record<TableName, number>;
  }

  full(): Tables {
    const out = emptyTables();
    for (const t of TABLE_NAMES) (out as Record<TableName, unknown[]>)[t] = Array.from(this.map(t).values());
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
      const m = this.map(t);
      const ups: Row[] = [];
      const dels: string[] = [];
      for (const k of keys) {
        const row = m.get(k);
        if (row) ups.push(row);
        else dels.push(k);
      }
      if (ups.length) (change.upserts as Record<string, Row[]>)[t] = ups;
      if (dels.length) change.deletes[t] = dels;
    }
    return change;
  }
}
