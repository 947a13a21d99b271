/**
 * Per-table row functions compiled from the table descriptors.
 *
 * Generic code that reads `row[name]` with a name held in a variable, or that
 * builds rows field by field, makes V8 see many object shapes at one site and
 * fall back to slow property lookups (hundreds of ns per access on 100k-row
 * tables). These functions are generated once per table and field, so every
 * property access is a named access at a site of its own, and every decoded
 * row is built by one object literal: one shape per table.
 *
 * The generated source contains only field names from `TABLES` (checked to be
 * plain identifiers in tables.ts), never data.
 */
import { ipWords } from "./ip.js";
import { ipAt, ipCopy, ipLoad, ipPut, ipSame, ipV4At } from "./ip-column.js";
import { TABLE_NAMES, TABLES, type FieldSpec, type TableName } from "./tables.js";

type Row = Record<string, unknown>;

/**
 * Hashes a row's portable fields into two 32-bit lanes (see digest.ts),
 * writing them to `out[0]`, `out[1]`. Values are mixed in directly (no string
 * is built): integers as one word, f64 as its two words, booleans as 0/1,
 * strings as their length and UTF-16 units, json fields as the length and
 * units of their canonical JSON text. Every field is mixed with its type and
 * position first, so no value can imitate another field.
 */
export type RowHash = (row: Row, out: Uint32Array) => void;

/** The same hash over row `i` of a table's columns (see `Columns`): equal to `RowHash` of the row they hold. */
export type ColumnHash = (cols: Columns, dicts: Dicts, i: number, out: Uint32Array) => void;

const MIX_A = 2654435761;
const MIX_B = 1597334677;

/**
 * The hash's source, with each field's value read by `value(field, k)`: the
 * row form and the column form are one generated body, so they cannot drift.
 * An ip field is mixed as its four words, read into `q` by `ipLoad`.
 */
function hashSource(table: TableName, value: (fl: FieldSpec, k: number) => string, ipLoad: (fl: FieldSpec, k: number) => string): string {
  const fields = TABLES[table].fields.map((fl, k) => [fl, k] as const).filter(([fl]) => !fl.local);
  const word = (w: string) => `h1 = Math.imul(h1 ^ ${w}, ${MIX_A}); h2 = Math.imul(h2 ^ ${w}, ${MIX_B});`;
  const str = (e: string) => `s = ${e}; n = s.length; ${word("n")} for (let j = 0; j < n; j++) { c = s.charCodeAt(j); ${word("c")} }`;
  const parts = fields.map(([fl, k], pos) => {
    const v = value(fl, k);
    const tag = word(String(((pos + 1) << 8) | "str u8 u16 u32 f64 bool json ip".split(" ").indexOf(fl.type)));
    switch (fl.type) {
      case "str": return `${tag} ${str(v)}`;
      case "ip": return `${tag} ${ipLoad(fl, k)} ${word("q[0]")} ${word("q[1]")} ${word("q[2]")} ${word("q[3]")}`;
      case "json": return `${tag} ${str(`json(${v})`)}`;
      case "bool": return `${tag} ${word(`(${v} ? 1 : 0)`)}`;
      // -0 and 0 hash alike (they print alike).
      case "f64": return `${tag} f = ${v}; f64[0] = f === 0 ? 0 : f; ${word("w32[0]")} ${word("w32[1]")}`;
      default: return `${tag} ${word(`(${v} | 0)`)}`;
    }
  });
  let seed1 = 0x9e3779b9;
  let seed2 = 0x85ebca6b;
  for (let i = 0; i < table.length; i++) {
    seed1 = Math.imul(seed1 ^ table.charCodeAt(i), MIX_A) >>> 0;
    seed2 = Math.imul(seed2 ^ table.charCodeAt(i), MIX_B) >>> 0;
  }
  return `let h1 = ${seed1 | 0}, h2 = ${seed2 | 0}, s = "", n = 0, c = 0, f = 0;
  ${parts.join("\n  ")}
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  out[0] = h1; out[1] = h2;`;
}

