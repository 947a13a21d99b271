/**
 * Drives one migration through its phases (see phases.ts), recording every
 * phase change in KV with compare-and-set, and applies the recovery table
 * when it takes over a migration another coordinator (or an earlier run of
 * this one) left unfinished.
 *
 * Failure rule: before COMMITTED any failure aborts (the destination drops
 * what it staged, the source thaws); after COMMITTED every step is retried
 * until it succeeds or the migration's deadline passes (it is then left for
 * the next sweep, never undone).
 *
 * The commit itself is written by the destination, in the freeze window: the
 * driver builds the COMMITTED record before it freezes the source and hands
 * it down with the final round (a CommitOrder, compare-and-set on the FROZEN
 * record's revision). An abort is a compare-and-set on the same revision, so
 * exactly one of them lands; a driver whose abort loses finds the commit in
 * the record and rolls forward.
 */
import {
  ConflictError, ErrorCode, FreezeBudgetExceededError, NetmigError, NotStagedError, asNetmigError, TimeoutError,
} from "../protocol/errors.js";
import type { Logger } from "../protocol/log.js";
import type { CommitOrder, CommitResult, TableSizes, TransferReply } from "../protocol/agent-api.js";
import { KV_BUCKETS } from "../protocol/subjects.js";
import type { AgentClient, Target } from "./agent-client.js";
import type { HostGate } from "./host-gate.js";
import { isUnreadable, type Journal, type Versioned } from "./journal.js";
import { isCommitted, isTerminal, Phase, recoveryFor } from "./phases.js";
import { encodeRecord, type MigrationRecord, type Progress } from "./record.js";

export interface DriverDeps {
  journal: Journal;
  agents: AgentClient;
  log: Logger;
  coordinatorId: string;
  /** How long a driver's claim on a migration lasts without renewal, ms. */
  leaseMs: number;
  /** Called after every recorded change and progress step. */
  publish: (r: MigrationRecord, message: string) => void;
  /** Orders bulk rounds and freeze windows on shared hosts (see host-gate.ts). */
  gate: HostGate;
}

/** Thrown inside the driver when the record was taken by someone else. */
class LostLease extends Error {}

/** Thrown inside the driver when an abort was requested before commit. */
class AbortRequested extends Error {}

/**
 * Fault injection for the recovery tests: a coordinator started with
 * NETMIG_FAULT_CRASH_AT=before:<PHASE> or after:<PHASE> kills itself
 * (SIGKILL) just before or just after recording that phase;
 * during:FROZEN kills it a few milliseconds after it sent the freeze
 * command, while the freeze window runs without it. Unset in production.
 */
const CRASH_AT = process.env.NETMIG_FAULT_CRASH_AT ?? null;

function crashPoint(when: "before" | "after" | "during", phase: string | undefined, log: Logger): void {
  if (CRASH_AT === null || CRASH_AT !== `${when}:${phase}`) return;
  log.warn({ point: CRASH_AT }, "NETMIG_FAULT_CRASH_AT: killing this coordinator");
  // "during": after the command just sent has left the process.
  if (when === "during") setTimeout(() => process.kill(process.pid, "SIGKILL"), 5);
  else process.kill(process.pid, "SIGKILL");
}

/** Pause between delta rounds while a phased migration waits for Switchover, ms. */
const SYNC_INTERVAL_MS = 100;

export class MigrationDriver {
  private rec: Versioned<MigrationRecord>;
  private abortReason: string | null = null;
  private wakeUp: (() => void) | null = null;
  private saving: Promise<unknown> = Promise.resolve();
  /** The COMMITTED record handed to the destination in the freeze window, until the outcome is known. */
  private commitSent: MigrationRecord | null = null;
  /** When the record was last written (see `checkpoint`). */
  private savedAt = 0;
  /**
   * Switchover / Complete requests. Kept here, not only on the record: a
   * request that lands while a save is in flight would otherwise be lost
   * when the saved copy replaces the record. Every save writes them.
   */
  private readonly requested: { switchover: boolean; complete: boolean };
  private readonly startedAt = performance.now();
  /** Resolves when the driver stops (terminal phase, lost lease, or left for a sweep). */
  readonly done: Promise<MigrationRecord>;

