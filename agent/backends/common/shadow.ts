/**
 * Dirty tracking for dataplanes that have no generations of their own (OVS,
 * the kernel): every read is diffed against a shadow copy of the previous
 * read, by row key and field values. A read that finds changes bumps the
 * generation once; changed rows carry that generation, deleted keys leave a
 * tombstone (while a migration is tracking), so `since(g)` answers deltas.
 *
 * Some fields tick on their own (conntrack timeouts, fdb ages). A table can
 * declare a `same` rule per such field; when the rule says "same", the shadow
 * keeps the old row, so the digest only moves on real changes.
 */
import { BadRequestError } from "../../../protocol/errors.js";
import { canonicalJson, StateDigest } from "../../../protocol/state/digest.js";
import { emptyTables, type StateDelta, type Tables } from "../../../protocol/state/model.js";
import { blocksOf, RowBlock, setBlock } from "../../../protocol/state/row-block.js";
import { keyOf, TABLE_NAMES, TABLES, type TableName } from "../../../protocol/state/tables.js";
import type { BlockRead } from "../backend.js";

type Row = Record<string, unknown>;

/** Decides whether a volatile field's change is noise. Times in ms since the epoch. */
export type SameFn = (oldRow: Row, oldAtMs: number, freshRow: Row, nowMs: number) => boolean;

export type VolatileRules = Partial<Record<TableName, Record<string, SameFn>>>;

interface Entry {
  row: Row;
  gen: number;
  /** When this row's values were observed. */
  atMs: number;
}

/** Tombstones kept at most while tracking; past this, old deltas are refused. */
const MAX_TOMBSTONES = 1_000_000;

/**
 * Conntrack timeouts: unchanged while the absolute expiry stays within
 * max(2 s, 1/8 of the remaining time) of the recorded one. A refresh by
 * traffic that moves it further is a change worth sending.
 */
export const timeoutRule: SameFn = (o, oAt, f, now) => {
  const oldExpiry = oAt / 1000 + (o.timeoutSec as number);
  const newExpiry = now / 1000 + (f.timeoutSec as number);
  const remaining = Math.max(0, oldExpiry - now / 1000);
  return Math.abs(newExpiry - oldExpiry) <= Math.max(2, remaining / 8);
};

/** A field that never counts as a change on its own (fdb age). */
export const ignoreRule: SameFn = () => true;

export const DEFAULT_VOLATILE: VolatileRules = {
  conntrack: { timeoutSec: timeoutRule },
  fdb: { ageSec: ignoreRule },
};

function makeEquals(table: TableName, rules: Record<string, SameFn> | undefined) {
  const fields = TABLES[table].fields;
  return (o: Row, oAt: number, f: Row, now: number): boolean => {
    for (const fl of fields) {
      const a = o[fl.name];
      const b = f[fl.name];
      if (a === b) continue;
      const rule = rules?.[fl.name];
      if (rule) {
        if (rule(o, oAt, f, now)) continue;
        return false;
      }
      if (fl.type === "json" && canonicalJson(a) === canonicalJson(b)) continue;
      return false;
    }
    return true;
  };
}

/** The shadow copy of one VM's live state. */
export class Shadow {
  gen: number;
  /** Deltas can be answered for `sinceGen >= trackingFrom`; null = not tracking. */
  private trackingFrom: number | null = null;
  private readonly rows = new Map<TableName, Map<string, Entry>>();
  private readonly tombstones = new Map<TableName, Map<string, number>>();
  private tombstoneCount = 0;
  readonly digest = new StateDigest();
  private readonly equals: Record<TableName, ReturnType<typeof makeEquals>>;

  constructor(rules: VolatileRules = DEFAULT_VOLATILE, startGen = 0) {
    this.gen = startGen;
    this.equals = {} as Record<TableName, ReturnType<typeof makeEquals>>;
    for (const t of TABLE_NAMES) {
      this.rows.set(t, new Map());
      this.tombstones.set(t, new Map());
      this.equals[t] = makeEquals(t, rules[t]);
    }
  }

  private nextGen(): number {
    this.gen = Math.max(this.gen + 1, Date.now());
    return this.gen;
  }

