/** Rows and helpers shared by the TableSet tests. */
import { generateVmState } from "../../protocol/state/generate.js";
import { TableSet, type Change } from "../../protocol/state/table-set.js";
import { keyOf, TABLE_NAMES, type AclRow } from "../../protocol/state/tables.js";
import { blocksOf } from "../../protocol/state/row-block.js";

export const state = generateVmState("vm-ts", { conntrack: 500, fdb: 100, acls: 50, ports: 2, seed: 5 });

type Row = Record<string, unknown>;

export function acl(i: number, priority = 1000): AclRow {
  return { id: `acl-${i}`, direction: "ingress", priority, table: 0, match: `tcp,tp_dst=${i}`, actions: "drop" };
}

/** A change normalized for comparison: tables sorted by key, empty lists dropped. */
export function norm(c: Change): { upserts: Record<string, Row[]>; deletes: Record<string, string[]> } {
  const upserts: Record<string, Row[]> = {};
  const deletes: Record<string, string[]> = {};
  for (const t of TABLE_NAMES) {
    const u = (c.upserts[t] ?? []) as unknown as Row[];
    if (u.length) upserts[t] = [...u].sort((a, b) => (keyOf(t, a) < keyOf(t, b) ? -1 : 1));
    const d = c.deletes[t] ?? [];
    if (d.length) deletes[t] = [...d].sort();
  }
  return { upserts, deletes };
}

export function loaded(): TableSet {
  const s = new TableSet();
  s.apply({ upserts: blocksOf(state.tables), deletes: {} });
  return s;
}