function compileHash(table: TableName, canonicalJson: (v: unknown) => string): { row: RowHash; column: ColumnHash } {
  const fields = TABLES[table].fields;
  const cols = columnLocals(fields);
  const body = `"use strict";
const f64 = new Float64Array(1); const w32 = new Uint32Array(f64.buffer); const q = new Uint32Array(4);
return {
  row: function hash(row, out) {
  ${hashSource(table, (fl) => `row.${fl.name}`, (fl) => `if (!ipw(row.${fl.name}, q, 0)) q.fill(0);`)}
  },
  column: function hashAt(cols, dicts, i, out) {
  ${cols}
  ${hashSource(table, (fl, k) => columnValue(fl, k), (_, k) => `ipLoad(c${k}, i, q);`)}
  },
};`;
  return (new Function("json", "ipw", "ipAt", "ipLoad", body) as (json: (v: unknown) => string, ipw: typeof ipWords, at: typeof ipAt, load: typeof ipLoad) => { row: RowHash; column: ColumnHash })(canonicalJson, ipWords, ipAt, ipLoad);
}

/**
 * A table's rows held as columns, one per field in field order: a typed
 * array for numeric fields (u8 and bool in a Uint8Array; u16, u32, f64 in
 * their own), a Uint32Array of ids into that field's dictionary (`Dicts`)
 * for str fields, an ip column for ip fields (one word a row while every
 * address is IPv4, four otherwise: see ip-column.ts), a plain array for json
 * fields. See row-block.ts.
 */
export type Columns = { [i: number]: unknown }[];
/** Per field, the strings a str column's ids point into (null for other fields). */
export type Dicts = readonly (readonly string[] | null)[];

/** Writes a row's fields into position `i`; `intern(k, s)` gives the id of string s in field k's dictionary. */
export type ColumnWrite = (cols: Columns, i: number, row: Row, intern: (k: number, s: string) => number) => void;
/** Builds the row held at position `i` (one object literal: the table's one shape). */
export type ColumnRead = (cols: Columns, dicts: Dicts, i: number) => Row;
/** Copies row `i` of `src` over row `j` of `dst`, ids as they are (both columns must share dictionaries). */
export type ColumnCopy = (dst: Columns, j: number, src: Columns, i: number) => void;
/** The key of the row at `i` (see TableSpec.keyFields). */
export type ColumnKey = (cols: Columns, dicts: Dicts, i: number) => string;
/** `keyHash` of the key of the row at `i`, computed from the columns without building the key. */
export type ColumnKeyHash = (cols: Columns, dicts: Dicts, i: number) => number;
/**
 * True when row i of columns `a` (strings in `da`) and row j of columns `b`
 * (strings in `db`) have the same key: two rows of one table, or a block's
 * row and a table's (str fields compare as strings, addresses at any width).
 */
export type ColumnKeysEqual = (a: Columns, da: Dicts, i: number, b: Columns, db: Dicts, j: number) => boolean;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 16777619;

/** The final avalanche of `keyHash`. */
function finishKeyHash(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A 32-bit hash of a key string (FNV-1a with a final avalanche): the key index's hash. */
export function keyHash(s: string): number {
  return finishKeyHash(hashChars(FNV_OFFSET, s));
}

function hashChars(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h;
}

/** Continues a key hash over the decimal digits of a non-negative integer, as `${n}` prints it. */
function hashDigits(h: number, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) return hashChars(h, String(n));
  let div = 1;
  while (div * 10 <= n) div *= 10;
  for (; div >= 1; div /= 10) h = Math.imul(h ^ (48 + (Math.floor(n / div) % 10)), FNV_PRIME);
  return h;
}

/** Continues a key hash over the text of the address in row i of an ip column, building the text only for IPv6. */
function hashIp(h: number, col: Uint32Array, i: number): number {
  const v4 = ipV4At(col, i);
  if (v4 < 0) return hashChars(h, ipAt(col, i));
  for (let shift = 24; shift >= 0; shift -= 8) {
    h = hashDigits(h, (v4 >>> shift) & 255);
    if (shift > 0) h = Math.imul(h ^ 46, FNV_PRIME);
  }
  return h;
}

function notIp(field: string, v: unknown): never {
  throw new Error(`${field} is not an IP address: ${JSON.stringify(v)}`);
}

function columnLocals(fields: readonly FieldSpec[]): string {
  return fields.map((f, k) => `const c${k} = cols[${k}];${f.type === "str" ? ` const d${k} = dicts[${k}];` : ""}`).join(" ");
}

