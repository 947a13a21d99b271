/**
 * Staging a delta whose conntrack rows are loaded into the kernel as they
 * arrive (the ovs and conntrack backends both do this on a destination).
 *
 * The kernel ops come from the delta itself, not from what the staging area
 * changed: every upserted entry is written (create, or replace if it is
 * there) and every entry the delta removes is deleted. So a stage retried
 * after a failed one rewrites whatever the failed one may have missed, and
 * the kernel write (mostly the sender process and the kernel working) runs
 * while this process applies the same delta to the staging area.
 */
import type { StateDelta } from "../../../protocol/state/model.js";
import { keyOf, type ConntrackRow } from "../../../protocol/state/tables.js";
import type { StagingArea } from "../common/staging-area.js";
import type { CtOp } from "./ctnetlink-messages.js";
import type { KernelConntrack } from "./kernel-table.js";

/** Applies `delta` (conntrack rows already remapped to this host's zones) to `area`, loading its conntrack part. */
export async function stageWithConntrack(ct: KernelConntrack | null, area: StagingArea, delta: StateDelta, what: string): Promise<void> {
  if (!ct) {
    area.apply(delta);
    return;
  }
  const ops: [CtOp, ConntrackRow][] = [];
  for (const r of area.removals(delta, "conntrack").values()) ops.push(["D", r as unknown as ConntrackRow]);
  const rows = delta.upserts.conntrack?.rows() ?? [];
  for (const r of rows) ops.push(["R", r]);
  // Encoding runs now; the promise then waits on the sender while `apply` runs.
  const loading = ops.length ? ct.write(ops, what) : null;
  loading?.catch(() => undefined); // awaited below
  area.apply(delta, { conntrack: rows });
  if (!loading) return;
  await loading;
  const now = Date.now();
  for (const [op, r] of ops) if (op !== "D") area.loadedAt.set(`conntrack|${keyOf("conntrack", r)}`, now);
}
