import { test } from "node:test";
import assert from "node:assert/strict";
import { Packr } from "msgpackr";
import { DEFAULT_MAX_MESSAGE_BYTES, pack, unpack } from "../../protocol/codec/packr.js";
import { decodeEnvelope, encodeEnvelope, WIRE_VERSION } from "../../protocol/codec/envelope.js";
import { BadRequestError, NetmigError, PayloadTooLargeError, UnsupportedVersionError } from "../../protocol/errors.js";

/** Asserts `fn` throws an instance of `C` whose message matches `re`. */
function throwsA(fn: () => unknown, C: new (...a: never[]) => Error, re: RegExp, label = ""): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof C, `${label}: expected ${C.name}, got ${String(err)}`);
    assert.match((err as Error).message, re, label);
    return true;
  }, label);
}

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** Raw msgpack for a fixstr. */
function fixstr(s: string): Buffer {
  const b = Buffer.from(s, "utf8");
  assert.ok(b.length < 32);
  return Buffer.concat([Buffer.from([0xa0 | b.length]), b]);
}

/** True when a decoded value is plain data: null/bool/number/string/bytes/arrays/plain objects. */
function isPlain(v: unknown, depth = 0): boolean {
  if (depth > 40) return false;
  if (v === null || v === undefined) return true;
  if (typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return !Number.isNaN(v);
  if (v instanceof Uint8Array) return true;
  if (Array.isArray(v)) return v.every((x) => isPlain(x, depth + 1));
  if (typeof v === "object") {
    const p = Object.getPrototypeOf(v);
    if (p !== Object.prototype && p !== null) return false;
    return Object.keys(v).every((k) => k !== "__proto__" && isPlain((v as Record<string, unknown>)[k], depth + 1));
  }
  return false;
}

test("packr - plain data roundtrips", () => {
  const v = { a: 1, b: [true, false, null, "x", 1.5, -3], c: { d: new Uint8Array([1, 2, 3]) }, e: 2 ** 40, "": "" };
  const out = unpack(pack(v)) as typeof v;
  assert.deepEqual({ ...out, c: { d: Array.from(out.c.d) } }, { ...v, c: { d: [1, 2, 3] } });
  assert.ok(out.c.d instanceof Uint8Array);
});

test("packr - oversized input is refused before decoding", () => {
  // Invalid msgpack (0xc1 is never used): if it were decoded we'd see a BadRequestError instead.
  const big = new Uint8Array(1025).fill(0xc1);
  throwsA(() => unpack(big, 1024), PayloadTooLargeError, /1025 bytes exceeds the 1024-byte limit/);
  const huge = new Uint8Array(DEFAULT_MAX_MESSAGE_BYTES + 1).fill(0xc1);
  throwsA(() => unpack(huge), PayloadTooLargeError, /exceeds/);
  // Exactly at the limit is decoded (and this one is valid).
  const ok = pack("x".repeat(100));
  assert.equal(unpack(ok, ok.byteLength), "x".repeat(100));
});

test("packr - empty input is refused", () => {
  throwsA(() => unpack(new Uint8Array(0)), BadRequestError, /empty message/);
});

test("packr - truncated msgpack is refused", () => {
  const full = pack({ kind: "chunk", body: { rows: Array.from({ length: 50 }, (_, i) => ({ i, s: `row-${i}` })) } });
  for (const cut of [1, 2, 5, 17, Math.floor(full.byteLength / 2), full.byteLength - 1]) {
    throwsA(() => unpack(full.subarray(0, cut)), BadRequestError, /not valid msgpack/);
  }
  // A str32 header claiming 4 GiB with 3 bytes of data.
  throwsA(() => unpack(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61, 0x62, 0x63])), BadRequestError, /not valid msgpack/);
  // An array32 claiming 2^32-1 elements.
  throwsA(() => unpack(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01])), BadRequestError, /not valid msgpack/);
  // Trailing garbage after a complete value.
  throwsA(() => unpack(new Uint8Array([0x01, 0x02])), BadRequestError, /not valid msgpack/);
});

