/**
 * A churn generator for demos and benchmarks: changes a share of a VM's live
 * state every tick, the way a busy VM does — conntrack entries age, change
 * state, close and open; MACs are relearned. Writes go through the backend's
 * normal write path (which refuses them while the VM is frozen); ticks that
 * find no set to change (the VM gone or frozen) do nothing.
 */
import type { ConntrackRow, FdbRow } from "../../../protocol/state/tables.js";
import { keyOf } from "../../../protocol/state/tables.js";
import { VmMigratingError } from "../../../protocol/errors.js";
import type { Change } from "../backend.js";
import type { TableSet } from "../../../protocol/state/table-set.js";
import { RowBlock } from "../../../protocol/state/row-block.js";

export interface ChurnOptions {
  /** Changed rows per second, per VM. */
  rowsPerSec?: number;
  /** Or: percent of the VM's conntrack entries changed per second. */
  percentPerSec?: number;
  /** Tick interval, ms. Default 100 (each tick is one journalled write per VM). */
  tickMs?: number;
}

const TCP_STATES = ["ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "FIN_WAIT", "TIME_WAIT", "CLOSE_WAIT"];

let serial = 0;

/**
 * Walks a table's rows across ticks with one persistent iterator (it walks
 * positions, so it survives changes to the table), so a tick costs O(rows
 * picked), never a copy of the table.
 */
export class KeySample {
  private it: Iterator<Record<string, unknown>> | null = null;

  pick(set: TableSet, table: "conntrack" | "fdb", n: number): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (let restarts = 0; out.length < n && restarts < 2; ) {
      this.it ??= set.rows(table);
      const next = this.it.next();
      if (next.done) {
        this.it = null;
        restarts++;
        continue;
      }
      out.push(next.value);
    }
    return out;
  }
}

/** Builds one tick's change for a VM: about `n` rows updated, replaced or relearned. */
export function churnChange(set: TableSet, n: number, ctKeys: KeySample, fdbKeys: KeySample): Change {
  const ups: ConntrackRow[] = [];
  const dels: string[] = [];
  const seen = new Set<string>();
  for (const r of ctKeys.pick(set, "conntrack", n)) {
    const row = r as unknown as ConntrackRow;
    const key = keyOf("conntrack", row);
    if (seen.has(key)) continue;
    seen.add(key);
    serial++;
    if (serial % 4 === 0) {
      // A connection closes and a new one opens.
      const port = 1024 + (serial % 60000);
      const next = { ...row, origSport: port, replyDport: row.replyDport === row.origSport ? port : row.replyDport, timeoutSec: 432000, state: row.proto === 6 ? "ESTABLISHED" : "" };
      const nextKey = keyOf("conntrack", next);
      if (seen.has(nextKey) || set.get("conntrack", nextKey)) continue;
      seen.add(nextKey);
      dels.push(key);
      ups.push(next);
    } else {
      ups.push({ ...row, timeoutSec: Math.max(1, row.timeoutSec - 1), state: row.proto === 6 ? TCP_STATES[serial % TCP_STATES.length]! : row.state });
    }
  }
  const change: Change = { upserts: { conntrack: RowBlock.of("conntrack", ups) }, deletes: { conntrack: dels } };
  const fdbN = Math.floor(n / 20);
  if (fdbN > 0 && set.count("fdb") > 0) {
    const rows = fdbKeys.pick(set, "fdb", fdbN) as unknown as FdbRow[];
    const uniq = new Map(rows.map((r) => [keyOf("fdb", r), { ...r, ageSec: 0 }]));
    change.upserts.fdb = RowBlock.of("fdb", Array.from(uniq.values()));
  }
  return change;
}

/** Runs churn on a VM until stopped (`set` undefined: skip the tick); write errors other than "migrating" are reported once. */
export function startChurn(write: (change: Change) => void, set: () => TableSet | undefined, opts: ChurnOptions, onError: (e: unknown) => void): () => void {
  const tickMs = opts.tickMs ?? 100;
  let carry = 0;
  let reported = false;
  const ctKeys = new KeySample();
  const fdbKeys = new KeySample();
  const timer = setInterval(() => {
    const s = set();
    // A VM that just arrived by a full copy is still being indexed: skip the tick.
    if (!s || s.unindexed > 0) return;
    const rate = opts.rowsPerSec ?? ((opts.percentPerSec ?? 0) / 100) * s.count("conntrack");
    carry += (rate * tickMs) / 1000;
    const n = Math.floor(carry);
    if (n < 1) return;
    carry -= n;
    try {
      write(churnChange(s, n, ctKeys, fdbKeys));
    } catch (e) {
      if (!(e instanceof VmMigratingError) && !reported) {
        reported = true;
        onError(e);
      }
    }
  }, tickMs);
  timer.unref();
  return () => clearInterval(timer);
}
