/** Human output for the CLI: sizes, durations, a live progress line, tables. */
import type { Migration__Output } from "../proto/gen/netmig/v1/Migration.js";
import type { Progress__Output } from "../proto/gen/netmig/v1/Progress.js";

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function ms(n: number): string {
  return n < 10 ? `${n.toFixed(2)} ms` : n < 1000 ? `${n.toFixed(1)} ms` : `${(n / 1000).toFixed(2)} s`;
}

/** A migration's freeze window by the agents' clocks, or the coordinator's bound when the agents gave none. */
export function freezeWindowMs(p: Progress__Output): number {
  return p.state_frozen_ms > 0 ? p.state_frozen_ms : p.freeze_window_ms;
}

export function progressLine(phase: string, p: Progress__Output | null | undefined): string {
  if (!p) return phase;
  const parts = [phase.padEnd(11), `round ${p.round}`, `${Number(p.rows_sent).toLocaleString("en")} entries`, bytes(Number(p.bytes_sent))];
  if (p.freeze_window_ms > 0) parts.push(`freeze ${ms(freezeWindowMs(p))}`);
  return parts.join("  ");
}

/** Writes a line that replaces itself on a terminal, or a new line otherwise. */
export class LiveLine {
  private last = "";
  constructor(private readonly out: NodeJS.WriteStream = process.stdout) {}
  update(line: string): void {
    if (line === this.last) return;
    this.last = line;
    if (this.out.isTTY) this.out.write(`\r\x1b[K${line}`);
    else this.out.write(`${line}\n`);
  }
  done(): void {
    if (this.out.isTTY && this.last) this.out.write("\n");
    this.last = "";
  }
}

export function migrationSummary(m: Migration__Output): string {
  const p = m.progress;
  const lines = [
    `migration ${m.migration_id}: VM ${m.vm_id} ${m.src_host} → ${m.dst_host}`,
    `  phase          ${m.phase}${m.error?.message ? ` (${m.error.code}: ${m.error.message})` : ""}`,
  ];
  if (p) {
    lines.push(
      `  rounds         ${p.round + 1} (final delta ${Number(p.final_rows).toLocaleString("en")} entries)`,
      `  moved          ${Number(p.rows_sent).toLocaleString("en")} entries, ${bytes(Number(p.bytes_sent))} in ${p.chunks_sent} messages`,
      `  freeze window  ${p.freeze_window_ms > 0 ? `${ms(freezeWindowMs(p))} (state frozen on the source → live on the destination; ${ms(p.freeze_window_ms)} from the coordinator's freeze to its activation reply)` : "-"}`,
      `  total          ${ms(p.total_ms)}`,
      `  digest         source ${p.src_digest || "-"}  destination ${p.dst_digest || "-"}${p.src_digest && p.src_digest === p.dst_digest ? "  ✓ match" : ""}`,
    );
  }
  return lines.join("\n");
}

export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n");
}
