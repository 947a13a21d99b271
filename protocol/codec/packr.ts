/**
 * The one msgpackr configuration netmig uses, on every NATS message.
 *
 * Decoding treats input as hostile: the size is capped before decoding, a
 * decode failure becomes a BadRequestError, and the result must be plain data
 * (msgpackr still understands its Error/RegExp/Set/Date extensions even with
 * records and structured cloning off, so anything that is not null, boolean,
 * number, string, bytes, plain array or plain object is refused). msgpackr
 * renames a `__proto__` key, and the check below refuses it in any case.
 */
import { Packr, RESET_BUFFER_MODE } from "msgpackr";
import { BadRequestError, PayloadTooLargeError } from "../errors.js";

const packr = new Packr({
  useRecords: false,
  structuredClone: false,
  moreTypes: false,
  mapsAsObjects: true,
  variableMapSize: true,
  int64AsType: "number",
  bundleStrings: false,
});

/** Default cap on a decoded message: NATS' default max_payload (1 MiB) plus headroom. */
export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/**
 * msgpackr packs into one shared buffer that grows to the largest message
 * packed and is kept (returned messages are views of it). Past this size
 * netmig hands it a fresh small buffer instead, so a large snapshot file
 * does not pin its size in memory for the life of the process: the big
 * buffer is freed with the last view of it.
 */
const KEEP_PACK_BUFFER_BYTES = 16 * 1024 * 1024;

export function pack(value: unknown): Uint8Array {
  return keepBufferSmall(packr.pack(value));
}

/**
 * Packs a value for immediate use: the bytes are valid only until the next
 * pack of any kind, so the caller must write them out at once, synchronously
 * (journal records, snapshot parts). The next pack reuses the same memory,
 * already mapped, instead of filling fresh pages record after record.
 */
export function packTransient(value: unknown): Uint8Array {
  return keepBufferSmall(packr.pack(value, RESET_BUFFER_MODE));
}

function keepBufferSmall(out: Uint8Array): Uint8Array {
  if (out.buffer.byteLength > KEEP_PACK_BUFFER_BYTES) packr.useBuffer(Buffer.allocUnsafeSlow(64 * 1024));
  return out;
}

/** Decodes untrusted bytes into plain data, or throws a BadRequestError. */
export function unpack(bytes: Uint8Array, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): unknown {
  if (bytes.byteLength > maxBytes) {
    throw new PayloadTooLargeError(`message of ${bytes.byteLength} bytes exceeds the ${maxBytes}-byte limit`);
  }
  if (bytes.byteLength === 0) throw new BadRequestError("empty message");
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (err) {
    throw new BadRequestError(`message is not valid msgpack: ${(err as Error).message}`);
  }
  const problem = plainProblem(value, 0);
  if (problem) throw new BadRequestError(`message holds ${problem}`);
  return value;
}

/** Returns what is wrong with a decoded value, or null when it is plain data. */
function plainProblem(v: unknown, depth: number): string | null {
  if (depth > 16) return "data nested deeper than 16 levels";
  if (v === null || v === undefined) return null;
  switch (typeof v) {
    case "string":
    case "boolean":
      return null;
    case "number":
      return Number.isNaN(v) ? "a NaN number" : null;
    case "object": {
      if (v instanceof Uint8Array) return null;
      if (Array.isArray(v)) {
        for (const x of v) {
          const p = plainProblem(x, depth + 1);
          if (p) return p;
        }
        return null;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return `a value of type ${proto?.constructor?.name ?? "unknown"}`;
      for (const k of Object.keys(v)) {
        if (k === "__proto__" || k === "__proto_" || k === "constructor" || k === "prototype") return `a forbidden key "${k}"`;
        const p = plainProblem((v as Record<string, unknown>)[k], depth + 1);
        if (p) return p;
      }
      return null;
    }
    default:
      return `a value of type ${typeof v}`;
  }
}
