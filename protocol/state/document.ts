/**
 * The JSON document form of a VM's state, for `netmig vm export|import`, the
 * gRPC Export/ImportVmState calls, and for people. See docs/state-document.md.
 *
 *   { "schemaVersion": 1, "vmId": "...", "digest": "...",
 *     "tables": { "ports": [ {...} ], "acls": [...], ..., "conntrack": [...] } }
 *
 * Tables may be omitted (empty); host-local fields may be omitted (the
 * importing host assigns them). `digest` is informational on import.
 */
import { BadRequestError, InvalidStateError, UnsupportedVersionError } from "../errors.js";
import { StateDigest } from "./digest.js";
import { emptyTables, SCHEMA_VERSION, type Tables, type VmState } from "./model.js";
import { isTableName, keyOf, TABLE_NAMES, type TableName } from "./tables.js";
import { normalizeRow } from "./validate.js";

export interface StateDocument {
  schemaVersion: number;
  vmId: string;
  digest: string;
  tables: Tables;
}

export function toDocument(state: VmState): StateDocument {
  return { schemaVersion: state.schemaVersion, vmId: state.vmId, digest: StateDigest.of(state.tables).toString(), tables: state.tables };
}

const VM_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Checks a VM id (domain UUID or name); throws a BadRequestError naming the problem. */
export function checkVmId(vmId: unknown, where = "vmId"): string {
  if (typeof vmId !== "string" || !VM_ID.test(vmId)) {
    throw new BadRequestError(`${where} must be 1-128 characters of letters, digits, '_', '.' or '-' (got ${JSON.stringify(vmId)?.slice(0, 80)})`);
  }
  return vmId;
}

/** Parses and validates a state document (text or already-parsed JSON). */
export function parseDocument(input: string | unknown): VmState {
  let doc: unknown = input;
  if (typeof input === "string") {
    try {
      doc = JSON.parse(input);
    } catch (err) {
      throw new InvalidStateError(`state document is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new InvalidStateError("state document must be a JSON object");
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) {
    if (!["schemaVersion", "vmId", "digest", "tables"].includes(k)) throw new InvalidStateError(`state document has unknown field "${k}"`);
  }
  if (d.schemaVersion !== SCHEMA_VERSION) {
    throw new UnsupportedVersionError(`state document schemaVersion ${JSON.stringify(d.schemaVersion)} is not supported (this netmig reads ${SCHEMA_VERSION})`);
  }
  const vmId = checkVmId(d.vmId, "state document vmId");
  const rawTables = d.tables ?? {};
  if (rawTables === null || typeof rawTables !== "object" || Array.isArray(rawTables)) throw new InvalidStateError("state document tables must be an object");
  const tables = emptyTables();
  for (const name of Object.keys(rawTables)) {
    if (!isTableName(name)) throw new InvalidStateError(`state document has unknown table "${name}" (known: ${TABLE_NAMES.join(", ")})`);
    const rows = (rawTables as Record<string, unknown>)[name];
    if (!Array.isArray(rows)) throw new InvalidStateError(`state document table "${name}" must be an array`);
    const seen = new Set<string>();
    const out: unknown[] = [];
    rows.forEach((raw, i) => {
      const row = normalizeRow(name, raw, `tables.${name}[${i}]`, true);
      const key = keyOf(name, row);
      if (seen.has(key)) throw new InvalidStateError(`tables.${name}[${i}]: duplicate entry (key ${key})`);
      seen.add(key);
      out.push(row);
    });
    (tables as Record<TableName, unknown[]>)[name] = out;
  }
  return { schemaVersion: SCHEMA_VERSION, vmId, tables };
}