  constructor(private readonly deps: DriverDeps, rec: Versioned<MigrationRecord>, recovering: boolean) {
    this.rec = rec;
    this.requested = { switchover: rec.value.switchoverRequested, complete: rec.value.completeRequested };
    this.done = (recovering ? this.recover() : this.runFresh()).then(
      () => this.rec.value,
      (err) => {
        if (err instanceof LostLease) this.deps.log.warn({ migrationId: this.id }, "migration record changed under this coordinator; it stops driving it");
        else this.deps.log.error({ err, migrationId: this.id }, "migration driver stopped on an unexpected error");
        return this.rec.value;
      },
    );
  }

  get id(): string {
    return this.rec.value.id;
  }
  get record(): MigrationRecord {
    return this.rec.value;
  }

  // ------------------------------------------------------------ triggers

  requestSwitchover(): void {
    this.requested.switchover = true;
    this.wakeUp?.();
  }
  requestComplete(): void {
    this.requested.complete = true;
    this.wakeUp?.();
  }
  /** Asks for an abort; honoured only before COMMITTED. */
  requestAbort(reason: string): void {
    if (isCommitted(this.rec.value.phase)) return;
    this.abortReason ??= reason;
    this.wakeUp?.();
  }

  // ------------------------------------------------------------ recording

  /** The record as the next write would make it: `patch` applied, the lease renewed, a phase change in the history. */
  private nextRecord(patch: Partial<MigrationRecord>, note: string | undefined, now: number): MigrationRecord {
    const next: MigrationRecord = {
      ...this.rec.value,
      ...patch,
      switchoverRequested: this.requested.switchover,
      completeRequested: this.requested.complete,
      updatedAtMs: now,
      leaseUntil: now + this.deps.leaseMs,
      driver: this.deps.coordinatorId,
    };
    if (patch.phase && patch.phase !== this.rec.value.phase) next.history = [...next.history, { phase: patch.phase, atMs: now, ...(note ? { note } : {}) }];
    return next;
  }

  /** Records a change with compare-and-set; saves are serialized. */
  private save(patch: Partial<MigrationRecord>, note?: string): Promise<void> {
    const run = this.saving.then(async () => {
      const now = Date.now();
      const next = this.nextRecord(patch, note, now);
      crashPoint("before", patch.phase, this.deps.log);
      try {
        this.rec = await this.deps.journal.updateMigration(next, this.rec.revision);
      } catch (err) {
        if (err instanceof ConflictError) throw new LostLease();
        throw err;
      }
      this.savedAt = now;
      this.deps.publish(this.rec.value, note ?? patch.phase ?? "progress");
      crashPoint("after", patch.phase, this.deps.log);
    });
    this.saving = run.catch(() => undefined);
    return run;
  }

  /**
   * Progress within a phase (a pre-copy round): published to watchers, and
   * written to the record only when the last write is a third of the lease
   * old (to renew it). Recovery before commit aborts whatever the record's
   * progress says, so a write per round would buy nothing but load.
   */
  private async checkpoint(note: string): Promise<void> {
    if (this.leaseAging()) return this.later(() => this.save({}, note));
    this.deps.publish(this.rec.value, note);
  }

  /** The record was last written a third of the lease ago or more: time to renew it. */
  private leaseAging(): boolean {
    return Date.now() - this.savedAt >= this.deps.leaseMs / 3;
  }

  private progress(p: Partial<Progress>): Progress {
    return { ...this.rec.value.progress, ...p, totalMs: performance.now() - this.startedAt };
  }

  private target(host: "src" | "dst", epoch = this.rec.value.epoch): Target {
    const r = this.rec.value;
    return { hostId: host === "src" ? r.src : r.dst, vmId: r.vmId, migrationId: r.id, epoch };
  }

  private checkAbort(): void {
    if (this.abortReason !== null) throw new AbortRequested(this.abortReason);
    if (performance.now() - this.startedAt > this.rec.value.options.timeoutMs) {
      throw new TimeoutError(`migration did not reach commit within ${this.rec.value.options.timeoutMs} ms`, { migrationId: this.id });
    }
  }

  // ------------------------------------------------------------ the main line

