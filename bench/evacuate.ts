/**
 * Section 6: host evacuation. Many VMs on host-a, each under churn, moved to
 * host-b and host-c through EvacuateHost with a concurrency limit.
 */
import { unaryCall } from "../cli/client.js";
import { generateVmState } from "../protocol/state/generate.js";
import { Cluster } from "../test/harness/cluster.js";
import { waitFor } from "../test/harness/wait.js";
import { freezeWindowMs } from "../cli/render.js";
import { CHURN } from "./freeze.js";
import { percentile } from "./stats.js";

export interface EvacuationResult {
  vms: number;
  conntrackPerVm: number;
  concurrency: number;
  done: number;
  failed: number;
  totalMs: number;
  /** Per-VM freeze window by the agents' clocks. */
  freezeP50Ms: number;
  freezeP99Ms: number;
  freezeMaxMs: number;
  /** The coordinator's view of the same windows. */
  coordinatorP50Ms: number;
  coordinatorP99Ms: number;
}

export async function benchEvacuation(vms: number, conntrack: number, concurrency: number, log: (s: string) => void): Promise<EvacuationResult> {
  const c = await Cluster.start({ churn: CHURN, agents: ["host-a", "host-b", "host-c"] });
  try {
    const ids = Array.from({ length: vms }, (_, i) => `evac-${String(i).padStart(3, "0")}`);
    const t0 = performance.now();
    for (const [i, id] of ids.entries()) await c.seed("host-a", generateVmState(id, { conntrack, fdb: 100, acls: 20, seed: i + 1 }));
    log(`  seeded ${vms} VMs × ${conntrack} conntrack entries in ${(performance.now() - t0).toFixed(0)} ms`);
    await waitFor(async () => {
      const res = await unaryCall<object, { hosts: { host_id: string; vms: string[] }[] }>(c.client, "ListHosts", {});
      return (res.hosts.find((h) => h.host_id === "host-a")?.vms.length ?? 0) === vms;
    }, { what: `host-a to report ${vms} VMs`, timeoutMs: 30_000 });
    const freeze: number[] = [];
    const coordinator: number[] = [];
    const events = await c.evacuate({ src_host: "host-a", dst_hosts: ["host-b", "host-c"], concurrency, options: {} }, (ev) => {
      const m = ev.migration;
      if (m && m.phase === "DONE") {
        freeze.push(freezeWindowMs(m.progress!));
        coordinator.push(m.progress!.freeze_window_ms);
      }
      if (!ev.finished && ev.done % 10 === 0 && m) log(`  ${ev.done}/${ev.total} done`);
    });
    const last = events.at(-1);
    if (!last?.finished) throw new Error("the evacuation stream ended without a final event");
    return {
      vms, conntrackPerVm: conntrack, concurrency, done: last.done, failed: last.failed, totalMs: last.elapsed_ms,
      freezeP50Ms: percentile(freeze, 50), freezeP99Ms: percentile(freeze, 99), freezeMaxMs: Math.max(...freeze),
      coordinatorP50Ms: percentile(coordinator, 50), coordinatorP99Ms: percentile(coordinator, 99),
    };
  } finally {
    await c.close();
  }
}
