/**
 * The agent: one per host. Answers the commands of protocol/agent-api.ts on
 * its own NATS subjects, streams VM state to peer agents (the data path does
 * not go through the coordinator), receives state into staging areas, fences
 * every migration command by epoch, and publishes heartbeats.
 *
 * Commands for one VM run one at a time, in arrival order; commands for
 * different VMs run concurrently. A bad message gets an error reply naming
 * what was wrong, and the agent keeps serving.
 */
import type { Msg, NatsConnection, Subscription } from "nats";
import {
  AgentOp, AGENT_OPS, parseDescribeRequest, parseExportRequest, parsePrepareRequest, parseTransferRequest, parseWriteRequest, wallClockMs,
  type ActivateReply, type CommitOrder, type CommitResult, type DescribeReply, type ExportReply, type FreezeReply, type InventoryReply, type TransferReply, type VmInfo, type WriteReply,
} from "../protocol/agent-api.js";
import { decodeBlocks } from "../protocol/codec/columnar.js";
import { decodeEnvelope, type Envelope } from "../protocol/codec/envelope.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../protocol/codec/packr.js";
import { asNetmigError, BadRequestError, NotStagedError, UnknownVmError, VmExistsError, WrongPhaseError } from "../protocol/errors.js";
import type { Logger } from "../protocol/log.js";
import { encodeReply } from "../protocol/rpc.js";
import { StateDigest } from "../protocol/state/digest.js";
import { checkVmId } from "../protocol/state/document.js";
import { isTableName } from "../protocol/state/tables.js";
import { checkHostId, CHUNK_OP, FINAL_CHUNK_OP, KV_BUCKETS, subjects } from "../protocol/subjects.js";
import { RoundReceiver, type StageTarget } from "../protocol/transfer/receiver.js";
import { sendRound } from "../protocol/transfer/sender.js";
import type { Backend, Change } from "./backends/backend.js";
import { DEFAULT_COLLECT_AFTER_ROUND_BYTES, RoundCollector } from "./collector.js";
import { EpochStore } from "./epochs.js";
import { RecordCommitter } from "./record-commit.js";

export interface AgentOptions {
  hostId: string;
  nc: NatsConnection;
  backend: Backend;
  /** Where the agent keeps its epochs; null = memory only (tests of fencing must not use null). */
  stateDir: string | null;
  logger: Logger;
  /** Heartbeat interval, ms. Default 1000. */
  heartbeatMs?: number;
  /** Largest message accepted, bytes. Default 8 MiB. */
  maxMessageBytes?: number;
  /** Pre-copy rounds of at least this many bytes end with a major garbage collection (collector.ts); 0: never. Default 2 MiB. */
  collectAfterRoundBytes?: number;
}

/**
 * Fault injection for the tests: an agent started with
 * NETMIG_FAULT_COMMIT_DELAY_MS=<ms> waits that long between writing a
 * destination's commit and activating, as a slow or partitioned host
 * would. Unset in production.
 */
const COMMIT_DELAY_MS = Number(process.env.NETMIG_FAULT_COMMIT_DELAY_MS ?? 0);

/** Bulk chunks handled at once (their stage may wait on a dataplane). */
const BULK_CONCURRENCY = 2;

/** Seqs of round r start at r * ROUND_SEQ_SPAN. */
export const ROUND_SEQ_SPAN = 10_000_000;

export class Agent {
  readonly hostId: string;
  private readonly nc: NatsConnection;
  private readonly backend: Backend;
  private readonly log: Logger;
  private readonly epochs: EpochStore;
  private readonly committer: RecordCommitter;
  /** Receiving migrations; `roundBytes`: chunk bytes of the round in progress. */
  private readonly receivers = new Map<string, { vmId: string; receiver: RoundReceiver; roundBytes: number }>();
  private readonly collector: RoundCollector;
  /** Final rounds being received: freeze windows open on this host as a destination. */
  private finalsInFlight = 0;
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Bulk chunks not yet taken (see onMessage). */
  private readonly bulk: Msg[] = [];
  private bulkRunning = 0;
  private bulkScheduled = false;
  private sub: Subscription | null = null;
  private hbTimer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  private readonly startedAt = Date.now();