/** The expression for field k's value at row i, over the locals of `columnLocals`. */
function columnValue(f: FieldSpec, k: number): string {
  return f.type === "str" ? `d${k}[c${k}[i]]` : f.type === "ip" ? `ipAt(c${k}, i)` : f.type === "bool" ? `(c${k}[i] === 1)` : `c${k}[i]`;
}

function compileColumnCode(fields: readonly FieldSpec[], keyFields: readonly string[]): TableCode {
  const locals = columnLocals(fields);
  const write = fields.map((f, k) => {
    if (f.type === "ip") return `if (!ipPut(cols, ${k}, i, r.${f.name})) notIp("${f.name}", r.${f.name});`;
    return `cols[${k}][i] = ${f.type === "bool" ? `r.${f.name} ? 1 : 0` : f.type === "str" ? `intern(${k}, r.${f.name})` : `r.${f.name}`};`;
  }).join(" ");
  const read = fields.map((f, k) => `${f.name}: ${columnValue(f, k)}`).join(", ");
  const copy = fields.map((f, k) => (f.type === "ip" ? `ipCopy(dst, ${k}, j, src[${k}], i);` : `dst[${k}][j] = src[${k}][i];`)).join(" ");
  const key = keyFields.map((name) => {
    const k = fields.findIndex((f) => f.name === name);
    return `\${${columnValue(fields[k]!, k)}}`;
  }).join("|");
  // The key's hash, part by part, as `keyHash` would hash the key's text ("|" is 124).
  const keyHashParts = keyFields.map((name, n) => {
    const k = fields.findIndex((f) => f.name === name);
    const f = fields[k]!;
    const part = f.type === "str" ? `h = chars(h, d${k}[c${k}[i]]);`
      : f.type === "ip" ? `h = ipHash(h, c${k}, i);`
      : f.type === "u8" || f.type === "u16" || f.type === "u32" ? `h = digits(h, c${k}[i]);`
      : `h = chars(h, String(${columnValue(f, k)}));`;
    return `${n > 0 ? `h = Math.imul(h ^ 124, ${FNV_PRIME});` : ""} ${part}`;
  }).join("\n");
  const keysEqual = keyFields.map((name) => {
    const k = fields.findIndex((f) => f.name === name);
    const t = fields[k]!.type;
    return t === "ip" ? `ipSame(a[${k}], i, b[${k}], j)` : t === "str" ? `da[${k}][a[${k}][i]] === db[${k}][b[${k}][j]]` : `a[${k}][i] === b[${k}][j]`;
  }).join(" && ");
  // The generated functions see the helpers as closure variables.
  const make = (args: string, body: string) =>
    new Function("ipAt", "ipPut", "ipCopy", "ipSame", "notIp", "chars", "digits", "ipHash", "finish", `"use strict"; return function (${args}) { ${body} };`)(ipAt, ipPut, ipCopy, ipSame, notIp, hashChars, hashDigits, hashIp, finishKeyHash);
  return {
    write: make("cols, i, r, intern", write) as ColumnWrite,
    readAt: make("cols, dicts, i", `${locals}\nreturn { ${read} };`) as ColumnRead,
    copy: make("dst, j, src, i", copy) as ColumnCopy,
    keyAt: make("cols, dicts, i", `${locals}\nreturn \`${key}\`;`) as ColumnKey,
    keyHashAt: make("cols, dicts, i", `${locals}\nlet h = ${FNV_OFFSET};\n${keyHashParts}\nreturn finish(h);`) as ColumnKeyHash,
    keysEqual: make("a, da, i, b, db, j", `return ${keysEqual};`) as ColumnKeysEqual,
  };
}

export interface TableCode {
  write: ColumnWrite;
  readAt: ColumnRead;
  copy: ColumnCopy;
  keyAt: ColumnKey;
  keyHashAt: ColumnKeyHash;
  keysEqual: ColumnKeysEqual;
}

export const ROW_CODE = Object.fromEntries(
  TABLE_NAMES.map((t) => [t, compileColumnCode(TABLES[t].fields, TABLES[t].keyFields)]),
) as unknown as Readonly<Record<TableName, TableCode>>;

export function compileHashes(canonicalJson: (v: unknown) => string): Record<TableName, { row: RowHash; column: ColumnHash }> {
  return Object.fromEntries(TABLE_NAMES.map((t) => [t, compileHash(t, canonicalJson)])) as Record<TableName, { row: RowHash; column: ColumnHash }>;
}
