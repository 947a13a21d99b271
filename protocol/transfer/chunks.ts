/**
 * The messages of the state data path. A round (a full snapshot or a delta)
 * is a sequence of `chunk` messages followed by one `seal`:
 *
 *   chunk  { round, baseGen, gen, blocks: ColumnBlock[], deletes, zones, sizes?, seal? }
 *   seal   { round, baseGen, gen, chunks, digest, tables, final, commit? }
 *
 * A full snapshot's chunks carry `sizes`, the rows of the whole snapshot per
 * table, so the receiver sizes its tables once instead of growing them.
 * A round small enough for one message sends a single chunk that carries
 * its seal inline (one round trip; the receiver answers `{ seal }`).
 * Each is a NATS request answered with an ack, so the sender knows what
 * arrived. A chunk is idempotent by (migrationId, seq): the receiver skips a
 * seq it has applied. The seal carries the sender's digest at `gen`; the
 * receiver checks its own digest against it and answers with it. A full
 * round read from a VM that kept changing meanwhile carries the digest ""
 * (nothing to check: its rows mix generations until the next round, a
 * delta, resends every row that changed or moved); a final seal never does.
 * A final seal may carry the coordinator's CommitOrder (agent-api.ts): the
 * receiver commits and activates once the digests match, and its answer says
 * so (`committed`).
 */
import { BadRequestError } from "../errors.js";
import { asObject, optUint, parseCommitOrder, parseTableSizes, type CommitOrder, type CommitResult } from "../agent-api.js";
import { decodeBlocks } from "../codec/columnar.js";
import type { StateDelta } from "../state/model.js";
import { isTableName, type TableName } from "../state/tables.js";

export const CHUNK_KIND = "chunk";
export const SEAL_KIND = "seal";

export interface ChunkBody {
  round: number;
  baseGen: number | null;
  gen: number;
  blocks: unknown[];
  deletes: Partial<Record<TableName, string[]>>;
  /** The sender's conntrack zone per ifaceId (for remapping). */
  zones: Record<string, number>;
  /** Present on the only chunk of a one-message round. */
  seal?: SealBody;
}

export interface SealBody {
  round: number;
  baseGen: number | null;
  gen: number;
  chunks: number;
  digest: string;
  tables: Record<string, string>;
  final: boolean;
  /** On a final seal: commit and activate once the digests match. */
  commit?: CommitOrder;
}

export interface SealReply {
  digest: string;
  tables: Record<string, string>;
  /** The seal carried a CommitOrder, and the receiver committed and activated. */
  committed?: CommitResult;
}

function parseGen(o: Record<string, unknown>, what: string): { baseGen: number | null; gen: number; round: number } {
  const baseGen = o.baseGen === null || o.baseGen === undefined ? null : optUint(o, "baseGen", what)!;
  const gen = optUint(o, "gen", what);
  if (gen === undefined) throw new BadRequestError(`${what}.gen is required`);
  return { baseGen, gen, round: optUint(o, "round", what, 1_000_000) ?? 0 };
}

/** Validates a chunk body and decodes its blocks into a delta (and its inline seal, if any). */
export function parseChunk(body: unknown, vmId: string): { chunk: Omit<ChunkBody, "blocks">; delta: StateDelta; seal: SealBody | null } {
  const o = asObject(body, "chunk");
  const g = parseGen(o, "chunk");
  if (!Array.isArray(o.blocks)) throw new BadRequestError("chunk.blocks must be an array");
  const upserts = decodeBlocks(o.blocks, "chunk.blocks");
  const deletes: Partial<Record<TableName, string[]>> = {};
  const rawDeletes = asObject(o.deletes ?? {}, "chunk.deletes");
  for (const [t, keys] of Object.entries(rawDeletes)) {
    if (!isTableName(t)) throw new BadRequestError(`chunk.deletes has unknown table "${t}"`);
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string" && k.length <= 1024)) throw new BadRequestError(`chunk.deletes.${t} must be an array of keys`);
    deletes[t] = keys as string[];
  }
  const zones: Record<string, number> = {};
  for (const [ifaceId, z] of Object.entries(asObject(o.zones ?? {}, "chunk.zones"))) {
    if (typeof z !== "number" || !Number.isInteger(z) || z < 0 || z > 0xffff) throw new BadRequestError(`chunk.zones.${ifaceId} must be a zone number`);
    zones[ifaceId] = z;
  }
  const seal = o.seal === undefined || o.seal === null ? null : parseSeal(o.seal);
  const sizes = parseTableSizes(o.sizes ?? {}, "chunk.sizes");
  const delta: StateDelta = { vmId, baseGen: g.baseGen, gen: g.gen, upserts, deletes, ...(Object.keys(sizes).length ? { sizes } : {}) };
  return { chunk: { ...g, deletes, zones }, delta, seal };
}

export function parseSeal(body: unknown): SealBody {
  const o = asObject(body, "seal");
  const g = parseGen(o, "seal");
  const chunks = optUint(o, "chunks", "seal");
  if (chunks === undefined) throw new BadRequestError("seal.chunks is required");
  if (typeof o.digest !== "string") throw new BadRequestError("seal.digest must be a string");
  const final = o.final === true;
  if (o.digest === "" && (final || g.baseGen !== null)) throw new BadRequestError("seal.digest may be empty only on a full round that is not final");
  const tables = asObject(o.tables ?? {}, "seal.tables") as Record<string, string>;
  const seal: SealBody = { ...g, chunks, digest: o.digest, tables, final };
  if (o.commit !== undefined && o.commit !== null) {
    if (!final) throw new BadRequestError("seal.commit is allowed on a final seal only");
    seal.commit = parseCommitOrder(o.commit, "seal.commit");
  }
  return seal;
}
