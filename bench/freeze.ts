/**
 * Sections 1, 2 and 7: migrations of one VM back and forth between two
 * agents (real processes, memory backend, steady churn), with pre-copy and
 * without it, and the agents' memory for the biggest VM.
 */
import type { Migration__Output } from "../proto/gen/netmig/v1/Migration.js";
import { unaryCall } from "../cli/client.js";
import { freezeWindowMs } from "../cli/render.js";
import { generateVmState } from "../protocol/state/generate.js";
import { Cluster } from "../test/harness/cluster.js";
import { waitFor } from "../test/harness/wait.js";
import { percentile } from "./stats.js";

export interface FreezeRun {
  conntrack: number;
  /** Rows in the VM, every table. */
  rows: number;
  migrations: number;
  /** Freeze window by the agents' clocks (source frozen → destination live; one host: one clock). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The coordinator's view of the same windows (freeze sent → activation reply received). */
  coordinatorP50Ms: number;
  coordinatorP99Ms: number;
  /** Median rows in the final delta. */
  finalRows: number;
  /** Median whole-migration time, ms. */
  totalMs: number;
  /** Every migration ended DONE with equal digests on both sides. */
  correct: boolean;
  /** Bytes of one full copy (from a stop-and-copy run). */
  bytes: number;
}

export interface MemoryRun {
  conntrack: number;
  encodedBytes: number;
  /**
   * Per agent: RSS before the VM existed; the peak while the VM was created
   * on host-a (the bench's seeding: thousands of small writes); and the peak
   * over the migrations, counted from the RSS left after seeding (the whole
   * run's peak where the kernel does not allow restarting the count).
   */
  agents: { hostId: string; baselineRssBytes: number; seedPeakRssBytes: number; peakRssBytes: number }[];
  /** False when the migrations' peak could not be counted apart and includes the seeding. */
  peakAfterSeeding: boolean;
}

export interface SizeResult {
  precopy: FreezeRun;
  stopAndCopy: FreezeRun;
  memory: MemoryRun;
}

export const CHURN = "1%";
export const VM_SHAPE = { fdb: 4000, acls: 1000 } as const;

function summarize(conntrack: number, rows: number, ms: Migration__Output[]): FreezeRun {
  const fw = ms.map((m) => freezeWindowMs(m.progress!));
  const cw = ms.map((m) => m.progress!.freeze_window_ms);
  const fin = ms.map((m) => Number(m.progress!.final_rows));
  return {
    conntrack, rows, migrations: ms.length,
    p50Ms: percentile(fw, 50), p99Ms: percentile(fw, 99), maxMs: Math.max(...fw),
    coordinatorP50Ms: percentile(cw, 50), coordinatorP99Ms: percentile(cw, 99),
    finalRows: percentile(fin, 50), totalMs: percentile(ms.map((m) => m.progress!.total_ms), 50),
    correct: ms.every((m) => m.phase === "DONE" && m.progress!.src_digest !== "" && m.progress!.src_digest === m.progress!.dst_digest),
    bytes: percentile(ms.map((m) => Number(m.progress!.bytes_sent)), 50),
  };
}

/** Migrates `vmId` `reps` times, alternating between host-a and host-b. */
async function migrateMany(c: Cluster, vmId: string, reps: number, options: Record<string, unknown>, onDone: (m: Migration__Output) => void): Promise<Migration__Output[]> {
  const out: Migration__Output[] = [];
  for (let i = 0; i < reps; i++) {
    const inv = await c.inventory("host-a");
    const onA = inv.vms.some((v) => v.vmId === vmId && v.status === "active");
    const m = await c.migrate(vmId, onA ? "host-b" : "host-a", options);
    if (m.phase !== "DONE") throw new Error(`migration ${m.migration_id} ended ${m.phase}: ${m.error?.message ?? ""}`);
    out.push(m);
    onDone(m);
  }
  return out;
}

export async function benchSize(conntrack: number, reps: { precopy: number; stopAndCopy: number }, log: (s: string) => void): Promise<SizeResult> {
  const c = await Cluster.start({ churn: CHURN });
  try {
    const agents = ["host-a", "host-b"];
    const baseline = new Map(agents.map((h) => [h, Cluster.memory(c.agents.get(h)!.pid).rssBytes]));
    const vmId = `bench-${conntrack}`;
    const state = generateVmState(vmId, { conntrack, ...VM_SHAPE });
    const rows = Object.values(state.tables).reduce((n, t) => n + t.length, 0);
    const t0 = performance.now();
    await c.seed("host-a", state);
    log(`  seeded ${rows} rows in ${(performance.now() - t0).toFixed(0)} ms`);
    // The coordinator learns of the VM from host-a's heartbeat.
    await waitFor(async () => {
      const res = await unaryCall<object, { hosts: { host_id: string; vms: string[] }[] }>(c.client, "ListHosts", {});
      return res.hosts.some((h) => h.host_id === "host-a" && h.vms.includes(vmId));
    }, { what: `host-a to report ${vmId}`, timeoutMs: 15_000 });
    const seedPeak = new Map(agents.map((h) => [h, Cluster.memory(c.agents.get(h)!.pid).peakRssBytes]));
    const peakAfterSeeding = agents.every((h) => Cluster.resetPeakRss(c.agents.get(h)!.pid));
    const note = (kind: string) => (m: Migration__Output) => log(`  ${kind} ${m.src_host}→${m.dst_host}: freeze ${freezeWindowMs(m.progress!).toFixed(2)} ms (coordinator ${m.progress!.freeze_window_ms.toFixed(2)} ms), final delta ${m.progress!.final_rows} rows, total ${m.progress!.total_ms.toFixed(0)} ms`);
    const pre = await migrateMany(c, vmId, reps.precopy, {}, note("pre-copy"));
    const stop = await migrateMany(c, vmId, reps.stopAndCopy, { stop_and_copy: true, freeze_budget_ms: 60_000 }, note("stop-and-copy"));
    const stopRun = summarize(conntrack, rows, stop);
    return {
      precopy: { ...summarize(conntrack, rows, pre), bytes: stopRun.bytes },
      stopAndCopy: stopRun,
      memory: {
        conntrack, encodedBytes: stopRun.bytes, peakAfterSeeding,
        agents: agents.map((h) => ({ hostId: h, baselineRssBytes: baseline.get(h)!, seedPeakRssBytes: seedPeak.get(h)!, peakRssBytes: Cluster.memory(c.agents.get(h)!.pid).peakRssBytes })),
      },
    };
  } finally {
    await c.close();
  }
}
