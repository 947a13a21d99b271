/**
 * The state data path of one full copy, step by step, in one process: a
 * source `TableSet` read (`full`), encoded into chunks, each chunk unpacked,
 * decoded and staged by a memory backend that journals to a temporary
 * directory, then sealed. No NATS, no second process: what each step costs
 * on its own, to find where a change to the data path moves time.
 *
 *   npm run bench:datapath [-- <conntrack entries> [<repetitions>]]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryBackend } from "../agent/backends/memory/backend.js";
import { decodeEnvelope } from "../protocol/codec/envelope.js";
import { generateVmState } from "../protocol/state/generate.js";
import { blocksOf } from "../protocol/state/row-block.js";
import { TableSet } from "../protocol/state/table-set.js";
import { parseChunk } from "../protocol/transfer/chunks.js";
import { encodeRound } from "../protocol/transfer/encoder.js";
import { DEFAULT_CHUNK_BYTES } from "../protocol/transfer/sender.js";
import { fmtCount, fmtMs, median, table } from "./stats.js";
import { VM_SHAPE } from "./freeze.js";

const STEPS = ["read", "encode", "unpack", "decode", "stage", "seal"] as const;

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 100_000);
  const reps = Number(process.argv[3] ?? 5);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(reps) || reps < 1) throw new Error("usage: bench:datapath [-- <conntrack entries> [<repetitions>]]");
  const src = new TableSet();
  let zones: Record<string, number>;
  {
    const state = generateVmState("bench-datapath", { conntrack: n, ...VM_SHAPE });
    zones = Object.fromEntries(state.tables.ports.map((p) => [p.ifaceId, p.ctZone]));
    src.apply({ upserts: blocksOf(state.tables), deletes: {} });
    src.indexSome(Infinity);
  }
  const runs: Record<string, number>[] = [];
  let chunks = 0;
  let bytes = 0;
  for (let rep = 0; rep < reps; rep++) {
    const t: Record<string, number> = Object.fromEntries(STEPS.map((s) => [s, 0]));
    let at = performance.now();
    const lap = (step: string): void => {
      const now = performance.now();
      t[step]! += now - at;
      at = now;
    };
    const full = src.full();
    lap("read");
    const msgs = Array.from(encodeRound({ vmId: "bench-datapath", baseGen: null, gen: src.gen, upserts: full, deletes: {} }, {
      migrationId: "m", vmId: "bench-datapath", epoch: 1, round: 0, seqBase: 0, final: true, digest: src.digest.toString(), tables: src.digest.tables(), zones,
    }, DEFAULT_CHUNK_BYTES), (m) => m.data);
    lap("encode");
    chunks = msgs.length;
    bytes = msgs.reduce((s, m) => s + m.byteLength, 0);
    const dir = mkdtempSync(join(tmpdir(), "netmig-datapath-"));
    const b = new MemoryBackend({ stateDir: dir });
    await b.start();
    at = performance.now();
    for (const data of msgs) {
      const env = decodeEnvelope(data);
      lap("unpack");
      if (env.kind !== "chunk") continue;
      const { delta } = parseChunk(env.body, "bench-datapath");
      lap("decode");
      await b.stage("bench-datapath", "s", delta, { srcPortZones: zones });
      lap("stage");
    }
    await b.seal("bench-datapath", "s");
    const staged = await b.staged("bench-datapath", "s");
    lap("seal");
    if (staged?.digest !== src.digest.toString()) throw new Error("the staged digest differs from the source's");
    runs.push(t);
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`netmig data path, one process: ${fmtCount(n)} conntrack + ${VM_SHAPE.fdb} MAC + ${VM_SHAPE.acls} ACL entries, ${chunks} messages, ${(bytes / 2 ** 20).toFixed(1)} MiB; median of ${reps}\n`);
  process.stdout.write(`${table(["step", ...STEPS, "total"], [["ms", ...STEPS.map((s) => fmtMs(median(runs.map((r) => r[s]!)))), fmtMs(median(runs.map((r) => STEPS.reduce((a, s) => a + r[s]!, 0))))]])}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`netmig bench:datapath: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
