/**
 * Persistence for the memory backend: per table set, a snapshot file plus an
 * append-only journal of changes, so an agent restart (even a SIGKILL) loses
 * nothing that was acknowledged. The owner compacts the journal into a new
 * snapshot once it outgrows the snapshot, when idle (never in a freeze window).
 *
 *   <dir>/<name>.snap      msgpack { gen, frozen, sealed, blocks }
 *   <dir>/<name>.journal   records: u32 length + msgpack { gen, u, d, f?, s? }
 *
 * Writes are synchronous (write(2) per record): a killed process leaves
 * everything it acknowledged in the kernel's page cache. A torn last record
 * (machine crash mid-write) is ignored on load.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync, writevSync } from "node:fs";
import { join } from "node:path";
import { decodeBlocks, encodeColumns } from "../../../protocol/codec/columnar.js";
import { pack, packTransient, unpack } from "../../../protocol/codec/packr.js";
import { TABLE_NAMES, type TableName } from "../../../protocol/state/tables.js";
import type { Change } from "../backend.js";
import type { RowSource } from "../../../protocol/state/row-block.js";
import { TableSet } from "../../../protocol/state/table-set.js";

export interface SetMeta {
  frozen: boolean;
  sealed: boolean;
}

const MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024;

function encodeChange(change: Change): { u: unknown[]; d: Change["deletes"] } {
  const u: unknown[] = [];
  for (const t of TABLE_NAMES) {
    const block = change.upserts[t];
    if (block?.length) u.push(encodeColumns(block));
  }
  return { u, d: change.deletes };
}

function decodeChange(rec: { u?: unknown; d?: unknown }): Change {
  return { upserts: decodeBlocks((rec.u ?? []) as unknown[], "journal"), deletes: (rec.d ?? {}) as Change["deletes"] };
}

/** Writes all of `data` at the file's position (write(2) may take less than asked). */
function writeAll(fd: number, data: Uint8Array): number {
  for (let off = 0; off < data.byteLength; ) off += writeSync(fd, data, off);
  return data.byteLength;
}

/**
 * A snapshot file's bytes, msgpack of `{ gen, frozen, sealed, blocks }`, as
 * a sequence of parts: the map's head, then each block (a slice of at most
 * `sliceRows` rows of a table) packed on its own. Written part by part, a
 * large set is never packed into one buffer of its whole size.
 */
function* snapshotParts(sources: readonly RowSource[], gen: number, meta: SetMeta, sliceRows: number): Generator<Uint8Array> {
  // The parts are planned from the lengths now: rows added later are in the journal that follows.
  const plan = sources.map((src) => ({ src, rows: src.length }));
  let count = 0;
  for (const p of plan) count += Math.ceil(p.rows / sliceRows);
  const arrayHead = Buffer.alloc(5);
  arrayHead[0] = 0xdd; // array 32
  arrayHead.writeUInt32BE(count, 1);
  // Each pack() is copied at once: msgpackr returns views of a buffer it reuses.
  yield Buffer.concat([Buffer.from([0x84]), ...["gen", gen, "frozen", meta.frozen, "sealed", meta.sealed, "blocks"].map((v) => pack(v)), arrayHead]);
  // Each part is packed from its slice at once, and written before the next is packed.
  for (const { src, rows } of plan) for (let i = 0; i < rows; i += sliceRows) yield packTransient(encodeColumns(src.slice(i, i + sliceRows)));
}

/**
 * One persisted table set (a live VM or a staging area) in a directory.
 *
 * Compaction never blocks for long, and makes no copy of the set: it
 * rotates the journal to `<name>.journal.next` so writes go on, writes the
 * snapshot from the live set a slice per event-loop turn
 * (`TableSet.openRead`), appends to the new journal the current rows of any
 * the snapshot missed (rows that moved behind the read), and then renames:
 * snapshot first, journal second. The snapshot may hold rows newer than its
 * generation; every change after that generation is in the new journal,
 * so replaying it makes the state exact. A crash at any point replays to the
 * same state: the old journal over the new snapshot, then the new journal.
 */
export class SetFile {
  private fd: number | null = null;
  private journalBytes = 0;
  private snapBytes = 0;
  private compacting: Promise<void> | null = null;
  private removed = false;

  constructor(private readonly dir: string, readonly name: string) {}

  private get snapPath(): string {
    return join(this.dir, `${this.name}.snap`);
  }
  private get journalPath(): string {
    return join(this.dir, `${this.name}.journal`);
  }
  private get nextJournalPath(): string {
    return join(this.dir, `${this.name}.journal.next`);
  }
  /** Where appends go: the rotated journal while a compaction runs. */
  private get writePath(): string {
    return this.compacting ? this.nextJournalPath : this.journalPath;
  }

  /** Writes a full snapshot at once (new, small or shutting-down sets) and starts an empty journal. */
  snapshot(set: TableSet, meta: SetMeta): void {
    const tmp = `${this.snapPath}.tmp`;
    const fd = openSync(tmp, "w");
    let bytes = 0;
    const read = set.openRead();
    try {
      for (const part of snapshotParts(Object.values(read.sources), set.gen, meta, 65536)) bytes += writeAll(fd, part);
    } finally {
      read.close();
      closeSync(fd);
    }
    renameSync(tmp, this.snapPath);
    this.snapBytes = bytes;
    this.closeJournal();
    writeFileSync(this.journalPath, new Uint8Array(0));
    this.journalBytes = 0;
  }

