/**
 * netmig's benchmark: `npm run bench` (add `-- --json` for JSON on stdout,
 * `-- --quick` for a short smoke run). Everything runs on this machine with a
 * real nats-server and real agent and coordinator processes (memory backend).
 * Progress goes to stderr; the report (a table, or JSON) to stdout.
 */
import { connect } from "nats";
import { generateVmState } from "../protocol/state/generate.js";
import { startNatsServer } from "../cli/local-nats.js";
import { benchCodec, type CodecResult } from "./codec.js";
import { benchEvacuation, type EvacuationResult } from "./evacuate.js";
import { benchSize, CHURN, VM_SHAPE, type SizeResult } from "./freeze.js";
import { benchFloor, benchNaive, type TransferResult } from "./floor.js";
import { bytes as fmtBytes } from "../cli/render.js";
import { fmtCount, fmtMs, fmtX, table } from "./stats.js";
import { cpus, totalmem } from "node:os";

interface SizeReport extends SizeResult {
  floor: TransferResult;
  naive: TransferResult;
}

interface Report {
  machine: { cpus: number; memoryBytes: number; node: string };
  churn: string;
  sizes: SizeReport[];
  codec: CodecResult[];
  evacuation: EvacuationResult;
  targets: { name: string; target: string; measured: string; met: boolean }[];
}

const args = new Set(process.argv.slice(2));
for (const a of args) if (!["--json", "--quick"].includes(a)) {
  process.stderr.write(`netmig bench: unknown option ${a} (known: --json, --quick)\n`);
  process.exit(2);
}
const quick = args.has("--quick");
const log = (s: string) => process.stderr.write(`${s}\n`);

const SIZES = quick ? [1_000, 10_000] : [1_000, 10_000, 100_000, 1_000_000];
const REPS = (n: number) => (quick ? { precopy: 5, stopAndCopy: 3 } : n >= 1_000_000 ? { precopy: 3, stopAndCopy: 2 } : n >= 100_000 ? { precopy: 100, stopAndCopy: 5 } : { precopy: 100, stopAndCopy: 20 });
const EVAC = quick ? { vms: 10, conntrack: 1000, concurrency: 4 } : { vms: 100, conntrack: 10_000, concurrency: 8 };

