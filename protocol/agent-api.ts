/**
 * The agent's command API over NATS request/reply, typed by request and reply.
 *
 * Every request travels in an Envelope whose `vmId`, `migrationId` and
 * `epoch` say what it is about; `body` is the op's request below. Every reply
 * is an Envelope of kind "reply" with body `{ ok: true, result }` or
 * `{ ok: false, error: WireError }`.
 *
 * Epoch fencing: the agent persists the highest epoch it has seen per VM and
 * refuses any command with a lower one (STALE_EPOCH). Ops that only read
 * (inventory, describe, export) are not fenced.
 */
import { BadRequestError } from "./errors.js";
import type { WireError } from "./errors.js";
import { isTableName, type TableName } from "./state/tables.js";

export const AgentOp = {
  /** List the VMs on this host (active, frozen, staged, released). */
  inventory: "inventory",
  /** One VM's generation, digest and counts. */
  describe: "describe",
  /** Destination: open a staging area for an incoming migration (resets it if open). */
  prepare: "prepare",
  /** Source: stream the VM's state (full or since a generation) to the destination. */
  transfer: "transfer",
  /** Source: stop accepting changes to the VM's state. */
  freeze: "freeze",
  /** Source: accept changes again (after an abort). */
  thaw: "thaw",
  /** Destination: make the staged state live (epoch = new epoch after commit). */
  activate: "activate",
  /** Source: delete the VM's state, keep a tombstone with the epoch. */
  release: "release",
  /** Destination: drop the staging area of a migration. */
  abort: "abort",
  /** Stream the VM's full state to a sink subject (for export and GetVmState). */
  export: "export",
  /** Apply a change to a live VM's state (config writes; refused while frozen). */
  write: "write",
} as const;
export type AgentOp = (typeof AgentOp)[keyof typeof AgentOp];
export const AGENT_OPS = new Set<string>(Object.values(AgentOp));

/** Where a VM stands on one host. */
export type VmStatus =
  /** Live here and accepting changes. */
  | "active"
  /** Live here but frozen by a migration: changes are refused. */
  | "frozen"
  /** Being received: staged, not steering traffic. */
  | "staged"
  /** Moved away: only a tombstone with the epoch is kept. */
  | "released";

export interface VmInfo {
  vmId: string;
  status: VmStatus;
  epoch: number;
  gen: number;
  digest: string;
  counts: Partial<Record<TableName, number>>;
  /** The migration that froze or is staging this VM, if any. */
  migrationId?: string;
}

export interface InventoryReply {
  hostId: string;
  backend: string;
  vms: VmInfo[];
}

export interface DescribeReply extends VmInfo {
  tables: Partial<Record<TableName, string>>;
}

export interface DescribeRequest {
  /**
   * false: as last observed, with the row counts if the backend has them
   * at hand (no dataplane read, no digests). Default true: read now.
   */
  fresh?: boolean;
}

export interface PrepareRequest {
  srcHostId: string;
  /**
   * The source's rows per table, sent for a stop-and-copy: its one round
   * is all inside the freeze window, so the destination makes room for it
   * (and faults that memory in) before the freeze.
   */
  sizes?: TableSizes;
}

/** Rows per table (a full round's announced sizes, a prepare's reservation). */
export type TableSizes = Partial<Record<TableName, number>>;

/** The most rows a full round or a reservation may announce for one table. */
export const MAX_TABLE_ROWS = 16_000_000;

/** Checks a table-name → row-count map (`what` names it in errors). */
export function parseTableSizes(v: unknown, what: string): TableSizes {
  const sizes: TableSizes = {};
  for (const [t, n] of Object.entries(asObject(v, what))) {
    if (!isTableName(t)) throw new BadRequestError(`${what} has unknown table "${t}"`);
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_TABLE_ROWS) throw new BadRequestError(`${what}.${t} must be a row count from 0 to ${MAX_TABLE_ROWS}`);
    sizes[t] = n;
  }
  return sizes;
}

export interface TransferRequest {
  /** Host to stream to; the chunks go to its agentChunk subject. */
  dstHostId: string;
  /** null = full snapshot; otherwise send what changed since this generation. */
  sinceGen: number | null;
  /** The final delta of a frozen VM. */
  final: boolean;
  /** Freeze the VM first (with `final`): one command from "frozen" to "final delta sent". */
  freeze?: boolean;
  /** Pre-copy round number (0 = the first, full round). */
  round: number;
  /** Target size of one chunk in bytes (below the server's max_payload). */
  maxChunkBytes?: number;
  /** Chunks in flight at once. Default 8. */
  window?: number;
  /** Deadline for the whole round, ms. */
  timeoutMs?: number;
  /**
   * With `final`: the destination commits the migration itself once the
   * final round is sealed with matching digests, then activates (see
   * CommitOrder). Without it the coordinator commits and activates.
   */
  commit?: CommitOrder;
}

