/**
 * A major garbage collection where its pause costs no freeze window: at
 * the end of a big pre-copy round, before the round is answered; and
 * before a destination touches a big reservation for a stop-and-copy.
 *
 * Why: V8 starts a major collection when the old generation plus the
 * ArrayBuffer memory allocated since the last one outgrows a limit, and
 * an agent's rounds allocate mostly ArrayBuffers (chunks, the staged
 * table's columns). A big round therefore leaves a collection due, and it
 * used to land a few milliseconds later in the window that follows the
 * round, on either host (docs/performance.md). Collecting at the end of
 * the round resets that count while nothing waits for the agent but the
 * round itself.
 *
 * Where: inside the round, before its answer (the destination before it
 * answers the seal, the source before it answers the transfer), so the
 * coordinator's host gate, which keeps freeze windows off hosts with a
 * round in flight, keeps them off the collection too. Final rounds never
 * collect: they are the window. Nor does a round that ends while a window
 * is open on the agent anyway (a phased switchover does not wait for
 * rounds in flight, and the gate's wait is bounded).
 *
 * Before a reservation (the memory backend's `reserveStaging`, at the
 * prepare of a stop-and-copy): the tables a host released or dropped are
 * garbage until a major collection frees them, and the reservation's pages
 * become resident at once when touched. Collecting first keeps a dead
 * table and its successor from being resident together.
 *
 * Cost: one full, atomic collection of the agent's heap (~15 ms at a
 * 100k-entry round here), paid by the pre-copy's duration or the prepare.
 * The dataplane does not stop with the agent's event loop; its commands wait.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** Rounds of at least this many bytes on the wire end with a collection (2 MiB: ~40k conntrack entries). */
export const DEFAULT_COLLECT_AFTER_ROUND_BYTES = 2 * 1024 * 1024;

export type Collect = () => void;

let exposed: Collect | null | undefined;

/**
 * V8's `gc()` (a full collection): the one the process was started with
 * (`--expose-gc`), or else exposed now through V8's flags, which a new
 * context picks up. null where V8 will not expose it: then nothing is
 * collected, and rounds go on as before.
 */
export function majorCollection(): Collect | null {
  if (exposed !== undefined) return exposed;
  const given = (globalThis as { gc?: unknown }).gc;
  if (typeof given === "function") return (exposed = given as Collect);
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as unknown;
    exposed = typeof gc === "function" ? (gc as Collect) : null;
  } catch {
    exposed = null;
  }
  return exposed;
}

export class RoundCollector {
  /** `minBytes` 0: never collect. */
  constructor(readonly minBytes = DEFAULT_COLLECT_AFTER_ROUND_BYTES, private readonly collect: Collect | null = null) {}

  /**
   * After a round that moved `bytes`: collects if it was big enough, not
   * final, and no freeze window is open on this agent (`windowOpen`, asked
   * only when the rest holds). Returns the pause in ms, or null.
   */
  afterRound(bytes: number, final: boolean, windowOpen: () => boolean): number | null {
    return final ? null : this.beforeTouch(bytes, windowOpen);
  }

  /** Before touching a reservation of `bytes`: the same rule as for a round that is not final. */
  beforeTouch(bytes: number, windowOpen: () => boolean): number | null {
    if (this.minBytes <= 0 || bytes < this.minBytes || windowOpen()) return null;
    const gc = this.collect ?? majorCollection();
    if (!gc) return null;
    const started = performance.now();
    gc();
    return performance.now() - started;
  }
}
