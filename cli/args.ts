/** Small helpers over node:util parseArgs for the netmig command. */
import { BadRequestError } from "../protocol/errors.js";

export type Flags = Record<string, string | boolean | string[] | undefined>;

export function str(flags: Flags, name: string, fallback?: string): string {
  const v = flags[name];
  if (typeof v === "string" && v.length > 0) return v;
  if (fallback !== undefined) return fallback;
  throw new BadRequestError(`--${name} is required`);
}

export function optStr(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" && v.length > 0 ? v : undefined;
}

export function int(flags: Flags, name: string, fallback?: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = flags[name];
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new BadRequestError(`--${name} is required`);
  }
  const n = typeof v === "string" ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new BadRequestError(`--${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  return n;
}

export function optInt(flags: Flags, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return flags[name] === undefined ? undefined : int(flags, name, undefined, min, max);
}