  private async runFresh(): Promise<void> {
    const r = () => this.rec.value;
    try {
      this.checkAbort();
      // A stop-and-copy's one round is all in the freeze window: the destination makes room for it first.
      const sizes = r().options.stopAndCopy ? await this.later(() => this.sourceSizes()) : undefined;
      await this.later(() => this.deps.agents.prepare(this.target("dst"), r().src, sizes));
      await this.later(() => this.save({ phase: Phase.Precopy }, `destination ${r().dst} prepared`));
      if (!r().options.stopAndCopy) await this.precopy();
      if (r().mode === "phased") await this.syncUntil(() => this.requested.switchover || this.requested.complete);
      await this.switchover();
    } catch (err) {
      if (err instanceof LostLease) throw err;
      if (isCommitted(r().phase)) return this.rollForward(err);
      return this.abort(err);
    }
    await this.rollForward(null);
  }

  /**
   * The source's rows per table as it last observed them (no dataplane
   * read), or undefined if it does not say: the destination then allocates
   * as the round comes.
   */
  private async sourceSizes(): Promise<TableSizes | undefined> {
    try {
      const { counts } = await this.deps.agents.describe(this.target("src"), false);
      return Object.values(counts).some((n) => n > 0) ? counts : undefined;
    } catch (err) {
      this.deps.log.debug({ migrationId: this.id, err }, "the source did not report its table sizes; the destination allocates as the round comes");
      return undefined;
    }
  }

  /** One pre-copy round: full when `sinceGen` is null. Bulk rounds hold their hosts shared (see host-gate.ts). */
  private async round(sinceGen: number | null, final: boolean, epoch = this.rec.value.epoch, timeoutMs?: number, freeze = false, commit?: CommitOrder) {
    const release = final ? null : await this.deps.gate.shared(this.hosts());
    try {
      return await this.sendRound(sinceGen, final, epoch, timeoutMs, freeze, commit);
    } finally {
      release?.();
    }
  }

  private hosts(): string[] {
    return [this.rec.value.src, this.rec.value.dst];
  }

