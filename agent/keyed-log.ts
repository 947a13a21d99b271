/**
 * A small map persisted as an append-only log, for state that changes one
 * key at a time on the command path (fencing epochs, host-local port ids):
 *
 *   <file>   one JSON line per change: [key, value] or [key, null] (deleted)
 *
 * A change is one append (write(2), like the backends' journals: a killed
 * process leaves it in the page cache), never a rewrite and rename, which on
 * ext4 flushes the file and costs milliseconds. The log is compacted to one
 * line per key when it loads and when it grows past a few times the number
 * of keys. A torn last line (a machine crash mid-write) is ignored on load.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/** Compact once the log holds this many lines more than there are keys... */
const COMPACT_SLACK_LINES = 4096;
/** ...and more than this many times as many. */
const COMPACT_FACTOR = 4;

export class KeyedLog<V> {
  private readonly map = new Map<string, V>();
  private fd: number | null = null;
  private lines = 0;

  /** `file` null keeps the map in memory only; `valid` rejects lines that are not values (they are skipped). */
  constructor(private readonly file: string | null, valid: (v: unknown) => v is V) {
    if (!file || !existsSync(file)) return;
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (!line) continue;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        continue; // a torn last line
      }
      if (!Array.isArray(rec) || typeof rec[0] !== "string") continue;
      if (rec[1] === null) this.map.delete(rec[0]);
      else if (valid(rec[1])) this.map.set(rec[0], rec[1]);
    }
    this.compact();
  }

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  get size(): number {
    return this.map.size;
  }

  entries(): [string, V][] {
    return Array.from(this.map);
  }

  set(key: string, value: V): void {
    this.map.set(key, value);
    this.append(key, value);
  }

  delete(key: string): boolean {
    if (!this.map.delete(key)) return false;
    this.append(key, null);
    return true;
  }

  private append(key: string, value: V | null): void {
    if (!this.file) return;
    if (this.fd === null) {
      mkdirSync(dirname(this.file), { recursive: true });
      this.fd = openSync(this.file, "a");
    }
    writeSync(this.fd, `${JSON.stringify([key, value])}\n`);
    if (++this.lines > Math.max(COMPACT_SLACK_LINES, COMPACT_FACTOR * this.map.size)) this.compact();
  }

  /** Rewrites the log as one line per key (tmp + rename: off the command path, rarely). */
  private compact(): void {
    if (!this.file) return;
    this.close();
    const tmp = `${this.file}.tmp`;
    mkdirSync(dirname(this.file), { recursive: true });
    writeFileSync(tmp, Array.from(this.map, ([k, v]) => `${JSON.stringify([k, v])}\n`).join(""));
    renameSync(tmp, this.file);
    this.lines = this.map.size;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