  /** True once the journal has outgrown the snapshot (call `compact()` when idle). */
  get wantsCompaction(): boolean {
    return !this.compacting && this.journalBytes > Math.max(8 * 1024 * 1024, this.snapBytes * 2);
  }

  /** Counts the current journal as the state's size (a staging area's journal holds the whole state). */
  adoptJournalAsBaseline(): void {
    this.snapBytes = Math.max(this.snapBytes, this.journalBytes);
  }

  /** Compacts without blocking the event loop for more than a slice. */
  compact(set: TableSet, meta: SetMeta, sliceRows = 4096): Promise<void> {
    if (this.compacting) return this.compacting;
    const gen = set.gen;
    const missed = new Map<TableName, Set<string>>();
    const read = set.openRead((t, key) => {
      let keys = missed.get(t);
      if (!keys) missed.set(t, (keys = new Set()));
      keys.add(key);
    });
    this.closeJournal();
    writeFileSync(this.nextJournalPath, new Uint8Array(0));
    const run = (async () => {
      const tmp = `${this.snapPath}.tmp`;
      const fd = openSync(tmp, "w");
      let bytes = 0;
      try {
        for (const part of snapshotParts(Object.values(read.sources), gen, meta, sliceRows)) {
          // A set removed meanwhile must stay removed: its files must not come back.
          if (this.removed) break;
          bytes += writeAll(fd, part);
          await new Promise((r) => setImmediate(r));
        }
      } finally {
        read.close();
        closeSync(fd);
      }
      if (this.removed) return void rmSync(tmp, { force: true });
      // Rows the snapshot missed, as they are now (after every change the new journal holds).
      if (missed.size > 0) this.append(set, set.current(missed));
      renameSync(tmp, this.snapPath);
      this.closeJournal();
      renameSync(this.nextJournalPath, this.journalPath);
      this.snapBytes = bytes;
    })();
    this.compacting = run.finally(() => {
      this.compacting = null;
      if (this.removed) return;
      this.journalBytes = existsSync(this.journalPath) ? statSync(this.journalPath).size : 0;
    });
    return this.compacting;
  }

  private openJournal(): number {
    if (this.fd === null) {
      this.fd = openSync(this.writePath, "a");
      this.journalBytes = this.compacting ? this.journalBytes : fstatSync(this.fd).size;
    }
    return this.fd;
  }

  private closeJournal(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** Appends a change (and optional flag updates). Never compacts: that is the owner's call, off the hot path. */
  append(set: TableSet, change: Change | null, flags: Partial<SetMeta> = {}): void {
    const rec: Record<string, unknown> = { gen: set.gen, ...(change ? encodeChange(change) : { u: [], d: {} }) };
    if (flags.frozen !== undefined) rec.f = flags.frozen;
    if (flags.sealed !== undefined) rec.s = flags.sealed;
    // Written at once below: the packing buffer is reused record after record.
    const body = packTransient(rec);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(body.byteLength);
    const fd = this.openJournal();
    // Two buffers in one call: the record is not copied again to join them.
    const wrote = writevSync(fd, [head, body]);
    if (wrote !== 4 + body.byteLength) throw new Error(`journal ${this.name}: short write (${wrote} of ${4 + body.byteLength} bytes)`);
    this.journalBytes += 4 + body.byteLength;
  }

  /** Loads the set, or null when nothing was persisted under this name. */
  load(): { set: TableSet; meta: SetMeta } | null {
    if (!existsSync(this.snapPath)) return null;
    const set = new TableSet();
    const meta: SetMeta = { frozen: false, sealed: false };
    const snapData = readFileSync(this.snapPath);
    this.snapBytes = snapData.byteLength;
    const snap = unpack(snapData, MAX_FILE_BYTES) as { gen: number; frozen: boolean; sealed: boolean; blocks: unknown[] };
    set.append({ upserts: decodeBlocks(snap.blocks, `${this.name}.snap`) });
    set.gen = snap.gen;
    meta.frozen = snap.frozen;
    meta.sealed = snap.sealed;
    for (const path of [this.journalPath, this.nextJournalPath]) this.replay(path, set, meta);
    // Fold an interrupted compaction's rotated journal back into one.
    if (existsSync(this.nextJournalPath)) this.snapshot(set, meta);
    return { set, meta };
  }

  private replay(path: string, set: TableSet, meta: SetMeta): void {
    if (!existsSync(path)) return;
    const j = readFileSync(path);
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
    if (path === this.journalPath) this.journalBytes = j.byteLength;
  }

  /** Moves this set's files to another name (staging area → live VM). */
  renameTo(dir: string, name: string): SetFile {
    this.closeJournal();
    const next = new SetFile(dir, name);
    renameSync(this.snapPath, next.snapPath);
    if (existsSync(this.journalPath)) renameSync(this.journalPath, next.journalPath);
    else writeFileSync(next.journalPath, new Uint8Array(0));
    next.snapBytes = this.snapBytes;
    next.journalBytes = this.journalBytes;
    return next;
  }

  remove(): void {
    this.removed = true;
    this.closeJournal();
    for (const p of [this.snapPath, this.journalPath, this.nextJournalPath, `${this.snapPath}.tmp`]) rmSync(p, { force: true });
  }

  close(): void {
    this.closeJournal();
  }

  /** Waits for a compaction in progress. */
  async settle(): Promise<void> {
    await this.compacting?.catch(() => undefined);
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
