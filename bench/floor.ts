/**
 * Sections 3 and 4: reference transfers of a VM's full state over the same
 * NATS server, process to process, with none of netmig's logic.
 *   floor  the bytes netmig would send (its encoded chunks, encoded before
 *          the clock starts), as pipelined requests to a process that only acks;
 *   naive  what a quick script would do: the rows as per-entry JSON objects,
 *          chunked below max_payload, parsed and stored by key at the far end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "nats";
import { chunkBytesFor } from "../protocol/transfer/sender.js";
import { encodeRound } from "../protocol/transfer/encoder.js";
import type { VmState } from "../protocol/state/model.js";
import { blocksOf } from "../protocol/state/row-block.js";
import { TABLE_NAMES } from "../protocol/state/tables.js";
import { StateDigest } from "../protocol/state/digest.js";
import { median } from "./stats.js";

const RESPONDER = fileURLToPath(new URL("./responder.js", import.meta.url));

export interface TransferResult {
  /** Median over the repetitions, ms. */
  ms: number;
  bytes: number;
  messages: number;
}

async function startResponder(url: string, subject: string, mode: "ack" | "json"): Promise<ChildProcess> {
  const child = spawn(process.execPath, [RESPONDER, url, subject, mode], { stdio: ["pipe", "pipe", "inherit"] });
  const [line] = (await Promise.race([once(child.stdout!, "data"), once(child, "exit").then(() => { throw new Error("responder exited"); })])) as [Buffer];
  if (!line.toString().includes("ready")) throw new Error(`responder said ${line.toString()}`);
  return child;
}

async function stopResponder(child: ChildProcess): Promise<void> {
  child.stdin!.end();
  const t = setTimeout(() => child.kill("SIGKILL"), 3000);
  if (child.exitCode === null) await once(child, "exit");
  clearTimeout(t);
}

/** Sends every payload as a request, at most `window` in flight; resolves when all are answered. */
async function pipeline(nc: NatsConnection, subject: string, payloads: Iterable<Uint8Array>, window: number): Promise<{ bytes: number; messages: number }> {
  const inflight = new Set<Promise<unknown>>();
  let bytes = 0;
  let messages = 0;
  for (const data of payloads) {
    while (inflight.size >= window) await Promise.race(inflight);
    bytes += data.byteLength;
    messages++;
    const p = nc.request(subject, data, { timeout: 30_000 }).finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await Promise.all(inflight);
  return { bytes, messages };
}

/** Starts a responder, then times `reps` transfers of `payloads()` to it (after one warm-up run); the median wins. */
async function timeTransfers(nc: NatsConnection, url: string, mode: "ack" | "json", payloads: () => Iterable<Uint8Array>, reps: number): Promise<TransferResult> {
  const subject = `bench.${mode}.${process.pid}`;
  const child = await startResponder(url, subject, mode);
  try {
    const times: number[] = [];
    let last = { bytes: 0, messages: 0 };
    for (let i = 0; i < reps + 1; i++) {
      const t0 = performance.now();
      last = await pipeline(nc, subject, payloads(), 8);
      if (i > 0) times.push(performance.now() - t0);
    }
    return { ms: median(times), ...last };
  } finally {
    await stopResponder(child);
  }
}

export async function benchFloor(nc: NatsConnection, url: string, state: VmState, reps: number): Promise<TransferResult> {
  const digest = StateDigest.of(state.tables);
  const header = { migrationId: "bench", vmId: state.vmId, epoch: 1, round: 0, seqBase: 0, final: true, digest: digest.toString(), tables: digest.tables(), zones: {} };
  // Encoded before the clock starts: the floor is the transport alone.
  const payloads = Array.from(encodeRound({ vmId: state.vmId, baseGen: null, gen: 1, upserts: blocksOf(state.tables), deletes: {} }, header, chunkBytesFor(nc)), (m) => m.data);
  return timeTransfers(nc, url, "ack", () => payloads, reps);
}

/** JSON chunks of per-entry objects, each below `maxBytes`. */
function* jsonChunks(state: VmState, maxBytes: number): Generator<Uint8Array> {
  for (const table of TABLE_NAMES) {
    const rows = state.tables[table] as unknown[];
    let per = 1000;
    for (let i = 0; i < rows.length; ) {
      const data = Buffer.from(JSON.stringify({ table, rows: rows.slice(i, i + per) }));
      if (data.byteLength > maxBytes && per > 1) {
        per = Math.max(1, Math.floor(per / 2));
        continue;
      }
      yield data;
      i += per;
    }
  }
}

export async function benchNaive(nc: NatsConnection, url: string, state: VmState, reps: number): Promise<TransferResult> {
  return timeTransfers(nc, url, "json", () => jsonChunks(state, chunkBytesFor(nc)), reps);
}
