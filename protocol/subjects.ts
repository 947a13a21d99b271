/**
 * Every NATS subject netmig uses, in one place. Subjects are versioned and
 * namespaced by host so each host's credentials can be limited to its own.
 *
 *   netmig.v1.agent.<hostId>.<op>    request/reply commands to one agent
 *   netmig.v1.agent.<hostId>.chunk   the data path: state chunks into an agent
 *   netmig.v1.agent.<hostId>.chunk-final   the same for a final round (sent inside
 *                                    a freeze window): served ahead of bulk chunks
 *   netmig.v1.hb.<hostId>            agent heartbeats (published every interval)
 *   netmig.v1.events.<migrationId>   migration progress events (coordinator)
 */
import { BadRequestError } from "./errors.js";
import type { AgentOp } from "./agent-api.js";

export const SUBJECT_PREFIX = "netmig.v1";

/**
 * The JetStream KV buckets: migration records (the coordinator's; a
 * destination writes the commit there, see agent/record-commit.ts) and VM
 * ownership.
 */
export const KV_BUCKETS = { migrations: "netmig-migrations", vms: "netmig-vms" } as const;

/** The last subject token of bulk chunks and of final-round chunks. */
export const CHUNK_OP = "chunk";
export const FINAL_CHUNK_OP = "chunk-final";

const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

/** Checks a host id: it becomes a subject token, so no dots, spaces or wildcards. */
export function checkHostId(hostId: unknown, where = "hostId"): string {
  if (typeof hostId !== "string" || !HOST_ID.test(hostId)) {
    throw new BadRequestError(`${where} must be 1-63 characters of letters, digits, '_' or '-' (got ${JSON.stringify(hostId)?.slice(0, 80)})`);
  }
  return hostId;
}

export const subjects = {
  agentOp: (hostId: string, op: AgentOp) => `${SUBJECT_PREFIX}.agent.${hostId}.${op}`,
  /** Where a round's chunks go: a final round's on their own subject, which the agent serves first. */
  agentChunk: (hostId: string, final = false) => `${SUBJECT_PREFIX}.agent.${hostId}.${final ? FINAL_CHUNK_OP : CHUNK_OP}`,
  /** Wildcard an agent subscribes to for all its commands. */
  agentAll: (hostId: string) => `${SUBJECT_PREFIX}.agent.${hostId}.*`,
  heartbeat: (hostId: string) => `${SUBJECT_PREFIX}.hb.${hostId}`,
  heartbeatAll: `${SUBJECT_PREFIX}.hb.*`,
  events: (migrationId: string) => `${SUBJECT_PREFIX}.events.${migrationId}`,
  eventsAll: `${SUBJECT_PREFIX}.events.*`,
} as const;

/** The last token of an agent subject (the op), or null if it is not one. */
export function opOfSubject(subject: string): string | null {
  const parts = subject.split(".");
  return parts.length === 5 && parts[2] === "agent" ? parts[4]! : null;
}
