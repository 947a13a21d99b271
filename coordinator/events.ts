/**
 * Migration progress events, published on netmig.v1.events.<migrationId> so
 * any coordinator, CLI or observer can follow a migration. Each event carries
 * the whole (small) migration record, so a watcher never needs to merge.
 */
import type { NatsConnection } from "nats";
import { encodeEnvelope } from "../protocol/codec/envelope.js";
import { subjects } from "../protocol/subjects.js";
import { isTerminal } from "./phases.js";
import type { MigrationRecord } from "./record.js";

export interface MigrationEvent {
  migration: MigrationRecord;
  message: string;
  atMs: number;
  /** The migration has ended (DONE, ABORTED or IN_DOUBT). */
  done: boolean;
}

export function publishEvent(nc: NatsConnection, r: MigrationRecord, message: string): void {
  const event: MigrationEvent = { migration: r, message, atMs: Date.now(), done: isTerminal(r.phase) };
  try {
    nc.publish(subjects.events(r.id), encodeEnvelope({ kind: "event", migrationId: r.id, vmId: r.vmId, epoch: r.epoch, seq: r.history.length, body: event }));
  } catch {
    // A closed connection drops events; the record in KV stays authoritative.
  }
}