/**
 * The coordinator's commit, handed to the destination for the freeze window:
 * write `record` (the migration's record in phase COMMITTED) to the key
 * `key` of the KV bucket `bucket`, compare-and-set on `revision` (the record
 * as the coordinator wrote it when it froze the source), and only if that
 * write succeeds make the staged state live at `epoch`. A record changed in
 * the meantime (an abort, another coordinator's takeover) refuses the
 * write, and the destination stays staged: the commit is still one
 * compare-and-set on the one record, whoever sends it.
 */
export interface CommitOrder {
  bucket: string;
  key: string;
  revision: number;
  record: Uint8Array;
  /** The epoch the destination activates at (the migration's epoch + 1). */
  epoch: number;
}

/** What the destination did with a CommitOrder. */
export interface CommitResult {
  /** The record's revision after the commit. */
  revision: number;
  /** When the state went live (`wallClockMs`). */
  activatedAtMs: number;
  /** The live state's digest and generation. */
  digest: string;
  gen: number;
}

/** Largest encoded migration record a CommitOrder may carry. */
export const MAX_COMMIT_RECORD_BYTES = 256 * 1024;

export interface TransferReply {
  baseGen: number | null;
  gen: number;
  rows: number;
  bytes: number;
  chunks: number;
  durationMs: number;
  digest: string;
  /** When this transfer froze the VM: the moment it stopped taking changes (`wallClockMs`). */
  frozenAtMs?: number;
  /** Present when the request carried a CommitOrder and the destination committed and activated. */
  committed?: CommitResult;
}

/**
 * Wall-clock time in ms with sub-ms resolution. Freeze and activation times
 * are reported with it, so the freeze window can be measured exactly where
 * it happens: on one host the two agents share this clock; across hosts it
 * is as good as their clock synchronisation.
 *
 * It is the monotonic clock, anchored to the system clock on one of
 * Date.now()'s millisecond boundaries (a wait of at most 1 ms, when this
 * module loads), and kept within the millisecond Date.now() gives: when it
 * strays (the system clock stepped or slewed), it follows to the
 * millisecond and re-anchors there. `performance.timeOrigin + now()` is
 * usually within 0.1 ms of the system clock, but not always: in one test
 * run an agent stamped an activation 5.8 ms after the coordinator had
 * logged receiving it, so the window from one agent's freeze to another's
 * activation came out longer than the coordinator's round trip around it.
 */
export class WallClock {
  private offset: number;

  constructor(private readonly systemMs: () => number = Date.now, private readonly monoMs: () => number = () => performance.now()) {
    const start = systemMs();
    let now = start;
    while (now === start) now = systemMs();
    this.offset = now - monoMs();
  }

  private last = -Infinity;

  ms(): number {
    const est = this.offset + this.monoMs();
    const ms = this.systemMs();
    let t = est;
    if (est < ms || est >= ms + 1) {
      t = est < ms ? ms : ms + 0.999;
      this.offset = t - this.monoMs();
    }
    // Never back within the system clock's millisecond (it goes back only with the system clock).
    if (this.last > t && this.last < ms + 1) t = this.last;
    return (this.last = t);
  }
}

const clock = new WallClock();

export function wallClockMs(): number {
  return clock.ms();
}

export interface FreezeReply {
  gen: number;
  digest: string;
  frozenAtMs: number;
}

export interface ActivateReply {
  digest: string;
  gen: number;
  /** When the state went live (`wallClockMs`). */
  activatedAtMs: number;
}

export interface ExportRequest {
  /** Subject (usually an inbox) the chunks are sent to. */
  sink: string;
  maxChunkBytes?: number;
}

export interface ExportReply extends TransferReply {}

/** Encoded change to a live VM: column blocks of upserts and keys to delete. */
export interface WriteRequest {
  upserts: unknown[];
  deletes: Partial<Record<TableName, string[]>>;
  /** Create the VM if it does not exist (import). Default false. */
  create?: boolean;
}

export interface WriteReply {
  gen: number;
  digest: string;
}

export type Reply<R> = { ok: true; result: R } | { ok: false; error: WireError };

// ------------------------------------------------------------- validation

type Obj = Record<string, unknown>;

export function asObject(v: unknown, what: string): Obj {
  if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof Uint8Array) {
    throw new BadRequestError(`${what} must be a map`);
  }
  return v as Obj;
}

