/**
 * Validation of rows against the table descriptors. Used on everything that
 * arrives from outside: decoded wire chunks, JSON documents, gRPC imports.
 * Errors name the table, the row index and the field.
 */
import { InvalidStateError } from "../errors.js";
import { isIp } from "./ip.js";
import { TABLES, type FieldSpec, type TableName } from "./tables.js";

const INT_MAX: Record<string, number> = { u8: 0xff, u16: 0xffff, u32: 0xffffffff };

/** True for a plain JSON-like value: no class instances, no prototype tricks. */
export function isPlainJson(v: unknown, depth = 0): boolean {
  if (depth > 8) return false;
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every((x) => isPlainJson(x, depth + 1));
  if (typeof v === "object") {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    for (const k of Object.keys(v as object)) {
      if (k === "__proto__" || k === "constructor" || k === "prototype") return false;
      if (!isPlainJson((v as Record<string, unknown>)[k], depth + 1)) return false;
    }
    return true;
  }
  return false;
}

/** Checks one field value; returns an error message or null. */
export function checkField(spec: FieldSpec, v: unknown): string | null {
  switch (spec.type) {
    case "str":
      return typeof v === "string" && v.length <= 4096 ? null : "must be a string of at most 4096 characters";
    case "ip":
      return isIp(v) ? null : "must be an IPv4 or IPv6 address";
    case "bool":
      return typeof v === "boolean" ? null : "must be a boolean";
    case "f64":
      return typeof v === "number" && Number.isFinite(v) ? null : "must be a finite number";
    case "json":
      return isPlainJson(v) ? null : "must be plain JSON data";
    default: {
      const max = INT_MAX[spec.type] ?? 0;
      return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max ? null : `must be an integer from 0 to ${max}`;
    }
  }
}

const DEFAULTS: Record<string, unknown> = { str: "", ip: "::", u8: 0, u16: 0, u32: 0, f64: 0, bool: false };

/**
 * Validates a row and returns a clean copy holding exactly the declared
 * fields (unknown fields are an error). With `fillLocal`, missing host-local
 * fields get their zero value (documents may omit them).
 */
export function normalizeRow(table: TableName, raw: unknown, where: string, fillLocal = false): Record<string, unknown> {
  const spec = TABLES[table];
  if (raw === null || typeof raw !== "object" || Array.isArray(raw) || Object.getPrototypeOf(raw) !== Object.prototype) {
    throw new InvalidStateError(`${where}: a ${table} row must be an object`);
  }
  const src = raw as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of spec.fields) {
    let v = src[field.name];
    if (v === undefined && field.local && fillLocal) v = DEFAULTS[field.type];
    if (v === undefined) throw new InvalidStateError(`${where}: ${table}.${field.name} is missing`);
    const problem = checkField(field, v);
    if (problem) throw new InvalidStateError(`${where}: ${table}.${field.name} ${problem}`);
    out[field.name] = v;
  }
  for (const k of Object.keys(src)) {
    if (!spec.fields.some((fl) => fl.name === k)) throw new InvalidStateError(`${where}: ${table} has no field "${k}"`);
  }
  return out;
}
