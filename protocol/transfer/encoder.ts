/**
 * Turns one round (a full snapshot or a delta) into the encoded messages of
 * the state data path, lazily, so the sender can put the first chunk on the
 * wire while the next is being encoded.
 *
 * Blocks of several tables share a chunk while they fit, and chunk sizes
 * follow a measured bytes-per-row so each stays below `maxBytes`; an
 * oversized slice is split in two. A round that fits in one chunk carries its
 * seal inline (one round trip, which is what a small final delta in the
 * freeze window needs); otherwise a separate seal message closes it.
 */
import type { CommitOrder } from "../agent-api.js";
import { encodeColumns, type ColumnBlock } from "../codec/columnar.js";
import { encodeEnvelope } from "../codec/envelope.js";
import type { SourceDelta } from "../state/model.js";
import { TABLE_NAMES, type TableName } from "../state/tables.js";
import { CHUNK_KIND, SEAL_KIND, type SealBody } from "./chunks.js";

export interface RoundHeader {
  migrationId: string;
  vmId: string;
  epoch: number;
  round: number;
  /** First seq of this round; seqs must not repeat within a migration. */
  seqBase: number;
  final: boolean;
  /**
   * Digest of the sender's state at `delta.gen`; "" for a full round read
   * from a VM that kept changing meanwhile (the receiver cannot check it:
   * the next round, a delta, makes the copy exact). A final round always
   * carries one.
   */
  digest: string;
  tables: Record<string, string>;
  /** The sender's conntrack zone per ifaceId. */
  zones: Record<string, number>;
  /** A final round's commit order, carried by its seal (see chunks.ts). */
  commit?: CommitOrder;
}

export interface EncodedMessage {
  data: Uint8Array;
  /** Rows (upserts and deletes) this message carries. */
  rows: number;
  /** "chunk", "chunk+seal" (a one-message round) or "seal". */
  kind: "chunk" | "chunk+seal" | "seal";
}

const DELETE_KEYS_PER_CHUNK = 8192;
/** Rows encoded to measure a table's bytes per row. */
const SAMPLE_ROWS = 256;
/** A chunk with room for fewer rows of the next table than this is sent first. */
const MIN_SLICE_ROWS = 64;

/** A cheap upper estimate of a block's encoded size, bytes. */
function estimate(block: ColumnBlock): number {
  let n = 16;
  for (const col of block.c) {
    if (col instanceof Uint8Array) n += col.byteLength + 5;
    else if (Array.isArray(col)) n += JSON.stringify(col).length + 5;
    else if ("v4" in (col as object)) n += (col as { v4: Uint8Array }).v4.byteLength + 8;
    else if ("s" in (col as object)) {
      for (const str of (col as { s: string[] }).s) n += str.length * 3 + 2;
    } else {
      const s = col as { d: string[]; i: Uint8Array };
      n += s.i.byteLength + 8;
      for (const str of s.d) n += str.length * 3 + 2;
    }
  }
  return n;
}

/** The round's messages in send order; the last one seals it. */
export function* encodeRound(delta: SourceDelta, h: RoundHeader, maxBytes: number): Generator<EncodedMessage> {
  const sizes: Partial<Record<TableName, number>> = {};
  if (delta.baseGen === null) for (const t of TABLE_NAMES) if (delta.upserts[t]?.length) sizes[t] = delta.upserts[t]!.length;
  const header = { round: h.round, baseGen: delta.baseGen, gen: delta.gen, zones: h.zones, ...(delta.baseGen === null ? { sizes } : {}) };
  const seal: SealBody = { round: h.round, baseGen: delta.baseGen, gen: delta.gen, chunks: 0, digest: h.digest, tables: h.tables, final: h.final, ...(h.commit ? { commit: h.commit } : {}) };
  let seq = h.seqBase;
  const envelope = (kind: string, body: unknown): Uint8Array =>
    encodeEnvelope({ kind, migrationId: h.migrationId, vmId: h.vmId, epoch: h.epoch, seq: seq++, body });

  let blocks: ColumnBlock[] = [];
  let deletes: Partial<Record<TableName, string[]>> = {};
  let pendingBytes = 0;
  let pendingRows = 0;
  let emitted = 0;
  // A chunk is cut only when more follows, so it never carries the seal: it
  // is packed at once, before the generator yields. Blocks of a live table
  // are views of its arrays (see RowSource) and must be read before the
  // table can change, which is only while the generator is suspended.
  function* cut(): Generator<EncodedMessage> {
    if (blocks.length === 0 && Object.keys(deletes).length === 0) return;
    const msg: EncodedMessage = { data: envelope(CHUNK_KIND, { ...header, blocks, deletes }), rows: pendingRows, kind: "chunk" };
    blocks = [];
    deletes = {};
    pendingBytes = 0;
    pendingRows = 0;
    emitted++;
    yield msg;
  }

  // Each table's rows go in slices sized from a sample's bytes per row to
  // fill the room left in the chunk, so a chunk holds at most one block per
  // table (the receiver need not join blocks); a slice that overshoots is cut
  // again with a larger estimate. A first slice of the sample's rows (all of
  // a small table, as in a final delta) goes as the sample's block, unless a
  // chunk went out in between: it is not encoded twice.
  for (const table of TABLE_NAMES) {
    const all = delta.upserts[table];
    if (!all?.length) continue;
    const sample = Math.min(all.length, SAMPLE_ROWS);
    const sampled = encodeColumns(all.slice(0, sample));
    const sampledAt = emitted;
    let perRow = estimate(sampled) / sample;
    let i = 0;
    while (i < all.length) {
      let room = Math.floor((maxBytes * 0.9 - pendingBytes) / perRow);
      if (room < Math.min(MIN_SLICE_ROWS, all.length - i) && pendingRows > 0) {
        yield* cut();
        room = Math.floor((maxBytes * 0.9) / perRow);
      }
      const slice = all.slice(i, i + Math.max(1, room));
      const block = i === 0 && slice.length === sample && emitted === sampledAt ? sampled : encodeColumns(slice);
      const size = estimate(block);
      if (pendingBytes + size > maxBytes && slice.length > 1) {
        perRow = Math.max(perRow * 1.25, size / slice.length);
        continue;
      }
      if (pendingBytes + size > maxBytes && pendingRows > 0) {
        // The block is read again after the cut (the table may change while the chunk is out).
        yield* cut();
        continue;
      }
      blocks.push(block);
      pendingBytes += size;
      pendingRows += slice.length;
      i += slice.length;
      if (i < all.length) yield* cut();
    }
  }
  for (const table of TABLE_NAMES) {
    const keys = delta.deletes[table] ?? [];
    for (let i = 0; i < keys.length; i += DELETE_KEYS_PER_CHUNK) {
      const part = keys.slice(i, i + DELETE_KEYS_PER_CHUNK);
      const size = part.reduce((n, k) => n + k.length + 3, 16);
      if (pendingBytes + size > maxBytes) yield* cut();
      deletes[table] = [...(deletes[table] ?? []), ...part];
      pendingBytes += size;
      pendingRows += part.length;
    }
  }
  if (emitted === 0) {
    // The whole round fits in one message: apply and seal in one round trip.
    yield { data: envelope(CHUNK_KIND, { ...header, blocks, deletes, seal }), rows: pendingRows, kind: "chunk+seal" };
    return;
  }
  yield* cut();
  seal.chunks = seq - h.seqBase;
  yield { data: envelope(SEAL_KIND, seal), rows: 0, kind: "seal" };
}