  constructor(private readonly opts: AgentOptions) {
    this.hostId = checkHostId(opts.hostId);
    this.nc = opts.nc;
    this.backend = opts.backend;
    this.log = opts.logger;
    this.epochs = new EpochStore(opts.stateDir);
    this.committer = new RecordCommitter(opts.nc);
    this.collector = new RoundCollector(opts.collectAfterRoundBytes ?? DEFAULT_COLLECT_AFTER_ROUND_BYTES);
  }

  async start(): Promise<void> {
    await this.backend.start();
    this.committer.warm(KV_BUCKETS.migrations);
    this.sub = this.nc.subscribe(subjects.agentAll(this.hostId), { callback: (err, msg) => (err ? this.log.error({ err }, "subscription error") : this.onMessage(msg)) });
    const hb = this.opts.heartbeatMs ?? 1000;
    this.hbTimer = setInterval(() => void this.heartbeat(), hb);
    this.hbTimer.unref();
    await this.heartbeat();
    this.log.info({ hostId: this.hostId, backend: this.backend.kind }, "agent started");
  }

  /** Stops taking commands, finishes those in flight, closes the backend. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.hbTimer) clearInterval(this.hbTimer);
      if (this.sub) await this.sub.drain().catch(() => undefined);
      while (this.bulk.length > 0 || this.bulkRunning > 0) await new Promise((r) => setTimeout(r, 5));
      await Promise.allSettled(this.queues.values());
      await this.backend.close();
      this.epochs.close();
      this.log.info("agent stopped");
    })();
    return this.closing;
  }

  // ------------------------------------------------------------ dispatch

  /**
   * Bulk chunks (pre-copy rounds) wait in the bulk lane and are taken one
   * event-loop turn at a time, so a command or a final round's chunk that
   * arrives meanwhile (a freeze window, maybe another VM's) is served after
   * at most the chunk in hand, not after every chunk queued before it.
   */
  private onMessage(msg: Msg): void {
    if (msg.subject.endsWith(`.${CHUNK_OP}`)) {
      this.bulk.push(msg);
      this.pumpBulk();
      return;
    }
    void this.dispatch(msg);
  }

  private pumpBulk(): void {
    if (this.bulkScheduled || this.bulkRunning >= BULK_CONCURRENCY || this.bulk.length === 0) return;
    this.bulkScheduled = true;
    setImmediate(() => {
      this.bulkScheduled = false;
      const msg = this.bulk.shift();
      if (!msg) return;
      this.bulkRunning++;
      void this.dispatch(msg).finally(() => {
        this.bulkRunning--;
        this.pumpBulk();
      });
      this.pumpBulk();
    });
  }

