/**
 * A VM's network state as whole tables, and deltas between generations.
 */
import type { Blocks, Sources } from "./row-block.js";
import { TABLE_NAMES, type RowTypes, type TableName } from "./tables.js";

/** The current schema version of the state model. Bump on any change to TABLES. */
export const SCHEMA_VERSION = 1;

export type Tables = { [T in TableName]: RowTypes[T][] };

/** A VM's complete network state. */
export interface VmState {
  schemaVersion: number;
  vmId: string;
  tables: Tables;
}

/**
 * What changed in a VM's state between two generations. `baseGen === null`
 * means a full snapshot: the receiver replaces its copy with `upserts`.
 * Upserts are row blocks (columns, see row-block.ts); deletions are keys
 * (see TableSpec.keyFields).
 */
export interface StateDelta {
  vmId: string;
  baseGen: number | null;
  gen: number;
  upserts: Blocks;
  deletes: Partial<Record<TableName, string[]>>;
  /** On a full snapshot's chunks: the rows the whole snapshot holds per table (a receiver sizes its tables once). */
  sizes?: Partial<Record<TableName, number>>;
}

export function emptyTables(): Tables {
  return { ports: [], acls: [], qos: [], mirrors: [], monitoring: [], fdb: [], neighbours: [], conntrack: [], counters: [] };
}

/**
 * A delta as a read hands it to the sender: the same, but its upserts may be
 * live tables read a slice at a time (see `RowSource`) instead of blocks.
 */
export interface SourceDelta extends Omit<StateDelta, "upserts"> {
  upserts: Sources;
}

/** Number of rows (upserts plus deletes) a delta carries. */
export function deltaSize(delta: StateDelta): number {
  let n = 0;
  for (const t of TABLE_NAMES) n += (delta.upserts[t]?.length ?? 0) + (delta.deletes[t]?.length ?? 0);
  return n;
}

/** Row counts per table, for summaries. */
export function tableCounts(tables: Partial<Record<TableName, { length: number }>>): Record<TableName, number> {
  const out = {} as Record<TableName, number>;
  for (const t of TABLE_NAMES) out[t] = tables[t]?.length ?? 0;
  return out;
}
