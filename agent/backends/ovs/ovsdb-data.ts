/**
 * RFC 7047 data: atoms, sets (`["set", [...]]` or a bare atom), maps
 * (`["map", [[k, v], ...]]`) and uuids (`["uuid", "..."]`).
 */
export type OvsRow = Record<string, unknown>;

/** A set column as an array of atoms. */
export function setOf(v: unknown): unknown[] {
  if (Array.isArray(v) && v[0] === "set") return v[1] as unknown[];
  return v === undefined ? [] : [v];
}

/** A uuid atom's string. */
export function uuidOf(v: unknown): string {
  if (Array.isArray(v) && (v[0] === "uuid" || v[0] === "named-uuid")) return String(v[1]);
  throw new Error(`not a uuid: ${JSON.stringify(v)}`);
}

export function uuidsOf(v: unknown): string[] {
  return setOf(v).map(uuidOf);
}

/** A string→string map column as an object (with a null prototype). */
export function mapOf(v: unknown): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  if (Array.isArray(v) && v[0] === "map") for (const [k, val] of v[1] as [unknown, unknown][]) out[String(k)] = String(val);
  return out;
}

/** A map column whose values are uuids (QoS.queues). */
export function uuidMapOf(v: unknown): Map<number, string> {
  const out = new Map<number, string>();
  if (Array.isArray(v) && v[0] === "map") for (const [k, val] of v[1] as [unknown, unknown][]) out.set(Number(k), uuidOf(val));
  return out;
}

/** An optional integer column (set of 0 or 1). */
export function optInt(v: unknown): number | null {
  const s = setOf(v);
  return s.length ? Number(s[0]) : null;
}

export const uuid = (u: string): ["uuid", string] => ["uuid", u];
export const named = (n: string): ["named-uuid", string] => ["named-uuid", n];
export const set = (items: unknown[]): ["set", unknown[]] => ["set", items];
export function map(o: Record<string, string | number | unknown>): ["map", [string, unknown][]] {
  return ["map", Object.keys(o).sort().map((k) => [k, o[k]])];
}