test("packr - random bytes either decode to plain data or throw a NetmigError", () => {
  const rnd = xorshift(0xc0ffee);
  const valid = pack({ v: 1, kind: "chunk", body: { blocks: [{ t: "fdb", n: 2, c: [new Uint8Array(4), ["a", "b"]] }] } });
  let decoded = 0;
  let refused = 0;
  const started = Date.now();
  for (let iter = 0; iter < 500; iter++) {
    let bytes: Uint8Array;
    if (iter % 2 === 0) {
      bytes = new Uint8Array(1 + (rnd() % 64));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rnd() & 0xff;
    } else {
      // Mutations of a valid message: flip a few bytes.
      bytes = Uint8Array.from(valid);
      for (let k = 0; k < 1 + (rnd() % 4); k++) bytes[rnd() % bytes.length] = rnd() & 0xff;
    }
    let out: unknown;
    try {
      out = unpack(bytes);
    } catch (err) {
      assert.ok(err instanceof NetmigError, `iteration ${iter}: ${Buffer.from(bytes).toString("hex")} threw a non-netmig ${String(err)}`);
      assert.ok(err instanceof BadRequestError, `iteration ${iter}: ${err.name}`);
      refused++;
      continue;
    }
    assert.ok(isPlain(out), `iteration ${iter}: ${Buffer.from(bytes).toString("hex")} decoded to non-plain data`);
    decoded++;
  }
  assert.ok(decoded > 0 && refused > 0, `decoded ${decoded}, refused ${refused}`);
  assert.ok(Date.now() - started < 5000, "random input decodes quickly");
});

test("packr - msgpackr's Error, RegExp, Set, Date and typed-array extensions are refused", () => {
  const rich = new Packr({ moreTypes: true, structuredClone: true });
  const cases: [string, unknown, RegExp][] = [
    ["Error", new Error("boom"), /type Error/],
    ["TypeError", new TypeError("boom"), /type (Type)?Error/],
    ["RegExp", /ab+c/gi, /type RegExp/],
    ["Set", new Set([1, 2]), /type Set/],
    ["Date", new Date(1_700_000_000_000), /type Date/],
    ["nested Set", { a: [{ b: new Set(["x"]) }] }, /type Set/],
    ["nested Date", { when: new Date(0) }, /type Date/],
    ["Uint16Array", new Uint16Array([1, 2, 3]), /type Uint16Array/],
    ["Float64Array", { f: new Float64Array([1.5]) }, /type Float64Array/],
  ];
  for (const [what, v, re] of cases) {
    const bytes = rich.pack(v);
    throwsA(() => unpack(bytes), BadRequestError, re, what);
  }
  // A plain Packr's Date (msgpack timestamp extension) too.
  throwsA(() => unpack(new Packr().pack({ t: new Date() })), BadRequestError, /type Date/);
});

test("packr - structured-clone references and cycles are refused", () => {
  const rich = new Packr({ moreTypes: true, structuredClone: true });
  const cyc: Record<string, unknown> = { a: 1 };
  cyc.self = cyc;
  throwsA(() => unpack(rich.pack(cyc)), BadRequestError, /./);
});

test("packr - deep nesting is refused", () => {
  let v: unknown = 1;
  for (let i = 0; i < 40; i++) v = [v];
  throwsA(() => unpack(pack(v)), BadRequestError, /nested deeper than 16/);
  let o: unknown = 1;
  for (let i = 0; i < 40; i++) o = { o };
  throwsA(() => unpack(pack(o)), BadRequestError, /nested deeper than 16/);
});

test("packr - a __proto__ key is refused and Object.prototype stays clean", () => {
  const protoKeys = Object.keys(Object.prototype).length;
  // { "__proto__": { "polluted": true } }
  const bytes = Buffer.concat([Buffer.from([0x81]), fixstr("__proto__"), Buffer.from([0x81]), fixstr("polluted"), Buffer.from([0xc3])]);
  throwsA(() => unpack(bytes), BadRequestError, /forbidden key/);
  // Nested deeper: { "a": [ { "__proto__": { "polluted": true } } ] }
  const nested = Buffer.concat([Buffer.from([0x81]), fixstr("a"), Buffer.from([0x91]), bytes]);
  throwsA(() => unpack(nested), BadRequestError, /forbidden key/);
  // As a map16 with other keys around it.
  const map16 = Buffer.concat([
    Buffer.from([0xde, 0x00, 0x03]), fixstr("x"), Buffer.from([0x01]),
    fixstr("__proto__"), Buffer.from([0x81]), fixstr("polluted"), Buffer.from([0xc3]),
    fixstr("y"), Buffer.from([0x02]),
  ]);
  throwsA(() => unpack(map16), BadRequestError, /forbidden key/);
  // "constructor" / "prototype" keys too.
  for (const k of ["constructor", "prototype"]) {
    throwsA(() => unpack(Buffer.concat([Buffer.from([0x81]), fixstr(k), Buffer.from([0xc3])])), BadRequestError, /forbidden key/);
  }
  assert.equal((({}) as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.keys(Object.prototype).length, protoKeys);
  assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, "polluted"), false);
});