  /**
   * Replaces the content of the tables present in `fresh` with a new read.
   * Returns the number of rows that changed (0 = generation unchanged).
   * `atMs` per key overrides the observation time (rows seeded from staging).
   */
  observe(fresh: Partial<Tables>, nowMs = Date.now(), atMs?: Map<string, number>): number {
    let gen = -1;
    let changed = 0;
    const bump = () => (gen < 0 ? (gen = this.nextGen()) : gen);
    for (const t of TABLE_NAMES) {
      const rows = fresh[t] as unknown as Row[] | undefined;
      if (!rows) continue;
      const cur = this.rows.get(t)!;
      const eq = this.equals[t];
      const seen = new Set<string>();
      for (const row of rows) {
        const key = keyOf(t, row);
        if (seen.has(key)) continue; // the dataplane listed a row twice; keep the first
        seen.add(key);
        const old = cur.get(key);
        if (old && eq(old.row, old.atMs, row, nowMs)) continue;
        if (old) this.digest.remove(t, old.row);
        this.digest.add(t, row);
        cur.set(key, { row, gen: bump(), atMs: atMs?.get(key) ?? nowMs });
        this.tombstones.get(t)!.delete(key);
        changed++;
      }
      if (seen.size !== cur.size) {
        for (const [key, e] of cur) {
          if (seen.has(key)) continue;
          cur.delete(key);
          this.digest.remove(t, e.row);
          this.tombstone(t, key, bump());
          changed++;
        }
      }
    }
    return changed;
  }

  private tombstone(t: TableName, key: string, gen: number): void {
    if (this.trackingFrom === null) return;
    this.tombstones.get(t)!.set(key, gen);
    if (++this.tombstoneCount > MAX_TOMBSTONES) {
      for (const m of this.tombstones.values()) m.clear();
      this.tombstoneCount = 0;
      this.trackingFrom = this.gen;
    }
  }

  /** Starts keeping deletions (a full read for a migration). */
  startTracking(): void {
    if (this.trackingFrom === null) this.trackingFrom = this.gen;
  }

  endTracking(): void {
    this.trackingFrom = null;
    for (const m of this.tombstones.values()) m.clear();
    this.tombstoneCount = 0;
  }

  get tracking(): boolean {
    return this.trackingFrom !== null;
  }

  /** All rows, as last observed. */
  snapshot(): Tables {
    const out = emptyTables();
    for (const t of TABLE_NAMES) {
      const dst = out[t] as unknown as Row[];
      for (const e of this.rows.get(t)!.values()) dst.push(e.row);
    }
    return out;
  }

  rowsOf<T extends TableName>(t: T): Tables[T] {
    return [...this.rows.get(t)!.values()].map((e) => e.row) as unknown as Tables[T];
  }

  counts(): Record<TableName, number> {
    const out = {} as Record<TableName, number>;
    for (const t of TABLE_NAMES) out[t] = this.rows.get(t)!.size;
    return out;
  }

  /**
   * A backend's answer to `read`: the full state (and tracking starts) when
   * `sinceGen` is null, else the delta since it; with the digests either way.
   */
  read(vmId: string, sinceGen: number | null): BlockRead {
    const digest = this.digest.toString();
    const tables = this.digest.tables();
    if (sinceGen === null) {
      this.startTracking();
      return { vmId, baseGen: null, gen: this.gen, upserts: blocksOf(this.snapshot()), deletes: {}, digest, tables };
    }
    return { ...this.since(vmId, sinceGen), digest, tables };
  }

  /** What changed after `sinceGen`. Throws BadRequestError when that is older than tracking. */
  since(vmId: string, sinceGen: number): StateDelta {
    if (this.trackingFrom === null || sinceGen < this.trackingFrom || sinceGen > this.gen) {
      throw new BadRequestError(
        `cannot answer a delta since generation ${sinceGen} for VM ${vmId} (tracking ${this.trackingFrom === null ? "off" : `from ${this.trackingFrom}`}, now ${this.gen}); read a full snapshot`,
        { vmId },
      );
    }
    const delta: StateDelta = { vmId, baseGen: sinceGen, gen: this.gen, upserts: {}, deletes: {} };
    for (const t of TABLE_NAMES) {
      const ups: Row[] = [];
      for (const e of this.rows.get(t)!.values()) if (e.gen > sinceGen) ups.push(e.row);
      if (ups.length) setBlock(delta.upserts, RowBlock.of(t, ups));
      const dels: string[] = [];
      for (const [key, g] of this.tombstones.get(t)!) if (g > sinceGen) dels.push(key);
      if (dels.length) delta.deletes[t] = dels;
    }
    return delta;
  }
}
