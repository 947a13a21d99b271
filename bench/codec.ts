/**
 * Section 5: encode and decode throughput and size for a conntrack table,
 * netmig's columnar blocks in msgpackr vs one msgpackr map per entry vs JSON.
 * Every variant decodes back to row objects, so the comparison is like for like.
 */
import { encodeBlock, decodeBlock } from "../protocol/codec/columnar.js";
import { pack, unpack } from "../protocol/codec/packr.js";
import { generateVmState } from "../protocol/state/generate.js";
import { median, timeRuns } from "./stats.js";

export interface CodecResult {
  format: "msgpackr-columnar" | "msgpackr-per-entry" | "json";
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
  const variants: { format: CodecResult["format"]; enc: () => Uint8Array; dec: (b: Uint8Array) => unknown[] }[] = [
    { format: "msgpackr-columnar", enc: () => pack(encodeBlock("conntrack", rows)), dec: (b) => decodeBlock(unpack(b, MAX)).rows },
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