test("envelope - a packed envelope decodes with its fields", () => {
  const bytes = encodeEnvelope({ kind: "chunk", migrationId: "m-1", vmId: "vm-1", epoch: 3, seq: 7, body: { round: 0 } });
  assert.deepEqual(decodeEnvelope(bytes), { v: WIRE_VERSION, kind: "chunk", migrationId: "m-1", vmId: "vm-1", epoch: 3, seq: 7, body: { round: 0 } });
});

test("envelope - an unknown version is refused with UnsupportedVersionError", () => {
  const base = { kind: "chunk", migrationId: "m", vmId: "vm", epoch: 1, seq: 0, body: null };
  throwsA(() => decodeEnvelope(pack({ ...base, v: 2 })), UnsupportedVersionError, /envelope version 2 is not supported/);
  throwsA(() => decodeEnvelope(pack({ ...base, v: "1" })), UnsupportedVersionError, /version "1"/);
  throwsA(() => decodeEnvelope(pack(base)), UnsupportedVersionError, /version undefined/);
});

test("envelope - missing kind, bad epoch or seq, and non-map messages are refused", () => {
  const base = { v: 1, kind: "chunk", migrationId: "m", vmId: "vm", epoch: 1, seq: 0, body: null };
  const { kind: _kind, ...noKind } = base;
  throwsA(() => decodeEnvelope(pack(noKind)), BadRequestError, /envelope kind must be a non-empty string/);
  throwsA(() => decodeEnvelope(pack({ ...base, kind: "" })), BadRequestError, /kind/);
  throwsA(() => decodeEnvelope(pack({ ...base, kind: "k".repeat(65) })), BadRequestError, /kind/);
  throwsA(() => decodeEnvelope(pack({ ...base, epoch: -1 })), BadRequestError, /envelope epoch must be a non-negative integer/);
  throwsA(() => decodeEnvelope(pack({ ...base, epoch: 1.5 })), BadRequestError, /epoch/);
  throwsA(() => decodeEnvelope(pack({ ...base, epoch: "1" })), BadRequestError, /epoch/);
  throwsA(() => decodeEnvelope(pack({ ...base, seq: -3 })), BadRequestError, /envelope seq must be a non-negative integer/);
  throwsA(() => decodeEnvelope(pack({ ...base, vmId: 5 })), BadRequestError, /vmId/);
  throwsA(() => decodeEnvelope(pack({ ...base, migrationId: "m".repeat(129) })), BadRequestError, /migrationId/);
  throwsA(() => decodeEnvelope(pack([1, "chunk"])), BadRequestError, /not a netmig envelope/);
  throwsA(() => decodeEnvelope(pack(null)), BadRequestError, /not a netmig envelope/);
  throwsA(() => decodeEnvelope(pack(new Uint8Array([1, 2]))), BadRequestError, /not a netmig envelope/);
  throwsA(() => decodeEnvelope(encodeEnvelope({ kind: "x", migrationId: "", vmId: "", epoch: 0, seq: 0, body: 1 }), 4), PayloadTooLargeError, /limit/);
});

test("packr - a transient pack reuses its bytes for the next pack and never touches what regular packs returned", async () => {
  const { packTransient } = await import("../../protocol/codec/packr.js");
  const x = { a: "x".repeat(300), n: [1, 2, 3] };
  const w = { b: new Uint8Array(5000).fill(7) };
  const before = pack(x);
  const t1 = packTransient({ big: new Uint8Array(20000).fill(1) });
  const copy = Uint8Array.from(t1);
  const after = pack(w);
  assert.deepEqual(unpack(before), x, "a regular pack before the transient one is intact");
  const bytes = (v: unknown, k: string) => Uint8Array.from((v as Record<string, Uint8Array>)[k]!);
  assert.deepEqual(bytes(unpack(copy), "big"), new Uint8Array(20000).fill(1));
  packTransient({ big: new Uint8Array(30000).fill(2) });
  packTransient("y".repeat(1000));
  assert.deepEqual(bytes(unpack(after), "b"), w.b, "a regular pack after the transient one is intact after more transient packs");
  // The next pack writes where the transient one did.
  const t2 = packTransient({ s: "z" });
  const t3 = packTransient({ s: "q" });
  assert.equal(t2.byteOffset, t3.byteOffset);
  assert.equal(t2.buffer, t3.buffer);
});
