/**
 * The destination's half of a commit order (protocol/agent-api.ts
 * CommitOrder): one compare-and-set of the migration's record in the
 * coordinator's JetStream KV bucket, so the destination can commit the
 * moment the final round is sealed, without a round trip through the source
 * and the coordinator inside the freeze window.
 *
 * The outcome decides what the caller may do: a written record means the
 * migration is committed and the staged state may go live; a refused write
 * (the record changed since the freeze: an abort or a takeover won) means
 * it must not; any other failure leaves the outcome unknown, and the
 * destination must not activate either: the coordinator finds out from the
 * record and rolls forward or aborts.
 */
import type { KV, NatsConnection } from "nats";
import type { CommitOrder } from "../protocol/agent-api.js";
import { ConflictError, UnavailableError, type ErrorContext } from "../protocol/errors.js";

/** JetStream's error code for a compare-and-set on a stale revision. */
const WRONG_LAST_SEQUENCE = 10071;

export class RecordCommitter {
  private readonly buckets = new Map<string, Promise<KV>>();

  constructor(private readonly nc: NatsConnection) {}

  /**
   * Binds the bucket ahead of the first commit (no request to the server),
   * so loading and compiling the KV client is not done inside a freeze
   * window.
   */
  warm(bucket: string): void {
    void this.bucket(bucket).catch(() => undefined);
  }

  /** Writes the order's record; resolves to its new revision. */
  async commit(order: CommitOrder, context: ErrorContext): Promise<number> {
    const kv = await this.bucket(order.bucket);
    try {
      return await kv.update(order.key, order.record, order.revision);
    } catch (err) {
      const code = (err as { api_error?: { err_code?: number } }).api_error?.err_code;
      if (code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test((err as Error).message)) {
        throw new ConflictError(`the record of migration ${order.key} changed after revision ${order.revision} (an abort or another coordinator): commit refused, the staged state stays staged`, context, { cause: err });
      }
      throw new UnavailableError(`could not write the commit of migration ${order.key} to KV bucket ${order.bucket} (${(err as Error).message}); not activated`, context, { cause: err });
    }
  }

  private bucket(name: string): Promise<KV> {
    let kv = this.buckets.get(name);
    if (!kv) {
      kv = this.nc.jetstream().views.kv(name, { bindOnly: true });
      this.buckets.set(name, kv);
      kv.catch(() => this.buckets.delete(name));
    }
    return kv;
  }
}