  /** Decodes a message and runs it in its VM's queue; settles when it has been answered. */
  private dispatch(msg: Msg): Promise<void> {
    const op = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
    let env: Envelope;
    try {
      if (!AGENT_OPS.has(op) && op !== CHUNK_OP && op !== FINAL_CHUNK_OP) throw new BadRequestError(`unknown agent command "${op}"`);
      env = decodeEnvelope(msg.data, this.opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
      if (op !== AgentOp.inventory) checkVmId(env.vmId, "envelope vmId");
    } catch (err) {
      this.replyError(msg, err, op);
      return Promise.resolve();
    }
    const key = op === AgentOp.inventory ? "" : env.vmId;
    const prev = this.queues.get(key) ?? Promise.resolve();
    const received = performance.now();
    let began = 0;
    const run = prev.then(() => {
      began = performance.now();
      return this.handle(op, env, msg.data.byteLength);
    }).then(
      (result) => {
        msg.respond(encodeReply(true, result));
        if (this.log.isLevelEnabled("debug")) this.log.debug({ op, kind: env.kind, vmId: env.vmId, queuedMs: +(began - received).toFixed(2), ms: +(performance.now() - began).toFixed(2) }, "command done");
      },
      (err) => this.replyError(msg, err, op, env),
    );
    this.queues.set(key, run);
    void run.finally(() => {
      if (this.queues.get(key) === run) this.queues.delete(key);
    });
    return run;
  }

  private replyError(msg: Msg, err: unknown, op: string, env?: Envelope): void {
    const e = asNetmigError(err, { hostId: this.hostId, ...(env?.vmId ? { vmId: env.vmId } : {}), ...(env?.migrationId ? { migrationId: env.migrationId } : {}) });
    if (!e.context.hostId) e.context.hostId = this.hostId;
    this.log.warn({ op, code: e.code, vmId: env?.vmId, migrationId: env?.migrationId }, e.message);
    if (msg.reply) msg.respond(encodeReply(false, e.toWire()));
  }

  private handle(op: string, env: Envelope, bytes: number): Promise<unknown> {
    switch (op) {
      case AgentOp.inventory: return this.inventory();
      case AgentOp.describe: return this.describe(env.vmId, parseDescribeRequest(env.body).fresh !== false);
      case AgentOp.prepare: return this.prepare(env);
      case CHUNK_OP: return this.chunk(env, bytes);
      case FINAL_CHUNK_OP: return this.finalChunk(env, bytes);
      case AgentOp.transfer: return this.transfer(env);
      case AgentOp.freeze: return this.freeze(env);
      case AgentOp.thaw: return this.thaw(env);
      case AgentOp.activate: return this.activate(env);
      case AgentOp.release: return this.release(env);
      case AgentOp.abort: return this.abort(env);
      case AgentOp.export: return this.export(env);
      case AgentOp.write: return this.write(env);
      default: throw new BadRequestError(`unknown agent command "${op}"`);
    }
  }

  private fence(env: Envelope, what: string): void {
    this.epochs.check(env.vmId, env.epoch, what, this.hostId);
  }

  // ------------------------------------------------------------ inventory

  /** `brief`: who is here and in what status, without digests and counts (heartbeats). */
  async inventory(brief = false): Promise<InventoryReply> {
    const vms: VmInfo[] = [];
    const seen = new Set<string>();
    for (const v of await this.backend.listVms(brief)) {
      seen.add(v.vmId);
      const f = this.epochs.get(v.vmId);
      const info: VmInfo = { vmId: v.vmId, status: v.frozen ? "frozen" : "active", epoch: f?.epoch ?? 0, gen: v.gen, digest: v.digest, counts: v.counts };
      if (v.frozen && f?.frozenBy) info.migrationId = f.frozenBy;
      vms.push(info);
    }
    for (const s of await this.backend.listStaged(brief)) {
      vms.push({ vmId: s.vmId, status: "staged", epoch: this.epochs.get(s.vmId)?.epoch ?? 0, gen: s.gen, digest: s.digest, counts: s.counts, migrationId: s.stagingId });
    }
    for (const [vmId, f] of this.epochs.all()) {
      if (!seen.has(vmId) && f.releasedBy) vms.push({ vmId, status: "released", epoch: f.epoch, gen: 0, digest: "", counts: {}, migrationId: f.releasedBy });
    }
    return { hostId: this.hostId, backend: this.backend.kind, vms };
  }

  private async describe(vmId: string, fresh = true): Promise<DescribeReply> {
    const v = await this.backend.describe(vmId, fresh);
    const f = this.epochs.get(vmId);
    if (!v) {
      if (f?.releasedBy) return { vmId, status: "released", epoch: f.epoch, gen: 0, digest: "", counts: {}, tables: {}, migrationId: f.releasedBy };
      throw new UnknownVmError(`VM ${vmId} has no state on host ${this.hostId}`, { vmId, hostId: this.hostId });
    }
    const out: DescribeReply = { vmId, status: v.frozen ? "frozen" : "active", epoch: f?.epoch ?? 0, gen: v.gen, digest: v.digest, counts: v.counts, tables: v.tables };
    if (v.frozen && f?.frozenBy) out.migrationId = f.frozenBy;
    return out;
  }

  private async heartbeat(): Promise<void> {
    try {
      const inv = await this.inventory(true);
      const vms = inv.vms.map((v) => ({ vmId: v.vmId, status: v.status, epoch: v.epoch, ...(v.migrationId ? { migrationId: v.migrationId } : {}) }));
      this.nc.publish(subjects.heartbeat(this.hostId), encodeReply(true, { hostId: this.hostId, backend: inv.backend, startedAt: this.startedAt, vms }));
    } catch (err) {
      this.log.warn({ err }, "heartbeat failed");
    }
  }

  // ------------------------------------------------------------ destination side

  private async prepare(env: Envelope): Promise<{ ok: true }> {
    const req = parsePrepareRequest(env.body);
    checkHostId(req.srcHostId, "prepare request.srcHostId");
    this.fence(env, "prepare");
    if (await this.backend.describe(env.vmId)) throw new VmExistsError(`VM ${env.vmId} is already live on host ${this.hostId}`, { vmId: env.vmId, hostId: this.hostId });
    // One migration per VM: anything staged for this VM before is stale.
    for (const s of await this.backend.listStaged(true)) if (s.vmId === env.vmId) await this.backend.discard(s.vmId, s.stagingId);
    for (const [id, r] of this.receivers) if (r.vmId === env.vmId) this.receivers.delete(id);
    // Room for a stop-and-copy's round, made before the freeze; no receiver exists for the VM meanwhile.
    if (req.sizes && this.backend.reserveStaging) {
      const t0 = performance.now();
      let bytes = 0;
      await this.backend.reserveStaging(env.vmId, env.migrationId, req.sizes, (b) => {
        bytes = b;
        const pauseMs = this.collector.beforeTouch(b, () => this.windowOpen());
        if (pauseMs !== null) this.log.debug({ vmId: env.vmId, migrationId: env.migrationId, bytes: b, pauseMs }, "collected garbage before touching a staging reservation");
      });
      this.log.debug({ vmId: env.vmId, migrationId: env.migrationId, sizes: req.sizes, bytes, ms: performance.now() - t0 }, "reserved and touched room for a full round");
    }
    this.receivers.set(env.migrationId, { vmId: env.vmId, receiver: new RoundReceiver(this.stageTarget(env.vmId, env.migrationId, env.epoch), env.vmId), roundBytes: 0 });
    this.epochs.update(env.vmId, { releasedBy: undefined });
    return { ok: true };
  }

  private stageTarget(vmId: string, stagingId: string, epoch: number): StageTarget {
    const b = this.backend;
    return {
      reset: () => b.discard(vmId, stagingId),
      apply: (delta, zones) => b.stage(vmId, stagingId, delta, { srcPortZones: zones }),
      digest: async () => {
        const s = await b.staged(vmId, stagingId);
        if (s) return { digest: s.digest, tables: s.tables };
        // An empty VM stages nothing; its digest is that of no rows.
        const d = new StateDigest();
        return { digest: d.toString(), tables: d.tables() };
      },
      sealed: async () => {
        if (!(await b.staged(vmId, stagingId))) await b.stage(vmId, stagingId, { vmId, baseGen: null, gen: 0, upserts: {}, deletes: {} }, { srcPortZones: {} });
        await b.seal(vmId, stagingId);
      },
      commit: (order) => this.commitAndActivate(vmId, stagingId, epoch, order),
    };
  }

  /**
   * A final seal's commit order: the record's compare-and-set first, and the
   * staged state goes live only if it was written (see record-commit.ts).
   * The receiver calls it once the round is sealed, on a chunk already
   * fenced by epoch: neither is checked again here, in the freeze window.
   */
  private async commitAndActivate(vmId: string, migrationId: string, epoch: number, order: CommitOrder): Promise<CommitResult> {
    const context = { vmId, migrationId, hostId: this.hostId };
    if (order.key !== migrationId) throw new BadRequestError(`commit order for migration ${order.key} arrived with migration ${migrationId}`, context);
    if (order.epoch !== epoch + 1) throw new BadRequestError(`commit order activates at epoch ${order.epoch}, but migration ${migrationId} moves the VM from epoch ${epoch}`, context);
    const revision = await this.committer.commit(order, context);
    if (COMMIT_DELAY_MS > 0) await new Promise((r) => setTimeout(r, COMMIT_DELAY_MS));
    const a = await this.activateStaged(vmId, migrationId, order.epoch);
    return { revision, ...a };
  }

  private async chunk(env: Envelope, bytes: number): Promise<unknown> {
    this.fence(env, env.kind);
    const r = this.receivers.get(env.migrationId);
    if (!r || r.vmId !== env.vmId) {
      throw new NotStagedError(`host ${this.hostId} is not receiving migration ${env.migrationId} of VM ${env.vmId} (prepare first)`, { vmId: env.vmId, migrationId: env.migrationId });
    }
    const sealed = r.receiver.sealedRounds;
    r.roundBytes += bytes;
    const reply = await r.receiver.onMessage(env.kind, env.seq, env.body);
    if (r.receiver.sealedRounds > sealed) {
      this.afterRound(env, r.roundBytes, r.receiver.finalSealed, "received");
      r.roundBytes = 0;
    }
    return reply;
  }

  private async finalChunk(env: Envelope, bytes: number): Promise<unknown> {
    this.finalsInFlight++;
    try {
      return await this.chunk(env, bytes);
    } finally {
      this.finalsInFlight--;
    }
  }

  /** A freeze window is open here: a VM frozen on this host, or a final round being received. */
  private windowOpen(): boolean {
    return this.finalsInFlight > 0 || this.epochs.all().some(([, f]) => f.frozenBy !== undefined);
  }

  /** A round sent or received is complete, its answer not sent yet: the moment for a collection (collector.ts). */
  private afterRound(env: Envelope, bytes: number, final: boolean, how: "sent" | "received"): void {
    const pauseMs = this.collector.afterRound(bytes, final, () => this.windowOpen());
    if (pauseMs !== null) this.log.debug({ vmId: env.vmId, migrationId: env.migrationId, how, bytes, pauseMs: +pauseMs.toFixed(2) }, "collected garbage after a pre-copy round");
  }

  private activate(env: Envelope): Promise<ActivateReply> {
    return this.activateStaged(env.vmId, env.migrationId, env.epoch);
  }

  /** Makes a migration's sealed staged state live at `epoch` (the commit is done); idempotent. */
  private async activateStaged(vmId: string, migrationId: string, epoch: number): Promise<ActivateReply> {
    this.epochs.check(vmId, epoch, "activate", this.hostId);
    const staged = await this.backend.staged(vmId, migrationId);
    if (!staged?.sealed && !(await this.backend.describe(vmId, false))) {
      throw new NotStagedError(`VM ${vmId} has no sealed staged state for migration ${migrationId} on host ${this.hostId}`, { vmId, migrationId, hostId: this.hostId });
    }
    const v = await this.backend.activate(vmId, migrationId);
    const activatedAtMs = wallClockMs();
    this.receivers.delete(migrationId);
    this.epochs.update(vmId, { releasedBy: undefined, frozenBy: undefined });
    this.log.info({ vmId, migrationId, epoch, digest: v.digest }, "VM activated");
    return { digest: v.digest, gen: v.gen, activatedAtMs };
  }

  private async abort(env: Envelope): Promise<{ ok: true }> {
    this.fence(env, "abort");
    this.receivers.delete(env.migrationId);
    await this.backend.discard(env.vmId, env.migrationId);
    return { ok: true };
  }

  // ------------------------------------------------------------ source side

  /** The VM's summary; `fresh = false` where only its presence and frozen flag matter (no dataplane read). */
  private async liveOrThrow(vmId: string, fresh = true) {
    const v = await this.backend.describe(vmId, fresh);
    if (!v) throw new UnknownVmError(`VM ${vmId} has no state on host ${this.hostId}`, { vmId, hostId: this.hostId });
    return v;
  }

  private async transfer(env: Envelope): Promise<TransferReply> {
    const req = parseTransferRequest(env.body);
    checkHostId(req.dstHostId, "transfer request.dstHostId");
    this.fence(env, "transfer");
    const v = await this.liveOrThrow(env.vmId, false);
    let frozenAtMs: number | undefined;
    if (req.freeze && !v.frozen) {
      await this.freezeVm(env);
      frozenAtMs = wallClockMs();
    } else if (req.final && !v.frozen) throw new WrongPhaseError(`the final transfer of VM ${env.vmId} needs it frozen first`, { vmId: env.vmId, migrationId: env.migrationId });
    const read = await this.backend.read(env.vmId, req.sinceGen);
    const zones = await this.backend.portZones(env.vmId);
    const sent = await sendRound(this.nc, read, {
      subject: subjects.agentChunk(req.dstHostId, req.final), migrationId: env.migrationId, vmId: env.vmId, epoch: env.epoch,
      round: req.round, seqBase: req.round * ROUND_SEQ_SPAN, final: req.final, digest: read.digest, tables: read.tables, zones,
      ...(req.commit ? { commit: req.commit } : {}), ...(req.maxChunkBytes ? { maxChunkBytes: req.maxChunkBytes } : {}), ...(req.window ? { window: req.window } : {}), ...(req.timeoutMs ? { timeoutMs: req.timeoutMs } : {}),
    });
    this.afterRound(env, sent.bytes, req.final, "sent");
    return {
      baseGen: read.baseGen, gen: read.gen, rows: sent.rows, bytes: sent.bytes, chunks: sent.chunks, durationMs: sent.durationMs, digest: read.digest,
      ...(frozenAtMs !== undefined ? { frozenAtMs } : {}), ...(sent.seal.committed ? { committed: sent.seal.committed } : {}),
    };
  }

  private async freeze(env: Envelope): Promise<FreezeReply> {
    this.fence(env, "freeze");
    await this.liveOrThrow(env.vmId);
    const frozenAtMs = Date.now();
    await this.freezeVm(env);
    const v = await this.liveOrThrow(env.vmId);
    return { gen: v.gen, digest: v.digest, frozenAtMs };
  }

  private async freezeVm(env: Envelope): Promise<void> {
    await this.backend.setFrozen(env.vmId, true);
    this.epochs.update(env.vmId, { frozenBy: env.migrationId });
  }

  /**
   * Thaws a VM this migration froze. A VM frozen by another migration stays
   * frozen: a thaw from a migration that lost its race for the VM (or any
   * stale one) must not reopen someone else's freeze window.
   */
  private async thaw(env: Envelope): Promise<{ ok: true }> {
    this.fence(env, "thaw");
    const frozenBy = this.epochs.get(env.vmId)?.frozenBy;
    if (frozenBy !== undefined && frozenBy !== env.migrationId) {
      this.log.warn({ vmId: env.vmId, migrationId: env.migrationId, frozenBy }, "thaw ignored: the VM was frozen by another migration");
      return { ok: true };
    }
    const v = await this.backend.describe(env.vmId);
    if (v) {
      await this.backend.setFrozen(env.vmId, false);
      await this.backend.endTracking(env.vmId);
    }
    this.epochs.update(env.vmId, { frozenBy: undefined });
    return { ok: true };
  }

  private async release(env: Envelope): Promise<{ ok: true }> {
    this.fence(env, "release");
    await this.backend.remove(env.vmId);
    this.epochs.update(env.vmId, { frozenBy: undefined, releasedBy: env.migrationId });
    this.log.info({ vmId: env.vmId, migrationId: env.migrationId, epoch: env.epoch }, "VM released (tombstone kept)");
    return { ok: true };
  }

  private async export(env: Envelope): Promise<ExportReply> {
    const req = parseExportRequest(env.body);
    if (!req.sink.startsWith("_INBOX.") && !req.sink.startsWith("netmig.v1.")) throw new BadRequestError("export request.sink must be an inbox or a netmig subject");
    await this.liveOrThrow(env.vmId);
    const read = await this.backend.read(env.vmId, null, false);
    const zones = await this.backend.portZones(env.vmId);
    const sent = await sendRound(this.nc, read, {
      subject: req.sink, migrationId: env.migrationId, vmId: env.vmId, epoch: env.epoch, round: 0, seqBase: 0, final: true,
      digest: read.digest, tables: read.tables, zones, ...(req.maxChunkBytes ? { maxChunkBytes: req.maxChunkBytes } : {}),
    });
    return { baseGen: null, gen: read.gen, rows: sent.rows, bytes: sent.bytes, chunks: sent.chunks, durationMs: sent.durationMs, digest: read.digest };
  }

  private async write(env: Envelope): Promise<WriteReply> {
    const req = parseWriteRequest(env.body);
    const change: Change = { upserts: decodeBlocks(req.upserts, "write request.upserts"), deletes: {} };
    for (const [t, keys] of Object.entries(req.deletes)) {
      if (!isTableName(t)) throw new BadRequestError(`write request.deletes has unknown table "${t}"`);
      change.deletes[t] = keys;
    }
    if (req.create && this.epochs.get(env.vmId)?.releasedBy) {
      throw new VmExistsError(`VM ${env.vmId} moved away from host ${this.hostId}; import it on its owner instead`, { vmId: env.vmId, hostId: this.hostId });
    }
    if (req.create) this.fence(env, "import");
    const gen = await this.backend.write(env.vmId, change, req.create ?? false);
    const v = await this.liveOrThrow(env.vmId);
    return { gen, digest: v.digest };
  }
}
