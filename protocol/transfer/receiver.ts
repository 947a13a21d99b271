/**
 * Receives rounds of chunks into a staging target and checks each round's
 * seal against the target's own digest. One receiver per migration.
 *
 * Rules: a round starting with `baseGen === null` (a full snapshot) resets
 * the target, unless it is the receiver's first round: a receiver starts on
 * a fresh target (the agent's prepare makes one, and may have made room in
 * it for the round); a delta round must start from the generation the last sealed
 * round ended at. A full round sealed without a digest (read from a VM that
 * kept changing) is taken as it is: the next round's digest checks it. Chunks already applied (same seq) are acknowledged and
 * skipped; chunks of an older round are acknowledged and ignored. A final
 * seal that carries a commit order is committed through the target once its
 * digest checks out; the answer to a repeated seal repeats the outcome.
 */
import { createInbox, type NatsConnection } from "nats";
import { decodeEnvelope } from "../codec/envelope.js";
import { asNetmigError, BadRequestError, DigestMismatchError } from "../errors.js";
import { encodeReply } from "../rpc.js";
import type { StateDelta } from "../state/model.js";
import { digestDiff } from "../state/digest.js";
import type { CommitOrder, CommitResult } from "../agent-api.js";
import { CHUNK_KIND, parseChunk, parseSeal, SEAL_KIND, type SealBody, type SealReply } from "./chunks.js";

export interface StageTarget {
  /** Drops everything received so far (a full snapshot follows rounds before it). */
  reset(): Promise<void>;
  /** Applies upserts and deletes; `zones` is the sender's zone per ifaceId. */
  apply(delta: StateDelta, zones: Record<string, number>): Promise<void>;
  /** The target's digest now. */
  digest(): Promise<SealReply>;
  /** Called after the final round's seal checked out. */
  sealed(): Promise<void>;
  /** Carries out a final seal's commit order (commit, then activate); throws when refused. */
  commit(order: CommitOrder): Promise<CommitResult>;
}

export class RoundReceiver {
  private round = -1;
  /** Generation at the end of the last sealed round (null before the first). */
  private sealedGen: number | null = null;
  private seen = new Set<number>();
  private chunksThisRound = 0;
  private lastSeal: { seq: number; reply: SealReply } | null = null;
  /** Rows applied across all rounds. */
  rows = 0;
  /** Rounds sealed (a repeated seal's answer does not count). */
  sealedRounds = 0;
  finalSealed = false;

  constructor(private readonly target: StageTarget, private readonly vmId: string) {}

  private async beginRound(round: number, baseGen: number | null): Promise<void> {
    if (baseGen === null) {
      if (this.round >= 0) await this.target.reset();
    } else if (baseGen !== this.sealedGen) {
      throw new BadRequestError(`round ${round} is a delta from generation ${baseGen}, but the last sealed round ended at ${this.sealedGen ?? "nothing"}: a full snapshot is needed`, { vmId: this.vmId });
    }
    this.round = round;
    this.seen.clear();
    this.chunksThisRound = 0;
    this.finalSealed = false;
  }

  /** A message of a round, by its envelope's kind: a chunk or a seal. */
  onMessage(kind: string, seq: number, body: unknown): Promise<unknown> {
    if (kind === CHUNK_KIND) return this.onChunk(seq, body);
    if (kind === SEAL_KIND) return this.onSeal(seq, body);
    throw new BadRequestError(`unexpected message kind "${kind}" where chunks and seals go`, { vmId: this.vmId });
  }

  /** A chunk; one that carries `seal` is a whole round in one message, answered with the seal reply. */
  async onChunk(seq: number, body: unknown): Promise<{ seq: number; applied: boolean; seal?: SealReply }> {
    const { chunk, delta, seal } = parseChunk(body, this.vmId);
    if (this.lastSeal?.seq === seq) return { seq, applied: false, seal: this.lastSeal.reply };
    if (chunk.round < this.round) return { seq, applied: false };
    if (chunk.round > this.round) await this.beginRound(chunk.round, chunk.baseGen);
    if (this.seen.has(seq)) return { seq, applied: false };
    await this.target.apply(delta, chunk.zones);
    this.seen.add(seq);
    this.chunksThisRound++;
    for (const list of Object.values(delta.upserts)) this.rows += list?.length ?? 0;
    for (const list of Object.values(delta.deletes)) this.rows += list?.length ?? 0;
    if (!seal) return { seq, applied: true };
    return { seq, applied: true, seal: await this.sealRound(seq, { ...seal, chunks: this.chunksThisRound }) };
  }

  async onSeal(seq: number, body: unknown): Promise<SealReply> {
    if (this.lastSeal?.seq === seq) return this.lastSeal.reply;
    const seal = parseSeal(body);
    if (seal.round < this.round) throw new BadRequestError(`seal of round ${seal.round} arrived after round ${this.round} began`, { vmId: this.vmId });
    if (seal.round > this.round) await this.beginRound(seal.round, seal.baseGen);
    return this.sealRound(seq, seal);
  }

  private async sealRound(seq: number, seal: SealBody): Promise<SealReply> {
    if (seal.chunks !== this.chunksThisRound) {
      throw new BadRequestError(`round ${seal.round} was sealed after ${seal.chunks} chunks but ${this.chunksThisRound} arrived`, { vmId: this.vmId });
    }
    const mine = await this.target.digest();
    // "": a full round read from a changing VM, exact only once the next round is in (see chunks.ts).
    if (seal.digest !== "" && mine.digest !== seal.digest) {
      throw new DigestMismatchError(`staged state differs from the source at generation ${seal.gen}: ${digestDiff(seal.tables, mine.tables).join(", ") || "digest differs"}`, { vmId: this.vmId });
    }
    this.sealedGen = seal.gen;
    this.sealedRounds++;
    if (seal.final) {
      await this.target.sealed();
      this.finalSealed = true;
    }
    const reply: SealReply = seal.final && seal.commit ? { ...mine, committed: await this.target.commit(seal.commit) } : mine;
    this.lastSeal = { seq, reply };
    return reply;
  }
}

/**
 * Serves a receiver on a fresh inbox while `use(inbox)` runs: a sender
 * (an agent's export) sends its chunks and seal there as requests.
 */
export async function receiveOnInbox<T>(nc: NatsConnection, receiver: RoundReceiver, use: (inbox: string) => Promise<T>): Promise<T> {
  const inbox = createInbox();
  const sub = nc.subscribe(inbox, {
    callback: (err, msg) => {
      if (err) return;
      void (async () => {
        try {
          const env = decodeEnvelope(msg.data);
          msg.respond(encodeReply(true, await receiver.onMessage(env.kind, env.seq, env.body)));
        } catch (e) {
          msg.respond(encodeReply(false, asNetmigError(e).toWire()));
        }
      })();
    },
  });
  try {
    return await use(inbox);
  } finally {
    sub.unsubscribe();
  }
}
