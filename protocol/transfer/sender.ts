/**
 * Sends one round (a full snapshot or a delta) of a VM's state as chunks to a
 * subject, pipelined with a bounded window, then seals it with the digest.
 *
 * Chunks are sized from a measured bytes-per-row so each stays below
 * `maxChunkBytes` (itself below the server's max_payload); an oversized
 * chunk is split in two. A chunk that times out is resent (it is idempotent
 * by seq) until the round's deadline.
 */
import type { NatsConnection } from "nats";
import { PayloadTooLargeError, TimeoutError } from "../errors.js";
import { encodeBlock } from "../codec/columnar.js";
import { encodeEnvelope } from "../codec/envelope.js";
import { parseReply } from "../rpc.js";
import { TABLE_NAMES, type TableName } from "../state/tables.js";
import type { StateDelta } from "../state/model.js";
import { CHUNK_KIND, SEAL_KIND, type SealReply } from "./chunks.js";

export interface SendOptions {
  subject: string;
  migrationId: string;
  vmId: string;
  epoch: number;
  round: number;
  /** First seq of this round; seqs must not repeat within a migration. */
  seqBase: number;
  final: boolean;
  /** Digest of the sender's state at `delta.gen`. */
  digest: string;
  tables: Record<string, string>;
  /** The sender's conntrack zone per ifaceId. */
  zones: Record<string, number>;
  /** Target bytes per chunk. Default 512 KiB. */
  maxChunkBytes?: number;
  /** Chunks in flight. Default 8. */
  window?: number;
  /** Deadline for the whole round, ms. Default 60000. */
  timeoutMs?: number;
  /** Per-chunk ack timeout, ms. Default 5000. */
  chunkTimeoutMs?: number;
}

export interface SendResult {
  rows: number;
  bytes: number;
  chunks: number;
  seal: SealReply;
  durationMs: number;
}

const DEFAULT_CHUNK_BYTES = 512 * 1024;
const DELETE_KEYS_PER_CHUNK = 8192;

export async function sendRound(nc: NatsConnection, delta: StateDelta, o: SendOptions): Promise<SendResult> {
  const started = performance.now();
  const maxBytes = Math.min(o.maxChunkBytes ?? DEFAULT_CHUNK_BYTES, Math.max(4096, nc.info?.max_payload ? nc.info.max_payload - 4096 : DEFAULT_CHUNK_BYTES));
  const window = o.window ?? 8;
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const chunkTimeout = o.chunkTimeoutMs ?? 5000;
  let seq = o.seqBase;
  let bytes = 0;
  let rows = 0;
  const inflight = new Set<Promise<void>>();
  let failure: unknown = null;

  const encodeChunk = (body: Record<string, unknown>): Uint8Array =>
    encodeEnvelope({ kind: CHUNK_KIND, migrationId: o.migrationId, vmId: o.vmId, epoch: o.epoch, seq, body });
  /** Sends bytes made by encodeChunk with the current seq. */
  const sendChunk = (data: Uint8Array): void => {
    seq++;
    if (data.byteLength > (nc.info?.max_payload ?? Infinity)) throw new PayloadTooLargeError(`chunk of ${data.byteLength} bytes exceeds the server's max_payload`);
    bytes += data.byteLength;
    const p = requestWithRetry(nc, o.subject, data, chunkTimeout, deadline).then(
      () => { inflight.delete(p); },
      (err) => { inflight.delete(p); failure ??= err; },
    );
    inflight.add(p);
  };
  const drainTo = async (limit: number): Promise<void> => {
    while (inflight.size > limit) await Promise.race(inflight);
    if (failure) throw failure;
  };
  const header = { round: o.round, baseGen: delta.baseGen, gen: delta.gen, zones: o.zones };

  for (const table of TABLE_NAMES) {
    const list = (delta.upserts[table] ?? []) as unknown[];
    rows += list.length;
    let i = 0;
    let perChunk = 2048;
    while (i < list.length) {
      const slice = list.slice(i, i + perChunk);
      const block = encodeBlock(table, slice);
      const body = { ...header, blocks: [block], deletes: {} };
      await drainTo(window - 1);
      const data = encodeChunk(body);
      if (data.byteLength > maxBytes && slice.length > 1) {
        perChunk = Math.max(1, Math.floor(slice.length / 2));
        continue;
      }
      sendChunk(data);
      i += slice.length;
      // Size the next chunk from what this one measured (aim for 90 % of the limit).
      const bytesPerRow = data.byteLength / slice.length;
      perChunk = Math.max(1, Math.floor((maxBytes * 0.9) / bytesPerRow));
    }
  }
  for (const table of TABLE_NAMES) {
    const keys = delta.deletes[table] ?? [];
    rows += keys.length;
    for (let i = 0; i < keys.length; i += DELETE_KEYS_PER_CHUNK) {
      await drainTo(window - 1);
      sendChunk(encodeChunk({ ...header, blocks: [], deletes: { [table]: keys.slice(i, i + DELETE_KEYS_PER_CHUNK) } as Partial<Record<TableName, string[]>> }));
    }
  }
  await drainTo(0);
  const chunks = seq - o.seqBase;
  const sealData = encodeEnvelope({
    kind: SEAL_KIND, migrationId: o.migrationId, vmId: o.vmId, epoch: o.epoch, seq: seq,
    body: { round: o.round, baseGen: delta.baseGen, gen: delta.gen, chunks, digest: o.digest, tables: o.tables, final: o.final },
  });
  const sealReplyBytes = await requestWithRetry(nc, o.subject, sealData, Math.max(chunkTimeout, 30_000), deadline);
  const seal = parseReply<SealReply>(sealReplyBytes);
  return { rows, bytes: bytes + sealData.byteLength, chunks, seal, durationMs: performance.now() - started };
}

/** A request whose reply is an ack envelope; timeouts are retried until the deadline. */
async function requestWithRetry(nc: NatsConnection, subject: string, data: Uint8Array, timeoutMs: number, deadline: number): Promise<Uint8Array> {
  let attempt = 0;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new TimeoutError(`state transfer to ${subject} did not finish before its deadline`);
    try {
      const msg = await nc.request(subject, data, { timeout: Math.min(timeoutMs, left) });
      parseReply<unknown>(msg.data); // throws the receiver's error, if any
      return msg.data;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== "TIMEOUT" || ++attempt > 3) {
        if (code === "503") throw new TimeoutError(`nobody is receiving state on ${subject} (is the destination agent running?)`);
        if (code === "TIMEOUT") throw new TimeoutError(`no ack from ${subject} after ${attempt} attempts`);
        throw err;
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt) * (0.5 + Math.random())));
    }
  }
}
