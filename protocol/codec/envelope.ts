/**
 * The envelope every netmig NATS message travels in:
 *   { v, kind, migrationId, vmId, epoch, seq, body }
 * `kind` names the body's type (an agent op, "chunk", "reply", "event"...).
 */
import { BadRequestError, UnsupportedVersionError } from "../errors.js";
import { DEFAULT_MAX_MESSAGE_BYTES, pack, unpack } from "./packr.js";

export const WIRE_VERSION = 1;

export interface Envelope<B = unknown> {
  v: number;
  kind: string;
  migrationId: string;
  vmId: string;
  epoch: number;
  seq: number;
  body: B;
}

export function encodeEnvelope<B>(e: Omit<Envelope<B>, "v">): Uint8Array {
  return pack({ v: WIRE_VERSION, kind: e.kind, migrationId: e.migrationId, vmId: e.vmId, epoch: e.epoch, seq: e.seq, body: e.body });
}

/** Decodes and checks an envelope; the body is still unchecked (`unknown`). */
export function decodeEnvelope(bytes: Uint8Array, maxBytes = DEFAULT_MAX_MESSAGE_BYTES): Envelope<unknown> {
  const raw = unpack(bytes, maxBytes);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw) || raw instanceof Uint8Array) {
    throw new BadRequestError("message is not a netmig envelope (expected a map)");
  }
  const e = raw as Record<string, unknown>;
  if (e.v !== WIRE_VERSION) throw new UnsupportedVersionError(`envelope version ${JSON.stringify(e.v)} is not supported (this netmig speaks ${WIRE_VERSION})`);
  if (typeof e.kind !== "string" || e.kind.length === 0 || e.kind.length > 64) throw new BadRequestError("envelope kind must be a non-empty string");
  if (typeof e.migrationId !== "string" || e.migrationId.length > 128) throw new BadRequestError("envelope migrationId must be a string");
  if (typeof e.vmId !== "string" || e.vmId.length > 128) throw new BadRequestError("envelope vmId must be a string");
  if (!isUint(e.epoch)) throw new BadRequestError("envelope epoch must be a non-negative integer");
  if (!isUint(e.seq)) throw new BadRequestError("envelope seq must be a non-negative integer");
  return { v: e.v, kind: e.kind, migrationId: e.migrationId, vmId: e.vmId, epoch: e.epoch as number, seq: e.seq as number, body: e.body };
}

function isUint(v: unknown): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}