async function main(): Promise<Report> {
  log(`section 5: codec (${quick ? "10k" : "100k"} conntrack entries)`);
  const codec = benchCodec(quick ? 10_000 : 100_000, quick ? 3 : 7);

  const sizes: SizeReport[] = [];
  const nats = await startNatsServer({ jetstream: false });
  const nc = await connect({ servers: nats.url });
  try {
    for (const n of SIZES) {
      log(`sections 1, 2, 7: a VM of ${fmtCount(n)} conntrack + ${VM_SHAPE.fdb} MAC + ${VM_SHAPE.acls} ACL entries, churn ${CHURN}/s`);
      const r = await benchSize(n, REPS(n), log);
      log(`sections 3, 4: raw NATS floor and naive JSON for the same state`);
      const state = generateVmState(`bench-${n}`, { conntrack: n, ...VM_SHAPE });
      const floor = await benchFloor(nc, nats.url, state, 5);
      const naive = await benchNaive(nc, nats.url, state, n >= 1_000_000 ? 1 : 3);
      sizes.push({ ...r, floor, naive });
    }
  } finally {
    await nc.close();
    await nats.stop();
  }

  log(`section 6: evacuation of ${EVAC.vms} VMs × ${fmtCount(EVAC.conntrack)} conntrack entries, concurrency ${EVAC.concurrency}`);
  const evacuation = await benchEvacuation(EVAC.vms, EVAC.conntrack, EVAC.concurrency, log);

  const targets: Report["targets"] = [];
  const at = (n: number) => sizes.find((s) => s.precopy.conntrack === n);
  const s100k = at(100_000);
  if (s100k) {
    targets.push({ name: "freeze p50, 100k + churn, pre-copy", target: "≤ 5 ms", measured: `${fmtMs(s100k.precopy.p50Ms)} ms (coordinator ${fmtMs(s100k.precopy.coordinatorP50Ms)})`, met: s100k.precopy.p50Ms <= 5 });
    targets.push({ name: "freeze p99, 100k + churn, pre-copy", target: "≤ 15 ms", measured: `${fmtMs(s100k.precopy.p99Ms)} ms (coordinator ${fmtMs(s100k.precopy.coordinatorP99Ms)})`, met: s100k.precopy.p99Ms <= 15 });
    const ratio = s100k.stopAndCopy.p50Ms / s100k.floor.ms;
    targets.push({ name: "stop-and-copy vs raw NATS floor, 100k", target: "≤ 2×", measured: fmtX(ratio), met: ratio <= 2 });
  }
  const s1m = at(1_000_000);
  if (s1m) {
    targets.push({ name: "1M VM migrates correctly", target: "DONE, digests equal", measured: s1m.precopy.correct && s1m.stopAndCopy.correct ? "yes" : "no", met: s1m.precopy.correct && s1m.stopAndCopy.correct });
    targets.push({ name: "1M VM full copy (stop-and-copy freeze)", target: "< 1 s", measured: `${fmtMs(s1m.stopAndCopy.p50Ms)} ms`, met: s1m.stopAndCopy.p50Ms < 1000 });
    const worst = Math.max(...s1m.memory.agents.map((a) => (a.peakRssBytes - a.baselineRssBytes) / s1m.memory.encodedBytes));
    targets.push({ name: `1M VM agent peak RSS over baseline${s1m.memory.peakAfterSeeding ? ", migrations" : ""}`, target: "< 3× encoded", measured: fmtX(worst), met: worst < 3 });
  }
  const evacMet = evacuation.failed === 0 && evacuation.done === evacuation.vms;
  targets.push({ name: `evacuation ${evacuation.vms} × ${fmtCount(evacuation.conntrackPerVm)}, total`, target: quick ? "(quick run)" : "< 10 s", measured: `${(evacuation.totalMs / 1000).toFixed(2)} s`, met: evacMet && evacuation.totalMs < 10_000 });
  targets.push({ name: "evacuation per-VM freeze p99", target: "≤ 20 ms", measured: `${fmtMs(evacuation.freezeP99Ms)} ms (coordinator ${fmtMs(evacuation.coordinatorP99Ms)})`, met: evacMet && evacuation.freezeP99Ms <= 20 });
  const col = codec.find((c) => c.format === "msgpackr-columnar")!;
  targets.push({ name: "encoded size vs JSON (conntrack)", target: "≤ 40 %", measured: `${((100 * 1) / col.sizeVsJson).toFixed(0)} %`, met: 1 / col.sizeVsJson <= 0.4 });
  targets.push({ name: "encode + decode vs JSON (conntrack)", target: "≥ 5× faster", measured: fmtX(col.speedupVsJson), met: col.speedupVsJson >= 5 });

  return { machine: { cpus: cpus().length, memoryBytes: totalmem(), node: process.version }, churn: `${CHURN}/s`, sizes, codec, evacuation, targets };
}

