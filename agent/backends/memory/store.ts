/**
 * Persistence for the memory backend: per table set, a snapshot file plus an
 * append-only journal of changes, so an agent restart (even a SIGKILL) loses
 * nothing that was acknowledged. The journal is compacted into a new
 * snapshot once it outgrows the snapshot.
 *
 *   <dir>/<name>.snap      msgpack { gen, frozen, sealed, blocks }
 *   <dir>/<name>.journal   records: u32 length + msgpack { gen, u, d, f?, s? }
 *
 * Writes are synchronous (write(2) per record): a killed process leaves
 * everything it acknowledged in the kernel's page cache. A torn last record
 * (machine crash mid-write) is ignored on load.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeBlock, encodeBlock } from "../../../protocol/codec/columnar.js";
import { pack, unpack } from "../../../protocol/codec/packr.js";
import { TABLE_NAMES, type TableName } from "../../../protocol/state/tables.js";
import type { Change } from "../backend.js";
import { TableSet } from "../../../protocol/state/table-set.js";

export interface SetMeta {
  frozen: boolean;
  sealed: boolean;
}

const MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024;

function encodeChange(change: Change): { u: unknown[]; d: Change["deletes"] } {
  const u: unknown[] = [];
  for (const t of TABLE_NAMES) {
    const rows = change.upserts[t];
    if (rows && rows.length) u.push(encodeBlock(t, rows));
  }
  return { u, d: change.deletes };
}

function decodeChange(rec: { u?: unknown; d?: unknown }): Change {
  const change: Change = { upserts: {}, deletes: (rec.d ?? {}) as Change["deletes"] };
  for (const b of (rec.u ?? []) as unknown[]) {
    const { table, rows } = decodeBlock(b, "journal");
    (change.upserts as Record<string, unknown[]>)[table] = rows;
  }
  return change;
}

/** One persisted table set (a live VM or a staging area) in a directory. */
export class SetFile {
  private fd: number | null = null;
  private journalBytes = 0;
  private snapBytes = 0;

  constructor(private readonly dir: string, readonly name: string) {}

  private get snapPath(): string {
    return join(this.dir, `${this.name}.snap`);
  }
  private get journalPath(): string {
    return join(this.dir, `${this.name}.journal`);
  }

  /** Writes a full snapshot atomically and starts an empty journal. */
  snapshot(set: TableSet, meta: SetMeta): void {
    const blocks = TABLE_NAMES.filter((t) => set.count(t) > 0).map((t) => encodeBlock(t, Array.from(set.rows(t))));
    const data = pack({ gen: set.gen, frozen: meta.frozen, sealed: meta.sealed, blocks });
    const tmp = `${this.snapPath}.tmp`;
    writeFileSync(tmp, data);
    renameSync(tmp, this.snapPath);
    this.snapBytes = data.byteLength;
    this.closeJournal();
    writeFileSync(this.journalPath, new Uint8Array(0));
    this.journalBytes = 0;
  }

  private openJournal(): number {
    if (this.fd === null) {
      this.fd = openSync(this.journalPath, "a");
      this.journalBytes = fstatSync(this.fd).size;
    }
    return this.fd;
  }

  private closeJournal(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** Appends a change (and optional flag updates); compacts when the journal is large. */
  append(set: TableSet, change: Change | null, meta: SetMeta, flags: Partial<SetMeta> = {}): void {
    const rec: Record<string, unknown> = { gen: set.gen, ...(change ? encodeChange(change) : { u: [], d: {} }) };
    if (flags.frozen !== undefined) rec.f = flags.frozen;
    if (flags.sealed !== undefined) rec.s = flags.sealed;
    const body = pack(rec);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(body.byteLength);
    const fd = this.openJournal();
    writeSync(fd, Buffer.concat([head, body]));
    this.journalBytes += 4 + body.byteLength;
    if (this.journalBytes > Math.max(8 * 1024 * 1024, this.snapBytes * 2)) this.snapshot(set, meta);
  }

  /** Loads the set, or null when nothing was persisted under this name. */
  load(): { set: TableSet; meta: SetMeta } | null {
    if (!existsSync(this.snapPath)) return null;
    const set = new TableSet();
    const meta: SetMeta = { frozen: false, sealed: false };
    const snapData = readFileSync(this.snapPath);
    this.snapBytes = snapData.byteLength;
    const snap = unpack(snapData, MAX_FILE_BYTES) as { gen: number; frozen: boolean; sealed: boolean; blocks: unknown[] };
    const base: Change = { upserts: {}, deletes: {} };
    for (const b of snap.blocks) {
      const { table, rows } = decodeBlock(b, `${this.name}.snap`);
      (base.upserts as Record<TableName, unknown[]>)[table] = rows;
    }
    set.apply(base);
    set.gen = snap.gen;
    meta.frozen = snap.frozen;
    meta.sealed = snap.sealed;
    if (existsSync(this.journalPath)) {
      const j = readFileSync(this.journalPath);
      let off = 0;
      while (off + 4 <= j.byteLength) {
        const len = j.readUInt32LE(off);
        if (off + 4 + len > j.byteLength) break; // torn tail
        const rec = unpack(j.subarray(off + 4, off + 4 + len), MAX_FILE_BYTES) as { gen: number; u?: unknown; d?: unknown; f?: boolean; s?: boolean };
        set.apply(decodeChange(rec));
        set.gen = rec.gen;
        if (rec.f !== undefined) meta.frozen = rec.f;
        if (rec.s !== undefined) meta.sealed = rec.s;
        off += 4 + len;
      }
    }
    return { set, meta };
  }

  /** Moves this set's files to another name (staging area → live VM). */
  renameTo(dir: string, name: string): SetFile {
    this.closeJournal();
    const next = new SetFile(dir, name);
    renameSync(this.snapPath, next.snapPath);
    if (existsSync(this.journalPath)) renameSync(this.journalPath, next.journalPath);
    else writeFileSync(next.journalPath, new Uint8Array(0));
    return next;
  }

  remove(): void {
    this.closeJournal();
    rmSync(this.snapPath, { force: true });
    rmSync(this.journalPath, { force: true });
  }

  close(): void {
    this.closeJournal();
  }
}

/** Names of the sets persisted in a directory. */
export function listSets(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith(".snap")).map((f) => f.slice(0, -5));
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}
