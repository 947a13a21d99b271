/**
 * The kernel conntrack table of one network namespace: read a VM's entries
 * (one `conntrack -L` per zone), write them in batches (ctnetlink messages
 * through long-lived sender processes), and delete them (by exact tuple, or
 * a whole selector). `close()` stops the senders.
 */
import { cpus } from "node:os";
import { BackendError } from "../../../protocol/errors.js";
import type { ConntrackRow } from "../../../protocol/state/tables.js";
import type { HostExec } from "../common/command.js";
import { CtnlWriter, type CtOp, type CtnlResult } from "./ctnetlink-helper.js";
import { parseExtended, type ParseStats } from "./parse.js";
import { filterArgs, selectorZones, type ConntrackSelector } from "./selector.js";

export interface KernelConntrackOptions {
  /** conntrack binary. Default "conntrack". */
  conntrackBin?: string;
  /** python3 binary for the ctnetlink helper. Default "python3". */
  python?: string;
  /** Helper processes for big batches. Default: the number of CPUs, at most 4. */
  parallelism?: number;
  /** Deadline for one read or batch. Default 120000 ms. */
  timeoutMs?: number;
}

export class KernelConntrack {
  /** Entries skipped on read (unsupported protocol or unparsable), since start. */
  readonly stats: ParseStats = { unsupported: 0, malformed: 0 };

  private readonly writer: CtnlWriter;

  constructor(private readonly exec: HostExec, private readonly opts: KernelConntrackOptions = {}) {
    this.writer = new CtnlWriter(exec, { python: opts.python ?? "python3", parallelism: opts.parallelism ?? Math.min(4, cpus().length) });
  }

  /**
   * Starts the ctnetlink sender processes now (python takes up to a second
   * to start on a busy host), so a migration's first batch does not wait.
   */
  warm(): void {
    this.writer.warm();
  }

  /** Stops the sender processes (they restart on the next write). Idempotent. */
  close(): void {
    this.writer.close();
  }

  private get bin(): string {
    return this.opts.conntrackBin ?? "conntrack";
  }

  /** Reads the entries a selector matches. */
  async list(sel: ConntrackSelector): Promise<ConntrackRow[]> {
    const zones = selectorZones(sel);
    if (zones.length === 0 && sel.mark === undefined) return [];
    const scopes: (number | null)[] = zones.length ? zones : [null];
    const outs = await Promise.all(
      scopes.map((z) =>
        this.exec.run([this.bin, "-L", "-o", "extended", ...filterArgs(sel, z)], { timeoutMs: this.opts.timeoutMs ?? 120_000, check: false }),
      ),
    );
    const rows: ConntrackRow[] = [];
    for (const res of outs) {
      if (res.code !== 0) throw new BackendError(`conntrack -L failed (${res.code}): ${res.stderr.trim().slice(0, 500)}`);
      for (const r of parseExtended(res.stdout, this.stats)) rows.push(r);
    }
    return rows;
  }

  /** Writes rows (each with its target zone) as one batch. Throws if any entry failed. */
  async write(ops: [CtOp, ConntrackRow][], what: string): Promise<CtnlResult> {
    const res = await this.writer.write(ops, this.opts.timeoutMs ?? 120_000);
    if (res.failed > 0) {
      const first = res.errors[0];
      throw new BackendError(
        `${what}: ${res.failed} of ${ops.length} conntrack operations failed${first ? ` (first: entry ${first.index} ${first.op}: ${first.error})` : ""}`,
      );
    }
    return res;
  }

  /** Deletes every entry a selector matches (one `conntrack -D` per zone). */
  async flush(sel: ConntrackSelector): Promise<void> {
    const zones = selectorZones(sel);
    if (zones.length === 0 && sel.mark === undefined) return;
    const scopes: (number | null)[] = zones.length ? zones : [null];
    for (const z of scopes) {
      const res = await this.exec.run([this.bin, "-D", ...filterArgs(sel, z)], { timeoutMs: this.opts.timeoutMs ?? 120_000, check: false });
      // exit 1 with "0 flow entries" means nothing matched: fine.
      if (res.code !== 0 && !/0 flow entries/.test(res.stderr)) {
        throw new BackendError(`conntrack -D failed (${res.code}): ${res.stderr.trim().slice(0, 500)}`);
      }
    }
  }
}