export function optUint(o: Obj, k: string, what: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > max) throw new BadRequestError(`${what}.${k} must be an integer from 0 to ${max}`);
  return v;
}

export function reqString(o: Obj, k: string, what: string, maxLen = 256): string {
  const v = o[k];
  if (typeof v !== "string" || v.length === 0 || v.length > maxLen) throw new BadRequestError(`${what}.${k} must be a non-empty string`);
  return v;
}

export function parseTransferRequest(body: unknown): TransferRequest {
  const o = asObject(body, "transfer request");
  const sinceGen = o.sinceGen === null || o.sinceGen === undefined ? null : optUint(o, "sinceGen", "transfer request")!;
  if (typeof o.final !== "boolean") throw new BadRequestError("transfer request.final must be a boolean");
  const req: TransferRequest = {
    dstHostId: reqString(o, "dstHostId", "transfer request", 64),
    sinceGen,
    final: o.final,
    round: optUint(o, "round", "transfer request", 1_000_000) ?? 0,
  };
  if (o.freeze === true) {
    if (!o.final) throw new BadRequestError("transfer request.freeze needs final: true");
    req.freeze = true;
  }
  const maxChunkBytes = optUint(o, "maxChunkBytes", "transfer request", 64 * 1024 * 1024);
  const window = optUint(o, "window", "transfer request", 256);
  const timeoutMs = optUint(o, "timeoutMs", "transfer request", 3_600_000);
  if (maxChunkBytes !== undefined) req.maxChunkBytes = Math.max(4096, maxChunkBytes);
  if (window !== undefined) req.window = Math.max(1, window);
  if (timeoutMs !== undefined) req.timeoutMs = timeoutMs;
  if (o.commit !== undefined && o.commit !== null) {
    if (!req.final) throw new BadRequestError("transfer request.commit needs final: true");
    req.commit = parseCommitOrder(o.commit, "transfer request.commit");
  }
  return req;
}

const BUCKET_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export function parseCommitOrder(body: unknown, what: string): CommitOrder {
  const o = asObject(body, what);
  const bucket = reqString(o, "bucket", what, 64);
  if (!BUCKET_NAME.test(bucket)) throw new BadRequestError(`${what}.bucket must be a KV bucket name (letters, digits, - and _)`);
  const revision = optUint(o, "revision", what);
  const epoch = optUint(o, "epoch", what);
  if (revision === undefined || revision === 0) throw new BadRequestError(`${what}.revision must be the record's revision (an integer from 1)`);
  if (epoch === undefined) throw new BadRequestError(`${what}.epoch is required`);
  if (!(o.record instanceof Uint8Array) || o.record.byteLength === 0 || o.record.byteLength > MAX_COMMIT_RECORD_BYTES) {
    throw new BadRequestError(`${what}.record must be the encoded record, 1 to ${MAX_COMMIT_RECORD_BYTES} bytes`);
  }
  return { bucket, key: reqString(o, "key", what, 128), revision, record: o.record, epoch };
}

export function parseDescribeRequest(body: unknown): DescribeRequest {
  const o = asObject(body ?? {}, "describe request");
  if (o.fresh !== undefined && typeof o.fresh !== "boolean") throw new BadRequestError("describe request.fresh must be a boolean");
  return o.fresh === false ? { fresh: false } : {};
}

export function parsePrepareRequest(body: unknown): PrepareRequest {
  const o = asObject(body, "prepare request");
  const req: PrepareRequest = { srcHostId: reqString(o, "srcHostId", "prepare request", 64) };
  if (o.sizes !== undefined && o.sizes !== null) req.sizes = parseTableSizes(o.sizes, "prepare request.sizes");
  return req;
}

export function parseExportRequest(body: unknown): ExportRequest {
  const o = asObject(body, "export request");
  const req: ExportRequest = { sink: reqString(o, "sink", "export request", 256) };
  const maxChunkBytes = optUint(o, "maxChunkBytes", "export request", 64 * 1024 * 1024);
  if (maxChunkBytes !== undefined) req.maxChunkBytes = Math.max(4096, maxChunkBytes);
  return req;
}

export function parseWriteRequest(body: unknown): WriteRequest {
  const o = asObject(body, "write request");
  if (!Array.isArray(o.upserts)) throw new BadRequestError("write request.upserts must be an array of column blocks");
  const deletes = asObject(o.deletes ?? {}, "write request.deletes") as Partial<Record<TableName, string[]>>;
  for (const [t, keys] of Object.entries(deletes)) {
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) throw new BadRequestError(`write request.deletes.${t} must be an array of keys`);
  }
  return { upserts: o.upserts, deletes, create: o.create === true };
}