  private async sendRound(sinceGen: number | null, final: boolean, epoch: number, timeoutMs: number | undefined, freeze: boolean, commit: CommitOrder | undefined) {
    const p = this.rec.value.progress;
    const round = this.rec.value.nextRound;
    this.rec.value = { ...this.rec.value, nextRound: round + 1 };
    const res = await this.deps.agents.transfer(this.target("src", epoch), {
      dstHostId: this.rec.value.dst, sinceGen, final, round, ...(freeze ? { freeze } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(commit ? { commit } : {}),
    });
    const progress = this.progress({
      round, rowsSent: p.rowsSent + res.rows, bytesSent: p.bytesSent + res.bytes, chunksSent: p.chunksSent + res.chunks + 1,
      lastRoundRows: res.rows, srcDigest: res.digest,
    });
    this.rec.value = { ...this.rec.value, sealedGen: res.gen, progress };
    return res;
  }

  private async precopy(): Promise<void> {
    const o = this.rec.value.options;
    let res = await this.round(null, false);
    await this.checkpoint(`round 0: full copy, ${res.rows} rows, ${res.bytes} bytes`);
    // A phased migration whose Switchover has come stops converging: the guest is paused, the final delta goes now.
    const called = () => this.rec.value.mode === "phased" && (this.requested.switchover || this.requested.complete);
    for (let i = 0; i < o.maxPrecopyRounds && res.rows > o.convergeRows && !called(); i++) {
      this.checkAbort();
      res = await this.round(this.rec.value.sealedGen, false);
      await this.checkpoint(`round ${this.rec.value.progress.round}: ${res.rows} rows changed`);
    }
    this.rec.value.progress.precopyMs = performance.now() - this.startedAt;
  }

  /** Phased mode: keeps deltas flowing until `cond` holds, so the final delta stays small. */
  private async syncUntil(cond: () => boolean): Promise<void> {
    while (!cond()) {
      this.checkAbort();
      await this.sleep(SYNC_INTERVAL_MS);
      if (cond() || this.abortReason !== null) continue;
      if (this.rec.value.options.stopAndCopy) {
        // Nothing flows before a stop-and-copy switchover; the lease is still renewed.
        if (this.leaseAging()) await this.later(() => this.save({}));
        continue;
      }
      const res = await this.round(this.rec.value.sealedGen, false);
      await this.checkpoint(`continuous sync: round ${this.rec.value.progress.round}, ${res.rows} rows`);
    }
    this.checkAbort();
  }

  /**
   * The freeze window. With pre-copy it holds both hosts alone, so no other
   * migration's bulk round runs there meanwhile; a stop-and-copy window is
   * bulk work itself and shares them. A phased switchover comes when the
   * guest is paused: it does not wait for rounds in flight, it only keeps
   * new ones from starting.
   */
  private async switchover(): Promise<void> {
    const { options, mode } = this.rec.value;
    const release = await (options.stopAndCopy ? this.deps.gate.shared(this.hosts()) : this.deps.gate.exclusive(this.hosts(), mode !== "phased"));
    let window;
    try {
      window = await this.freezeWindow();
    } finally {
      release();
    }
    await this.recordActivation(window.final, window.done, window.ms);
  }

  /**
   * Bookkeeping no guest waits for (a prepare, a release, a record write
   * before the freeze or after activation) goes after the freeze windows
   * open now elsewhere have closed (see host-gate.ts). Steps taken while
   * this migration's VM is frozen, or while it aborts, do not wait.
   */
  private async later<T>(step: () => Promise<T>): Promise<T> {
    await this.deps.gate.afterWindows();
    return step();
  }

  /**
   * Freeze, final round, commit and activation, in one command to the
   * source: it freezes and sends the final round, whose seal carries the
   * commit order; the destination checks the digests, commits (the record's
   * compare-and-set) and activates, and the answers come back the same way.
   * The window holds no coordinator round trip.
   */
  private async freezeWindow(): Promise<{ final: TransferReply; done: CommitResult; ms: number }> {
    const r = () => this.rec.value;
    const budget = r().options.freezeBudgetMs;
    await this.save({ phase: Phase.Frozen }, "freezing the source");
    const committed = this.committedRecord();
    const order: CommitOrder = { bucket: KV_BUCKETS.migrations, key: this.id, revision: this.rec.revision, record: encodeRecord(committed), epoch: r().epoch + 1 };
    this.commitSent = committed;
    const t0 = performance.now();
    let final;
    try {
      const sending = this.round(r().options.stopAndCopy ? null : r().sealedGen, true, r().epoch, budget, true, order);
      crashPoint("during", Phase.Frozen, this.deps.log);
      final = await sending;
      if (!final.committed) throw new NetmigError(ErrorCode.Internal, `host ${r().src} sent the final round but did not report the destination's commit`, { migrationId: this.id });
    } catch (err) {
      // The destination may have committed with its answer lost: the abort's compare-and-set finds out.
      if (asNetmigError(err).code === ErrorCode.Timeout) throw new FreezeBudgetExceededError(`the final transfer did not finish within the ${budget} ms freeze budget`, { migrationId: this.id, vmId: r().vmId }, { cause: err });
      throw err;
    }
    const tActive = performance.now();
    // The record as written, with what the final round taught this driver (progress, digests).
    this.rec = { value: { ...committed, progress: r().progress, sealedGen: r().sealedGen }, revision: final.committed.revision };
    this.commitSent = null;
    this.savedAt = committed.updatedAtMs;
    return { final, done: final.committed, ms: tActive - t0 };
  }

  /** After the window: the destination is live; its activation is recorded and the VM's owner moved. */
  private async recordActivation(final: TransferReply, done: CommitResult, freezeWindowMs: number): Promise<void> {
    const r = () => this.rec.value;
    const budget = r().options.freezeBudgetMs;
    this.deps.publish({ ...r(), phase: Phase.Transferred }, `final delta: ${final.rows} rows; digests match`);
    this.deps.publish(r(), `committed by ${r().dst}: owner ${r().dst}, epoch ${r().epoch + 1}`);
    crashPoint("after", Phase.Committed, this.deps.log);
    if (freezeWindowMs > budget) this.deps.log.warn({ migrationId: this.id, freezeWindowMs, budget }, "the freeze window outlasted its budget; the destination had committed, so the migration goes on");
    // The agents' own account: the source's freeze to the destination's activation.
    const agents = typeof final.frozenAtMs === "number" ? done.activatedAtMs - final.frozenAtMs : NaN;
    const stateFrozenMs = Number.isFinite(agents) && agents > 0 && agents <= freezeWindowMs ? agents : 0;
    if (stateFrozenMs === 0) {
      this.deps.log.warn({ migrationId: this.id, frozenAtMs: final.frozenAtMs ?? null, activatedAtMs: done.activatedAtMs, freezeWindowMs }, "the agents' account of the freeze window is missing or outside the coordinator's; only the coordinator's is recorded");
    }
    const steps = `freeze, final delta of ${final.rows} rows, commit and activation ${freezeWindowMs.toFixed(1)} ms by the coordinator${stateFrozenMs ? `; ${stateFrozenMs.toFixed(1)} ms by the agents' clocks` : ""}`;
    await this.later(() => this.save({ phase: Phase.Activated, progress: this.progress({ finalRows: final.rows, freezeWindowMs, stateFrozenMs, dstDigest: done.digest }) }, `active on ${r().dst} (${steps})`));
    this.checkActivatedDigest(done.digest);
    await this.later(() => this.setOwner(r().dst, r().epoch + 1, r().id));
  }

  /** Logs a destination that went live with other state than the source froze (unknown source digest: nothing to compare). */
  private checkActivatedDigest(dst: string): void {
    const src = this.rec.value.progress.srcDigest;
    if (src !== "" && dst !== src) this.deps.log.error({ migrationId: this.id, src, dst }, "activated digest differs from the source's");
  }

  /** The record the destination writes when it commits: TRANSFERRED and COMMITTED in its history. */
  private committedRecord(): MigrationRecord {
    const r = this.rec.value;
    const now = Date.now();
    const history = [...r.history, { phase: Phase.Transferred, atMs: now, note: "final round sealed, digests match" }];
    // nextRound counts the final round it is handed down with.
    // Its srcDigest would be the last pre-copy round's, not the final one's (see Progress.srcDigest).
    return this.nextRecord({ phase: Phase.Committed, history, nextRound: r.nextRound + 1, progress: { ...r.progress, srcDigest: "" } }, `committed by ${r.dst} on the final seal: owner ${r.dst}, epoch ${r.epoch + 1}`, now);
  }

  /**
   * After a lost compare-and-set in the freeze window: true (and the record
   * adopted) when what won is the commit this driver handed the destination.
   */
  private async adoptDestinationCommit(): Promise<boolean> {
    const sent = this.commitSent;
    if (!sent) return false;
    const cur = await this.deps.journal.getMigration(this.id);
    if (!cur || isUnreadable(cur)) return false;
    const v = cur.value;
    if (v.phase !== Phase.Committed || v.driver !== sent.driver || v.updatedAtMs !== sent.updatedAtMs) return false;
    this.rec = cur;
    this.commitSent = null;
    this.deps.log.warn({ migrationId: this.id }, "the destination committed although its answer did not arrive; rolling forward");
    this.deps.publish(v, `committed by ${v.dst}`);
    return true;
  }

  private async setOwner(owner: string, epoch: number, migrationId: string | null): Promise<void> {
    const vm = await this.deps.journal.getVm(this.rec.value.vmId);
    if (!vm) throw new ConflictError(`VM ${this.rec.value.vmId} has no ownership record`, { vmId: this.rec.value.vmId });
    if (vm.value.migrationId !== null && vm.value.migrationId !== this.id) return; // not ours to change
    if (vm.value.owner === owner && vm.value.epoch === epoch && vm.value.migrationId === migrationId) return;
    await this.deps.journal.putVm({ ...vm.value, owner, epoch, migrationId }, vm.revision);
  }

  // ------------------------------------------------------------ abort / roll forward

  private async abort(cause: unknown): Promise<void> {
    const r = () => this.rec.value;
    const e = cause instanceof AbortRequested ? new NetmigError(ErrorCode.Conflict, `aborted: ${cause.message}`) : asNetmigError(cause, { migrationId: this.id });
    const error = r().error ?? { code: cause instanceof AbortRequested ? "ABORTED" : e.code, message: e.message };
    if (r().phase !== Phase.Aborting) {
      try {
        await this.save({ phase: Phase.Aborting, error }, error.message);
      } catch (err) {
        if (err instanceof LostLease && (await this.adoptDestinationCommit())) return this.rollForward(cause);
        throw err;
      }
    }
    this.deps.log.warn({ migrationId: this.id, vmId: r().vmId, code: error.code }, `aborting migration: ${error.message}`);
    const notes: string[] = [];
    // Destination first: it must never be left believing it may activate.
    await this.deps.agents.abort(this.target("dst")).catch((err) => notes.push(`destination ${r().dst} not reached (${(err as Error).message}); it drops the staged state when it reports back`));
    await this.deps.agents.thaw(this.target("src")).catch((err) => notes.push(`source ${r().src} not reached (${(err as Error).message}); it is thawed when it reports back`));
    await this.setOwner(r().src, r().epoch, null).catch((err) => notes.push(`VM unlock failed: ${(err as Error).message}`));
    await this.save({ phase: Phase.Aborted, progress: this.progress({}) }, notes.length ? notes.join("; ") : "aborted; the source holds the state");
  }

  private async rollForward(cause: unknown): Promise<void> {
    const r = () => this.rec.value;
    if (cause) this.deps.log.warn({ migrationId: this.id, err: cause }, "a step after commit failed; rolling forward");
    const newEpoch = r().epoch + 1;
    let delay = 200;
    for (;;) {
      try {
        if (r().phase === Phase.Committed) {
          if (r().progress.srcDigest === "") await this.learnSourceDigest();
          let act;
          try {
            act = await this.deps.agents.activate(this.target("dst", newEpoch));
          } catch (err) {
            if (!(err instanceof NotStagedError) && asNetmigError(err).code !== ErrorCode.NotStaged) throw err;
            // The destination lost its staged copy: the source still holds the frozen state.
            await this.deps.agents.prepare(this.target("dst", newEpoch), r().src);
            await this.round(null, true, newEpoch);
            act = await this.deps.agents.activate(this.target("dst", newEpoch));
          }
          await this.save({ phase: Phase.Activated, progress: this.progress({ dstDigest: act.digest }) }, `active on ${r().dst} (rolled forward)`);
          this.checkActivatedDigest(act.digest);
        }
        if (r().phase === Phase.Activated) {
          await this.later(() => this.setOwner(r().dst, newEpoch, r().id));
          if (r().mode === "phased" && !cause) await this.waitFor(() => this.requested.complete);
          await this.later(() => this.deps.agents.release(this.target("src", newEpoch)));
          await this.later(() => this.save({ phase: Phase.Released }, `source ${r().src} released`));
        }
        if (r().phase === Phase.Released) {
          await this.later(() => this.setOwner(r().dst, newEpoch, null));
          await this.later(() => this.save({ phase: Phase.Done, progress: this.progress({}) }, "done"));
        }
        return;
      } catch (err) {
        if (err instanceof LostLease) throw err;
        if (performance.now() - this.startedAt > r().options.timeoutMs) {
          await this.save({ error: { code: asNetmigError(err).code, message: `rolling forward: ${(err as Error).message}` } }, "left for the next recovery sweep").catch(() => undefined);
          return;
        }
        this.deps.log.warn({ migrationId: this.id, err }, `roll forward step failed; retrying in ${delay} ms`);
        await this.sleep(delay);
        delay = Math.min(5000, delay * 2);
      }
    }
  }

  /**
   * A record the destination committed carries no source digest (see
   * Progress.srcDigest); until it is released, the frozen source still
   * holds the state, so its digest is asked for there. Best effort: left
   * empty if the source does not answer or no longer holds the VM frozen.
   */
  private async learnSourceDigest(): Promise<void> {
    try {
      const d = await this.deps.agents.describe(this.target("src"));
      if (d.status === "frozen") this.rec.value = { ...this.rec.value, progress: { ...this.rec.value.progress, srcDigest: d.digest } };
    } catch {
      // Reported as unknown.
    }
  }

  /** Takes over an unfinished migration and follows the recovery table. */
  private async recover(): Promise<void> {
    const action = recoveryFor(this.rec.value.phase);
    this.deps.log.info({ migrationId: this.id, phase: this.rec.value.phase, action }, "recovering migration");
    if (action === "abort") return this.abort(new NetmigError(ErrorCode.Internal, `coordinator restarted in phase ${this.rec.value.phase}, before commit`));
    if (action === "roll-forward") return this.rollForward(new Error(`coordinator restarted in phase ${this.rec.value.phase}, after commit`));
  }

  // ------------------------------------------------------------ waiting

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeUp = null;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        this.wakeUp = null;
        resolve();
      };
    });
  }

  /** Waits for a trigger, renewing the lease; an abort request ends the wait before commit. */
  private async waitFor(cond: () => boolean): Promise<void> {
    while (!cond()) {
      if (!isCommitted(this.rec.value.phase)) this.checkAbort();
      await this.sleep(this.deps.leaseMs / 3);
      if (!cond() && !isTerminal(this.rec.value.phase)) await this.later(() => this.save({}, undefined));
    }
  }
}
