/**
 * The durable record of a migration, as kept in JetStream KV, and the VM
 * ownership record. The coordinator writes them; the one exception is the
 * COMMITTED record, which the coordinator builds and the destination writes
 * in the freeze window (driver.ts, agent/record-commit.ts).
 */
import { randomBytes } from "node:crypto";
import { isPhase, type Phase } from "./phases.js";

export interface MigrationOptions {
  /** Longest the VM's state may stay frozen, ms. Default 2000. */
  freezeBudgetMs: number;
  /** Most delta rounds after the full copy. Default 8. */
  maxPrecopyRounds: number;
  /** Pre-copy stops once a round carries at most this many rows. Default 2000. */
  convergeRows: number;
  /** Freeze first, copy everything while frozen. Default false. */
  stopAndCopy: boolean;
  /** Overall deadline, ms. Default 300000. */
  timeoutMs: number;
}

export const DEFAULT_OPTIONS: MigrationOptions = { freezeBudgetMs: 2000, maxPrecopyRounds: 8, convergeRows: 2000, stopAndCopy: false, timeoutMs: 300_000 };

export interface Progress {
  round: number;
  rowsSent: number;
  bytesSent: number;
  chunksSent: number;
  lastRoundRows: number;
  finalRows: number;
  freezeWindowMs: number;
  /** The freeze window by the agents' clocks: the source's freeze to the destination's activation; 0 when unknown. */
  stateFrozenMs: number;
  precopyMs: number;
  totalMs: number;
  /**
   * The source's digest at its last round. Empty in a record the destination
   * committed until the coordinator hears the final round's digest (the
   * destination checked it before committing); a coordinator that rolls
   * such a record forward asks the frozen source instead.
   */
  srcDigest: string;
  dstDigest: string;
}

export interface PhaseChange {
  phase: Phase;
  atMs: number;
  note?: string;
}

export interface MigrationRecord {
  id: string;
  vmId: string;
  src: string;
  dst: string;
  phase: Phase;
  /** Ownership epoch before the migration; the destination gets epoch + 1. */
  epoch: number;
  /** "auto": runs to DONE; "phased": waits for Switchover and Complete. */
  mode: "auto" | "phased";
  options: MigrationOptions;
  progress: Progress;
  history: PhaseChange[];
  error?: { code: string; message: string };
  /** Coordinator driving it, and until when its lease holds (ms since epoch). */
  driver: string;
  leaseUntil: number;
  /** Generation the destination holds after the last sealed round. */
  sealedGen: number | null;
  /** Number of the next transfer round (seqs must not repeat within a migration). */
  nextRound: number;
  /** Phased mode: what the caller asked for so far. */
  switchoverRequested: boolean;
  completeRequested: boolean;
  createdAtMs: number;
  updatedAtMs: number;
}

/** Who owns a VM's state. `migrationId` locks the VM to one migration at a time. */
export interface VmRecord {
  vmId: string;
  owner: string;
  epoch: number;
  migrationId: string | null;
}

export function newMigrationId(): string {
  return `m-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}

export function emptyProgress(): Progress {
  return { round: 0, rowsSent: 0, bytesSent: 0, chunksSent: 0, lastRoundRows: 0, finalRows: 0, freezeWindowMs: 0, stateFrozenMs: 0, precopyMs: 0, totalMs: 0, srcDigest: "", dstDigest: "" };
}

/** Checks a record read from KV; null if it is not a well-formed record. */
export function parseMigrationRecord(data: Uint8Array): MigrationRecord | null {
  try {
    const r = JSON.parse(new TextDecoder().decode(data)) as MigrationRecord;
    const ok = typeof r.id === "string" && typeof r.vmId === "string" && typeof r.src === "string" && typeof r.dst === "string" &&
      isPhase(r.phase) && Number.isSafeInteger(r.epoch) && (r.mode === "auto" || r.mode === "phased") &&
      typeof r.options === "object" && typeof r.progress === "object" && Array.isArray(r.history) && typeof r.driver === "string";
    return ok ? r : null;
  } catch {
    return null;
  }
}

export function parseVmRecord(data: Uint8Array): VmRecord | null {
  try {
    const r = JSON.parse(new TextDecoder().decode(data)) as VmRecord;
    return typeof r.vmId === "string" && typeof r.owner === "string" && Number.isSafeInteger(r.epoch) && (r.migrationId === null || typeof r.migrationId === "string") ? r : null;
  } catch {
    return null;
  }
}

export function encodeRecord(r: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r));
}
