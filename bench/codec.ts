/**
 * Section 5: encode and decode throughput and size for a conntrack table,
 * netmig's columnar blocks in msgpackr vs one msgpackr map per entry vs JSON.
 * Each format goes from the form its design holds rows in to the same form on
 * the far side: netmig holds tables as columns (`RowBlock`, what an agent
 * reads from and appends to its `TableSet`), a per-entry design holds row
 * objects. A second netmig line starts and ends with row objects, for a
 * caller that has rows.
 */
import { decodeBlock, decodeColumns, encodeBlock, encodeColumns } from "../protocol/codec/columnar.js";
import { RowBlock } from "../protocol/state/row-block.js";
import { pack, unpack } from "../protocol/codec/packr.js";
import { generateVmState } from "../protocol/state/generate.js";
import { median, timeRuns } from "./stats.js";

export interface CodecResult {
  format: "msgpackr-columnar" | "msgpackr-columnar (rows)" | "msgpackr-per-entry" | "json";
  entries: number;
  bytes: number;
  bytesPerEntry: number;
  encodeMs: number;
  decodeMs: number;
  /** Entries per second through encode + decode. */
  entriesPerSec: number;
  /** Encoded MB (10^6 bytes) per second through encode + decode. */
  mbPerSec: number;
  /** JSON's size over this size, and JSON's encode+decode time over this one's. */
  sizeVsJson: number;
  speedupVsJson: number;
}

const MAX = 1 << 30;

export function benchCodec(entries: number, reps: number): CodecResult[] {
  const rows = generateVmState("bench-codec", { conntrack: entries, fdb: 0, acls: 0 }).tables.conntrack;
  const block = RowBlock.of("conntrack", rows);
  const variants: { format: CodecResult["format"]; enc: () => Uint8Array; dec: (b: Uint8Array) => { length: number } }[] = [
    { format: "msgpackr-columnar", enc: () => pack(encodeColumns(block)), dec: (b) => decodeColumns(unpack(b, MAX)) },
    { format: "msgpackr-columnar (rows)", enc: () => pack(encodeBlock("conntrack", rows)), dec: (b) => decodeBlock(unpack(b, MAX)).rows },
    { format: "msgpackr-per-entry", enc: () => pack(rows), dec: (b) => unpack(b, MAX) as unknown[] },
    { format: "json", enc: () => Buffer.from(JSON.stringify(rows)), dec: (b) => JSON.parse(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8")) as unknown[] },
  ];
  const raw = variants.map((v) => {
    const bytes = v.enc();
    const decoded = v.dec(bytes);
    if (decoded.length !== rows.length) throw new Error(`${v.format} decoded ${decoded.length} rows, expected ${rows.length}`);
    const encodeMs = median(timeRuns(reps, 1, () => void v.enc()));
    const decodeMs = median(timeRuns(reps, 1, () => void v.dec(bytes)));
    return { format: v.format, bytes: bytes.byteLength, encodeMs, decodeMs };
  });
  const json = raw.find((r) => r.format === "json")!;
  return raw.map((r) => ({
    format: r.format,
    entries,
    bytes: r.bytes,
    bytesPerEntry: r.bytes / entries,
    encodeMs: r.encodeMs,
    decodeMs: r.decodeMs,
    entriesPerSec: entries / ((r.encodeMs + r.decodeMs) / 1000),
    mbPerSec: r.bytes / 1e6 / ((r.encodeMs + r.decodeMs) / 1000),
    sizeVsJson: json.bytes / r.bytes,
    speedupVsJson: (json.encodeMs + json.decodeMs) / (r.encodeMs + r.decodeMs),
  }));
}
