/**
 * Sends one round (a full snapshot or a delta) of a VM's state as chunks to a
 * subject, pipelined with a bounded window, closed by its seal (see
 * encoder.ts for how rounds become messages). A chunk that times out is
 * resent (it is idempotent by seq) until the round's deadline.
 */
import type { NatsConnection } from "nats";
import { PayloadTooLargeError, TimeoutError } from "../errors.js";
import { parseReply } from "../rpc.js";
import type { SourceDelta } from "../state/model.js";
import type { SealReply } from "./chunks.js";
import { encodeRound, type RoundHeader } from "./encoder.js";

export interface SendOptions extends RoundHeader {
  subject: string;
  /** Target bytes per chunk. Default 512 KiB (and always below the server's max_payload). */
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

export const DEFAULT_CHUNK_BYTES = 512 * 1024;

/** The chunk size a connection allows: the requested size, capped below the server's max_payload. */
export function chunkBytesFor(nc: NatsConnection, requested = DEFAULT_CHUNK_BYTES): number {
  const serverMax = nc.info?.max_payload ?? 1024 * 1024;
  return Math.max(4096, Math.min(requested, serverMax - 4096));
}

export async function sendRound(nc: NatsConnection, delta: SourceDelta, o: SendOptions): Promise<SendResult> {
  const started = performance.now();
  const serverMax = nc.info?.max_payload ?? 1024 * 1024;
  const window = o.window ?? 8;
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  const chunkTimeout = o.chunkTimeoutMs ?? 5000;
  let bytes = 0;
  let rows = 0;
  let sent = 0;
  let sealReply: SealReply | null = null;
  const inflight = new Set<Promise<void>>();
  let failure: unknown = null;

  for (const msg of encodeRound(delta, o, chunkBytesFor(nc, o.maxChunkBytes))) {
    if (msg.data.byteLength > serverMax) throw new PayloadTooLargeError(`chunk of ${msg.data.byteLength} bytes exceeds the server's max_payload of ${serverMax}`);
    sent++;
    bytes += msg.data.byteLength;
    rows += msg.rows;
    if (msg.kind === "chunk") {
      while (inflight.size >= window) await Promise.race(inflight);
      if (failure) throw failure;
      const p = requestWithRetry(nc, o.subject, msg.data, chunkTimeout, deadline).then(
        () => void inflight.delete(p),
        (err) => {
          inflight.delete(p);
          failure ??= err;
        },
      );
      inflight.add(p);
      continue;
    }
    // The seal goes once every chunk is acked; the receiver answers with its digest.
    while (inflight.size > 0) await Promise.race(inflight);
    if (failure) throw failure;
    const reply = await requestWithRetry(nc, o.subject, msg.data, Math.max(chunkTimeout, 30_000), deadline);
    sealReply = msg.kind === "seal" ? parseReply<SealReply>(reply) : parseReply<{ seal: SealReply }>(reply).seal;
  }
  if (!sealReply) throw new Error("internal error: a round ended without its seal");
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
