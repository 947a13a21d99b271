/**
 * The phases of a migration and the recovery table, in one place.
 *
 *   PENDING → PRECOPY → FROZEN → TRANSFERRED → COMMITTED → ACTIVATED → RELEASED → DONE
 *      └──────────┴─────────┴───────────┴──▶ ABORTING → ABORTED     (before COMMITTED only)
 *
 *  PENDING      recorded; the VM is locked to this migration; nothing moved yet.
 *  PRECOPY      the source streams a full snapshot, then rounds of deltas, into a
 *               staging area on the destination (installed, not live).
 *  FROZEN       the source refuses changes to the VM's state; the final delta flows.
 *  TRANSFERRED  the destination holds exactly the source's state (digests match).
 *  COMMITTED    one compare-and-set moved ownership to the destination with
 *               epoch + 1: the point of no return.
 *  ACTIVATED    the destination's copy is live.
 *  RELEASED     the source deleted its copy (a tombstone with the epoch stays).
 *  DONE         finished; the VM is unlocked.
 *  ABORTING     undoing: the destination drops what it staged, the source thaws.
 *  ABORTED      undone; the state is whole on the source.
 *  IN_DOUBT     the record could not be read or trusted: raised, never guessed.
 */
export const Phase = {
  Pending: "PENDING",
  Precopy: "PRECOPY",
  Frozen: "FROZEN",
  Transferred: "TRANSFERRED",
  Committed: "COMMITTED",
  Activated: "ACTIVATED",
  Released: "RELEASED",
  Done: "DONE",
  Aborting: "ABORTING",
  Aborted: "ABORTED",
  InDoubt: "IN_DOUBT",
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

export const ALL_PHASES: readonly Phase[] = Object.values(Phase);

const ORDER: readonly Phase[] = [Phase.Pending, Phase.Precopy, Phase.Frozen, Phase.Transferred, Phase.Committed, Phase.Activated, Phase.Released, Phase.Done];

/** Terminal phases: the migration will not move again. */
export function isTerminal(p: Phase): boolean {
  return p === Phase.Done || p === Phase.Aborted || p === Phase.InDoubt;
}

/** True once ownership has moved (COMMITTED or later on the main line). */
export function isCommitted(p: Phase): boolean {
  const i = ORDER.indexOf(p);
  return i >= ORDER.indexOf(Phase.Committed);
}

/** What a coordinator does with an unfinished migration it takes over. */
export type Recovery = "abort" | "roll-forward" | "none";

/** The recovery table: before COMMITTED abort, after it roll forward. */
export function recoveryFor(p: Phase): Recovery {
  if (isTerminal(p)) return "none";
  if (p === Phase.Aborting) return "abort";
  return isCommitted(p) ? "roll-forward" : "abort";
}

export function isPhase(v: unknown): v is Phase {
  return typeof v === "string" && (ALL_PHASES as readonly string[]).includes(v);
}