function render(r: Report): string {
  const out: string[] = [];
  out.push(`netmig benchmark — ${r.machine.cpus} CPUs, ${fmtBytes(r.machine.memoryBytes)}, node ${r.machine.node}; churn ${r.churn} of each VM's conntrack entries\n`);
  out.push("Freeze window (ms) by VM size: (1) with pre-copy, (2) stop-and-copy; (3) raw NATS floor for the same bytes; (4) naive per-entry JSON");
  out.push("Freeze windows are the agents' (source frozen → destination live); (1c), (2c): the coordinator's view of the same (freeze sent → activation reply received).");
  out.push(table(
    ["conntrack", "rows", "bytes", "(1) p50", "(1) p99", "(1c) p50", "(1c) p99", "final Δ", "(2) p50", "(2) p99", "(2c) p50", "(3) floor", "(2)/(3)", "(4) naive", "(4)/(2)"],
    r.sizes.map((s) => [
      fmtCount(s.precopy.conntrack), fmtCount(s.precopy.rows), fmtBytes(s.stopAndCopy.bytes),
      fmtMs(s.precopy.p50Ms), fmtMs(s.precopy.p99Ms), fmtMs(s.precopy.coordinatorP50Ms), fmtMs(s.precopy.coordinatorP99Ms), String(s.precopy.finalRows),
      fmtMs(s.stopAndCopy.p50Ms), fmtMs(s.stopAndCopy.p99Ms), fmtMs(s.stopAndCopy.coordinatorP50Ms), fmtMs(s.floor.ms), fmtX(s.stopAndCopy.p50Ms / s.floor.ms),
      fmtMs(s.naive.ms), fmtX(s.naive.ms / s.stopAndCopy.p50Ms),
    ]),
  ));
  out.push(`migrations per size: ${r.sizes.map((s) => `${fmtCount(s.precopy.conntrack)}: ${s.precopy.migrations} + ${s.stopAndCopy.migrations}`).join(", ")}; all DONE with equal digests: ${r.sizes.every((s) => s.precopy.correct && s.stopAndCopy.correct) ? "yes" : "NO"}\n`);
  out.push(`(5) Codec, ${fmtCount(r.codec[0]!.entries)} conntrack entries (median of runs)`);
  out.push(table(
    ["format", "bytes/entry", "encode ms", "decode ms", "entries/s", "MB/s", "size vs JSON", "speed vs JSON"],
    r.codec.map((c) => [c.format, c.bytesPerEntry.toFixed(1), fmtMs(c.encodeMs), fmtMs(c.decodeMs), fmtCount(c.entriesPerSec), c.mbPerSec.toFixed(0), `${(100 / c.sizeVsJson).toFixed(0)} %`, fmtX(c.speedupVsJson)]),
  ));
  const e = r.evacuation;
  out.push(`\n(6) Evacuation: ${e.vms} VMs × ${fmtCount(e.conntrackPerVm)} conntrack, concurrency ${e.concurrency}: ${e.done} done, ${e.failed} failed in ${(e.totalMs / 1000).toFixed(2)} s; per-VM freeze p50 ${fmtMs(e.freezeP50Ms)} ms, p99 ${fmtMs(e.freezeP99Ms)} ms, max ${fmtMs(e.freezeMaxMs)} ms (coordinator's view: p50 ${fmtMs(e.coordinatorP50Ms)}, p99 ${fmtMs(e.coordinatorP99Ms)} ms)\n`);
  const big = r.sizes[r.sizes.length - 1]!;
  out.push(`(7) Agent memory, ${fmtCount(big.memory.conntrack)}-entry VM (encoded ${fmtBytes(big.memory.encodedBytes)}):`);
  const over = (b: number, a: { baselineRssBytes: number }) => `${fmtBytes(b - a.baselineRssBytes)} (${fmtX((b - a.baselineRssBytes) / big.memory.encodedBytes)})`;
  out.push(table(
    ["agent", "baseline RSS", `peak over the migrations${big.memory.peakAfterSeeding ? "" : " (seeding included)"} - baseline (÷ encoded)`, "peak while seeding - baseline (÷ encoded)"],
    big.memory.agents.map((a) => [a.hostId, fmtBytes(a.baselineRssBytes), over(a.peakRssBytes, a), over(a.seedPeakRssBytes, a)]),
  ));
  out.push("\nTargets");
  out.push(table(["target", "wanted", "measured", "met"], r.targets.map((t) => [t.name, t.target, t.measured, t.met ? "yes" : "NO"])));
  return out.join("\n");
}

main().then(
  (r) => {
    process.stdout.write(args.has("--json") ? `${JSON.stringify(r, null, 2)}\n` : `${render(r)}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`netmig bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
