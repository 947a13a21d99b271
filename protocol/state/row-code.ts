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
 * plain identifiers below), never data.
 */
import { TABLE_NAMES, TABLES, type FieldSpec, type TableName } from "./tables.js";

type Row = Record<string, unknown>;

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
for (const t of TABLE_NAMES) {
  for (const f of TABLES[t].fields) if (!IDENT.test(f.name)) throw new Error(`table ${t}: field name ${JSON.stringify(f.name)} is not a plain identifier`);
}

/** Copies every field of every row into its column (`outs[k]` for field k: a typed array or a plain array), in one pass over the rows. */
export type ColumnReader = (rows: readonly Row[], outs: readonly { [i: number]: unknown }[]) => void;

/** Builds `n` rows from prepared columns (see `RowBuilder` in columnar.ts for what each holds). */
export type RowBuilder = (n: number, cols: readonly unknown[], dicts: readonly (readonly string[] | null)[]) => Row[];

function compileReader(fields: readonly FieldSpec[]): ColumnReader {
  const prep = fields.map((_, k) => `const o${k} = outs[${k}];`).join(" ");
  const copy = fields.map((f, k) => (f.type === "bool" ? `o${k}[i] = r.${f.name} ? 1 : 0;` : `o${k}[i] = r.${f.name};`)).join(" ");
  return new Function("rows", "outs", `"use strict"; ${prep}\nfor (let i = 0; i < rows.length; i++) { const r = rows[i]; ${copy} }`) as ColumnReader;
}

function compileBuilder(fields: readonly FieldSpec[]): RowBuilder {
  const prep = fields.map((f, k) => `const c${k} = cols[${k}];${f.type === "str" ? ` const d${k} = dicts[${k}];` : ""}`).join("\n");
  const props = fields.map((f, k) => {
    switch (f.type) {
      case "str": return `${f.name}: d${k} === null ? c${k}[i] : d${k}[c${k}[i]]`;
      case "bool": return `${f.name}: c${k}[i] === 1`;
      default: return `${f.name}: c${k}[i]`;
    }
  });
  const body = `"use strict";\n${prep}\nconst rows = new Array(n);\nfor (let i = 0; i < n; i++) rows[i] = { ${props.join(", ")} };\nreturn rows;`;
  return new Function("n", "cols", "dicts", body) as RowBuilder;
}

/** The canonical string of a row's portable fields (see digest.ts). */
export type Canon = (row: Row) => string;

function compileCanon(table: TableName, canonicalJson: (v: unknown) => string): Canon {
  const fields = TABLES[table].fields.filter((fl) => !fl.local);
  // Each field is length-prefixed, so no value can imitate a field boundary.
  const parts = fields.map((f) => {
    const text =
      f.type === "json" ? `json(row.${f.name})` : f.type === "str" ? `row.${f.name}` : f.type === "bool" ? `(row.${f.name} ? "1" : "0")` : `String(row.${f.name})`;
    return `t = ${text}; s += "|" + t.length + ":" + t;`;
  });
  const body = `"use strict"; return function canon(row) { let s = ${JSON.stringify(table)}; let t;\n${parts.join("\n")}\nreturn s; };`;
  return (new Function("json", body) as (json: (v: unknown) => string) => Canon)(canonicalJson);
}

export interface TableCode {
  read: ColumnReader;
  build: RowBuilder;
}

export const ROW_CODE = Object.fromEntries(
  TABLE_NAMES.map((t) => [t, { read: compileReader(TABLES[t].fields), build: compileBuilder(TABLES[t].fields) }]),
) as unknown as Readonly<Record<TableName, TableCode>>;

export function compileCanons(canonicalJson: (v: unknown) => string): Record<TableName, Canon> {
  return Object.fromEntries(TABLE_NAMES.map((t) => [t, compileCanon(t, canonicalJson)])) as Record<TableName, Canon>;
}
