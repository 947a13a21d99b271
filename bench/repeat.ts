/**
 * One section of the benchmark, run again and again, for the run-to-run
 * spread that a single full run hides (its tails move by ±20 % and more on
 * a shared virtual machine), and for comparing two builds: run this from
 * each build's tree in turn, alternating, so both see the machine alike.
 *
 *   npm run bench:repeat -- <section> [--runs N] [--json]
 *   node dist/bench/repeat.js <section> [--runs N] [--json]   (after npm run build)
 *
 * Sections: evacuation (100 VMs × 10k, concurrency 8), precopy-100k (100
 * pre-copy migrations of a 100k-entry VM), memory-1m (a 1M-entry VM: 3
 * pre-copy and 2 stop-and-copy migrations, the agents' peak RSS). Each run
 * prints one line (stderr: progress); the summary gives each figure's
 * range and mean, and how many runs missed the issue's target for it.
 */
import { benchEvacuation } from "./evacuate.js";
import { benchSize } from "./freeze.js";

interface Figure {
  name: string;
  /** The target, where the issue sets one: at most this much. */
  max?: number;
}

interface Section {
  figures: Figure[];
  run(log: (s: string) => void): Promise<number[]>;
}

const SECTIONS: Record<string, Section> = {
  evacuation: {
    figures: [{ name: "total s", max: 10 }, { name: "freeze p50 ms" }, { name: "freeze p99 ms", max: 20 }],
    async run(log) {
      const r = await benchEvacuation(100, 10_000, 8, log);
      if (r.failed > 0 || r.done !== r.vms) throw new Error(`evacuation: ${r.done} done, ${r.failed} failed of ${r.vms}`);
      return [r.totalMs / 1000, r.freezeP50Ms, r.freezeP99Ms];
    },
  },
  "precopy-100k": {
    figures: [{ name: "freeze p50 ms", max: 5 }, { name: "freeze p99 ms", max: 15 }],
    async run(log) {
      const r = await benchSize(100_000, { precopy: 100, stopAndCopy: 1 }, log);
      if (!r.precopy.correct) throw new Error("a pre-copy migration did not end DONE with equal digests");
      return [r.precopy.p50Ms, r.precopy.p99Ms];
    },
  },
  "memory-1m": {
    figures: [{ name: "stop-and-copy ms", max: 1000 }, { name: "peak RSS ÷ encoded", max: 3 }],
    async run(log) {
      const r = await benchSize(1_000_000, { precopy: 3, stopAndCopy: 2 }, log);
      if (!r.precopy.correct || !r.stopAndCopy.correct) throw new Error("a 1M migration did not end DONE with equal digests");
      const m = r.memory;
      return [r.stopAndCopy.p50Ms, Math.max(...m.agents.map((a) => (a.peakRssBytes - a.baselineRssBytes) / m.encodedBytes))];
    },
  },
};

function usage(problem: string): never {
  process.stderr.write(`netmig bench:repeat: ${problem}\nusage: bench:repeat <${Object.keys(SECTIONS).join("|")}> [--runs N] [--json]\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
const name = argv.find((a) => !a.startsWith("--") && argv[argv.indexOf(a) - 1] !== "--runs");
if (!name) usage("which section?");
const section = SECTIONS[name];
if (!section) usage(`unknown section "${name}"`);
const runsAt = argv.indexOf("--runs");
const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : 5;
if (!Number.isInteger(runs) || runs < 1 || runs > 100) usage(`--runs must be an integer from 1 to 100 (got ${argv[runsAt + 1]})`);
for (const a of argv) if (a.startsWith("--") && !["--runs", "--json"].includes(a)) usage(`unknown option ${a}`);
const json = argv.includes("--json");

const log = (s: string) => process.stderr.write(`${s}\n`);
const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const results: number[][] = [];
for (let i = 0; i < runs; i++) {
  const values = await section.run(() => undefined);
  results.push(values);
  log(`run ${i + 1}/${runs}: ${section.figures.map((f, k) => `${f.name} ${fmt(values[k]!)}`).join(", ")}`);
}
const summary = section.figures.map((f, k) => {
  const v = results.map((r) => r[k]!);
  return { figure: f.name, min: Math.min(...v), mean: v.reduce((a, b) => a + b, 0) / v.length, max: Math.max(...v), target: f.max ?? null, missed: f.max === undefined ? null : v.filter((x) => x > f.max!).length };
});
if (json) {
  process.stdout.write(`${JSON.stringify({ section: name, runs: results.map((r) => Object.fromEntries(section.figures.map((f, k) => [f.name, r[k]]))), summary }, null, 2)}\n`);
} else {
  process.stdout.write(`${name}, ${runs} runs\n`);
  for (const s of summary) {
    process.stdout.write(`  ${s.figure.padEnd(20)} ${fmt(s.min)}–${fmt(s.max)} (mean ${fmt(s.mean)})${s.target === null ? "" : `; over ${s.target} in ${s.missed} of ${runs}`}\n`);
  }
}
