/**
 * The canonical, order-independent digest of a VM's state.
 *
 * Each row's portable fields (host-local fields are left out, so source and
 * destination agree after remapping) are hashed to 64 bits, field by field
 * with no intermediate string (see `RowHash` in row-code.ts); a table's digest is the count and the lane-wise sum mod
 * 2^32 of its row hashes (a multiset hash). Sums can be updated in O(1) when a
 * row changes, so a backend can keep its digest current as it writes, and
 * nothing has to be hashed in the freeze window.
 *
 * This is an integrity check against bugs, lost chunks and corruption, not a
 * defence against a forger: NATS credentials keep forgers off the bus.
 */
import { TABLE_NAMES, type TableName } from "./tables.js";
import { compileHashes, type Columns, type Dicts } from "./row-code.js";

/** Canonical JSON: object keys sorted, so equal values give equal strings. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

const HASH = compileHashes(canonicalJson);

/** Two independent 32-bit lanes over a string's UTF-16 units (cyrb53 mixing). */
function hash64(s: string, out: Uint32Array): void {
  let h1 = 0xdeadbeef ^ s.length;
  let h2 = 0x41c6ce57 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  out[0] = h1;
  out[1] = h2;
}

const scratch = new Uint32Array(2);

/** Accumulator for one table: count and lane sums. */
interface TableSum {
  count: number;
  a: number;
  b: number;
}

/** An incrementally maintained digest of a VM's tables. */
export class StateDigest {
  private readonly sums = new Map<TableName, TableSum>();

  constructor() {
    for (const t of TABLE_NAMES) this.sums.set(t, { count: 0, a: 0, b: 0 });
  }

  /** The digest of whole tables (row objects, or blocks: anything iterable over rows). */
  static of(tables: Partial<Record<TableName, Iterable<unknown>>>): StateDigest {
    const d = new StateDigest();
    for (const t of TABLE_NAMES) for (const row of tables[t] ?? []) d.add(t, row);
    return d;
  }

  add(table: TableName, row: unknown): void {
    HASH[table].row(row as Record<string, unknown>, scratch);
    this.sum(table, 1);
  }

  remove(table: TableName, row: unknown): void {
    HASH[table].row(row as Record<string, unknown>, scratch);
    this.sum(table, -1);
  }

  /** Adds the rows at positions [from, to) of a table's columns. */
  addColumns(table: TableName, cols: Columns, dicts: Dicts, from: number, to: number): void {
    const hash = HASH[table].column;
    const s = this.sums.get(table)!;
    let a = s.a;
    let b = s.b;
    for (let i = from; i < to; i++) {
      hash(cols, dicts, i, scratch);
      a = (a + scratch[0]!) >>> 0;
      b = (b + scratch[1]!) >>> 0;
    }
    s.a = a;
    s.b = b;
    s.count += to - from;
  }

  /** Removes the row at position `i` of a table's columns. */
  removeAt(table: TableName, cols: Columns, dicts: Dicts, i: number): void {
    HASH[table].column(cols, dicts, i, scratch);
    this.sum(table, -1);
  }

  /** Forgets every row of a table. */
  clearTable(table: TableName): void {
    this.sums.set(table, { count: 0, a: 0, b: 0 });
  }

  private sum(table: TableName, sign: 1 | -1): void {
    const s = this.sums.get(table)!;
    s.count += sign;
    s.a = (s.a + sign * scratch[0]!) >>> 0;
    s.b = (s.b + sign * scratch[1]!) >>> 0;
  }

  clone(): StateDigest {
    const d = new StateDigest();
    for (const [t, s] of this.sums) d.sums.set(t, { ...s });
    return d;
  }

  /** Per-table digest strings, e.g. `{ conntrack: "100000:1a2b3c4d5e6f7a8b" }`. */
  tables(): Record<TableName, string> {
    const out = {} as Record<TableName, string>;
    for (const [t, s] of this.sums) out[t] = `${s.count}:${hex8(s.a)}${hex8(s.b)}`;
    return out;
  }

  /** The whole-VM digest: a hash over the per-table digests in canonical order. */
  toString(): string {
    const per = this.tables();
    const parts = TABLE_NAMES.map((t) => `${t}=${per[t]}`).join(";");
    hash64(parts, scratch);
    const first = `${hex8(scratch[0]!)}${hex8(scratch[1]!)}`;
    hash64(parts + "#", scratch);
    return `${first}${hex8(scratch[0]!)}${hex8(scratch[1]!)}`;
  }
}

/** Names the tables on which two per-table digests differ. */
export function digestDiff(a: Record<string, string>, b: Record<string, string>): string[] {
  return TABLE_NAMES.filter((t) => a[t] !== b[t]).map((t) => `${t} (${a[t] ?? "?"} vs ${b[t] ?? "?"})`);
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}
