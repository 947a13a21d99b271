/**
 * Sends one round (a full snapshot or a delta) of a VM's state as chunks to a
 * subject, pipelined with a bounded window, then seals it with the digest.
 *
 * Blocks of several tables share a chunk while they fit, and chunk sizes
 * follow a measured bytes-per-row so each stays below `maxChunkBytes` (itself
 * below the server's max_payload); an oversized chunk is split in two. A
 * round that fits in one chunk carries its seal inline: one round trip, which
 * is what a small final delta in the freeze window needs. A chunk that times
 * out is resent (it is idempotent by seq) until the round's deadline.
 */
import type { NatsConnection } from "nats";
import { PayloadTooLargeError, TimeoutError } from "../errors.js";
import { encodeBlock, type ColumnBlock } from "../codec/columnar.js";
import { encodeEnvelope } from "../codec/envelope.js";
import { parseReply } from "../rpc.js";
import { TABLE_NAMES, type TableName } from "../state/tables.js";
import type { StateDelta } from "../state/model.js";
import { CHUNK_KIND, SEAL_KIND, type SealBody, type SealReply } from "./chunks.js";

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
  /** Messages sent, the seal included. */
  chunks: number;
  seal: SealReply;
  durationMs: number;
}

const DEFAULT_CHUNK_BYTES = 512 * 1024;
const DELETE_KEYS_PER_CHUNK = 8192;

/** A cheap upper estimate of a block's encoded size, bytes. */
function estimate(block: ColumnBlock): number {
  let n = 16;
  for (const col of block.c) {
    if (col instanceof Uint8Array) n += col.byteLength + 5;
    else if (Array.isArray(col)) n += JSON.stringify(col).length + 5;
    else {
      const s = col as { d: string[]; i: Uint8Array };
      n += s.i.byteLength + 8;
      for (const str of s.d) n += str.length * 3 + 2;
    }
  }
  return n;
}

export async function sendRound(nc: NatsConnection, delta: StateDelta, o: SendOptions): Promise<SendResult> {
  const started = performance.now();
  const serverMax = nc.info?.max_payload ?? 1024 * 1024;
  const maxBytes = Math.max(4096, Math.min(o.maxChunkBytes ?? DEFAULT_CHUNK_BYTES, serverMax - 4096));
  const window = o.window ?? 8;
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const chunkTimeout = o.chunkTimeoutMs ?? 5000;
  const header = { round: o.round, baseGen: delta.baseGen, gen: delta.gen, zones: o.zones };
  const seal: SealBody = { round: o.round, baseGen: delta.baseGen, gen: delta.gen, chunks: 0, digest: o.digest, tables: o.tables, final: o.final };
  let seq = o.seqBase;
  let bytes = 0;
  let rows = 0;
  let sent = 0;
  const inflight = new Set<Promise<void>>();
  let failure: unknown = null;

  const encodeChunk = (body: Record<string, unknown>): Uint8Array =>
    encodeEnvelope({ kind: CHUNK_KIND, migrationId: o.migrationId, vmId: o.vmId, epoch: o.epoch, seq, body });
  const send = (data: Uint8Array): void => {
    if (data.byteLength > serverMax) throw new PayloadTooLargeError(`chunk of ${data.byteLength} bytes exceeds the server's max_payload of ${serverMax}`);
    seq++;
    sent++;
    bytes += data.byteLength;
    const p = requestWithRetry(nc, o.subject, data, chunkTimeout, deadline).then(
      () => void inflight.delete(p),
      (err) => {
        inflight.delete(p);
        failure ??= err;
      },
    );
    inflight.add(p);
  };
  const drainTo = async (limit: number): Promise<void> => {
    while (inflight.size > limit) await Promise.race(inflight);
    if (failure) throw failure;
  };

  // Gather blocks and deletes into chunks; the last one may carry the seal.
  let blocks: ColumnBlock[] = [];
  let deletes: Partial<Record<TableName, string[]>> = {};
  let pendingBytes = 0;
  const flush = async (): Promise<void> => {
    if (blocks.length === 0 && Object.keys(deletes).length === 0) return;
    await drainTo(window - 1);
    send(encodeChunk({ ...header, blocks, deletes }));
    blocks = [];
    deletes = {};
    pendingBytes = 0;
  };

  for (const table of TABLE_NAMES) {
    const list = (delta.upserts[table] ?? []) as unknown[];
    rows += list.length;
    let i = 0;
    let perChunk = 2048;
    while (i < list.length) {
      const slice = list.slice(i, i + perChunk);
      const block = encodeBlock(table, slice);
      const size = estimate(block);
      if (size > maxBytes && slice.length > 1) {
        perChunk = Math.max(1, Math.floor(slice.length / 2));
        continue;
      }
      if (pendingBytes + size > maxBytes) await flush();
      blocks.push(block);
      pendingBytes += size;
      i += slice.length;
      perChunk = Math.max(1, Math.floor((maxBytes * 0.9) / (size / slice.length)));
    }
  }
  for (const table of TABLE_NAMES) {
    const keys = delta.deletes[table] ?? [];
    rows += keys.length;
    for (let i = 0; i < keys.length; i += DELETE_KEYS_PER_CHUNK) {
      const part = keys.slice(i, i + DELETE_KEYS_PER_CHUNK);
      const size = part.reduce((n, k) => n + k.length + 3, 16);
      if (pendingBytes + size > maxBytes) await flush();
      deletes[table] = [...(deletes[table] ?? []), ...part];
      pendingBytes += size;
    }
  }

  let sealReply: SealReply;
  if (sent === 0) {
    // The whole round fits in one message: apply and seal in one round trip.
    const data = encodeChunk({ ...header, blocks, deletes, seal });
    if (data.byteLength > serverMax) throw new PayloadTooLargeError(`chunk of ${data.byteLength} bytes exceeds the server's max_payload of ${serverMax}`);
    seq++;
    sent++;
    bytes += data.byteLength;
    sealReply = parseReply<{ seal: SealReply }>(await requestWithRetry(nc, o.subject, data, Math.max(chunkTimeout, 30_000), deadline)).seal;
  } else {
    await flush();
    await drainTo(0);
    seal.chunks = seq - o.seqBase;
    const data = encodeEnvelope({ kind: SEAL_KIND, migrationId: o.migrationId, vmId: o.vmId, epoch: o.epoch, seq, body: seal });
    seq++;
    sent++;
    bytes += data.byteLength;
    sealReply = parseReply<SealReply>(await requestWithRetry(nc, o.subject, data, Math.max(chunkTimeout, 30_000), deadline));
  }
  return { rows, bytes, chunks: sent, seal: sealReply, durationMs: performance.now() - started };
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
