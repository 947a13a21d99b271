/** Conversions between coordinator records and gRPC messages. */
import type { Migration } from "../../proto/gen/netmig/v1/Migration.js";
import type { MigrationOptions__Output } from "../../proto/gen/netmig/v1/MigrationOptions.js";
import type { MigrationOptions } from "../record.js";
import type { MigrationRecord } from "../record.js";

export function migrationToProto(r: MigrationRecord): Migration {
  const p = r.progress;
  return {
    migration_id: r.id, vm_id: r.vmId, src_host: r.src, dst_host: r.dst, phase: r.phase, epoch: String(r.epoch), mode: r.mode,
    options: { freeze_budget_ms: r.options.freezeBudgetMs, max_precopy_rounds: r.options.maxPrecopyRounds, converge_rows: r.options.convergeRows, stop_and_copy: r.options.stopAndCopy, timeout_ms: r.options.timeoutMs },
    progress: {
      round: p.round, rows_sent: String(p.rowsSent), bytes_sent: String(p.bytesSent), chunks_sent: String(p.chunksSent), last_round_rows: String(p.lastRoundRows),
      freeze_window_ms: p.freezeWindowMs, state_frozen_ms: p.stateFrozenMs ?? 0, precopy_ms: p.precopyMs, total_ms: p.totalMs, src_digest: p.srcDigest, dst_digest: p.dstDigest, final_rows: String(p.finalRows),
    },
    error: r.error ? { code: r.error.code, message: r.error.message } : null,
    history: r.history.map((h) => ({ phase: h.phase, at_ms: String(h.atMs), note: h.note ?? "" })),
    created_at_ms: String(r.createdAtMs), updated_at_ms: String(r.updatedAtMs),
  };
}

/** Proto options (0 = default) → the options a caller set. */
export function optionsFromProto(o: MigrationOptions__Output | null | undefined): Partial<MigrationOptions> {
  if (!o) return {};
  const out: Partial<MigrationOptions> = {};
  if (o.freeze_budget_ms) out.freezeBudgetMs = o.freeze_budget_ms;
  if (o.max_precopy_rounds) out.maxPrecopyRounds = o.max_precopy_rounds;
  if (o.converge_rows) out.convergeRows = o.converge_rows;
  if (o.stop_and_copy) out.stopAndCopy = true;
  if (o.timeout_ms) out.timeoutMs = o.timeout_ms;
  return out;
}
