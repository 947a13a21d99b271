/**
 * Request/reply over NATS with netmig envelopes: one call shape for every
 * agent command, with a deadline and errors rebuilt from the wire.
 */
import type { NatsConnection, Msg } from "nats";
import { ErrorCode, fromWire, NetmigError, TimeoutError, UnavailableError, type WireError } from "./errors.js";
import { decodeEnvelope, encodeEnvelope } from "./codec/envelope.js";

export interface CallHeader {
  migrationId: string;
  vmId: string;
  epoch: number;
  seq?: number;
}

/** Sends an envelope and returns the reply's result, or throws the remote error. */
export async function call<R>(nc: NatsConnection, subject: string, kind: string, header: CallHeader, body: unknown, timeoutMs: number): Promise<R> {
  const data = encodeEnvelope({ kind, migrationId: header.migrationId, vmId: header.vmId, epoch: header.epoch, seq: header.seq ?? 0, body });
  let msg: Msg;
  try {
    msg = await nc.request(subject, data, { timeout: timeoutMs });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "503") throw new UnavailableError(`nobody is serving ${subject} (is the agent running?)`, { vmId: header.vmId, migrationId: header.migrationId });
    // Made only on a timeout: an Error per call (its stack trace) costs more than the call itself.
    if (code === "TIMEOUT") throw new TimeoutError(`no reply to ${kind} on ${subject} within ${timeoutMs} ms`, { vmId: header.vmId, migrationId: header.migrationId });
    throw new UnavailableError(`request ${kind} on ${subject} failed: ${(err as Error).message}`, { vmId: header.vmId }, { cause: err });
  }
  return parseReply<R>(msg.data);
}

export function parseReply<R>(data: Uint8Array): R {
  const env = decodeEnvelope(data);
  const body = env.body as { ok?: unknown; result?: unknown; error?: WireError } | null;
  if (body && body.ok === true) return body.result as R;
  if (body && body.ok === false && body.error && typeof body.error === "object") throw fromWire(body.error);
  throw new NetmigError(ErrorCode.Internal, "malformed reply (neither ok nor error)");
}

export function encodeReply(ok: true, result: unknown): Uint8Array;
export function encodeReply(ok: false, error: WireError): Uint8Array;
export function encodeReply(ok: boolean, payload: unknown): Uint8Array {
  return encodeEnvelope({ kind: "reply", migrationId: "", vmId: "", epoch: 0, seq: 0, body: ok ? { ok: true, result: payload ?? null } : { ok: false, error: payload } });
}
