/**
 * The coordinator: the only writer of migration records and VM ownership.
 * It starts migrations (one per VM at a time), drives them, takes over the
 * unfinished ones it finds (its own after a restart, or any whose driver's
 * lease expired), reconciles hosts that come back after a failure, and
 * serves what the gRPC API asks.
 */
import type { NatsConnection } from "nats";
import { decodeEnvelope } from "../protocol/codec/envelope.js";
import {
  BadRequestError, ConflictError, InDoubtError, NetmigError, UnavailableError, UnknownHostError, UnknownMigrationError, UnknownVmError,
  VmExistsError, VmMigratingError, WrongPhaseError,
} from "../protocol/errors.js";
import type { Logger } from "../protocol/log.js";
import { StateDigest } from "../protocol/state/digest.js";
import { checkVmId, parseDocument, toDocument, type StateDocument } from "../protocol/state/document.js";
import { SCHEMA_VERSION } from "../protocol/state/model.js";
import { blocksOf } from "../protocol/state/row-block.js";
import { TableSet } from "../protocol/state/table-set.js";
import { checkHostId, subjects } from "../protocol/subjects.js";
import { receiveOnInbox, RoundReceiver } from "../protocol/transfer/receiver.js";
import { sendRound } from "../protocol/transfer/sender.js";
import { AgentClient } from "./agent-client.js";
import { MigrationDriver } from "./driver.js";
import { publishEvent, type MigrationEvent } from "./events.js";
import { HostRegistry, type HostInfo } from "./hosts.js";
import { evacuateVms, type EvacuationProgress } from "./evacuation.js";
import { HostGate } from "./host-gate.js";
import { isUnreadable, Journal, type Versioned } from "./journal.js";
import { isCommitted, isTerminal, Phase } from "./phases.js";
import { DEFAULT_OPTIONS, emptyProgress, newMigrationId, type MigrationOptions, type MigrationRecord, type VmRecord } from "./record.js";

export interface CoordinatorOptions {
  nc: NatsConnection;
  /** Stable id: a restarted coordinator with the same id resumes its migrations at once. */
  id: string;
  log: Logger;
  /** Lease on a migration, ms. Default 15000. */
  leaseMs?: number;
  /** Interval of the recovery sweep, ms. Default 3000. */
  sweepMs?: number;
  /** A host is alive if it sent a heartbeat within this long, ms. Default 5000. */
  hostAliveMs?: number;
  /** Deadline of agent control commands, ms. Default 5000. */
  agentTimeoutMs?: number;
  /** KV replicas. Default 1. */
  replicas?: number;
  /** Defaults for migrations that do not set their own options. */
  defaults?: Partial<MigrationOptions>;
}

export interface StartRequest {
  vmId: string;
  dst: string;
  src?: string;
  options?: Partial<MigrationOptions>;
  mode?: "auto" | "phased";
}

export interface PhaseTarget {
  migrationId?: string;
  vmId?: string;
  dst?: string;
  reason?: string;
}

export interface VmSummaryOut {
  vmId: string;
  owner: string;
  epoch: number;
  digest: string;
  counts: Record<string, number>;
  migrationId: string;
  gen: number;
  status: string;
}

const OPTION_LIMITS: Record<keyof MigrationOptions, [number, number] | null> = {
  freezeBudgetMs: [1, 600_000], maxPrecopyRounds: [0, 1000], convergeRows: [0, 100_000_000], timeoutMs: [1000, 86_400_000], stopAndCopy: null,
};

export class Coordinator {
  readonly id: string;
  private journal!: Journal;
  private readonly nc: NatsConnection;
  private readonly log: Logger;
  private readonly agents: AgentClient;
  private readonly hosts: HostRegistry;
  private readonly drivers = new Map<string, MigrationDriver>();
  /** Freeze windows ahead of bulk rounds on shared hosts, across this coordinator's migrations. */
  private readonly gate = new HostGate();
  /** Migrations recorded by startMigration whose driver is not tracked yet: the sweep leaves them alone. */
  private readonly starting = new Set<string>();
  private readonly terminal = new Set<string>();
  private readonly inDoubt = new Map<string, string>();
  private readonly reconciled = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private closed = false;
  /** When `start` began listening for heartbeats (ms since the epoch). */
  private listeningSince = Infinity;

  constructor(private readonly opts: CoordinatorOptions) {
    this.id = checkHostId(opts.id, "coordinator id");
    this.nc = opts.nc;
    this.log = opts.log;
    this.agents = new AgentClient(opts.nc, opts.agentTimeoutMs ?? 5000);
    this.hosts = new HostRegistry(opts.nc, opts.log, opts.hostAliveMs ?? 5000, (h) => void this.reconcile(h));
  }

  async start(): Promise<void> {
    this.journal = await Journal.open(this.nc, { replicas: this.opts.replicas ?? 1 });
    this.hosts.start();
    this.listeningSince = Date.now();
    await this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), this.opts.sweepMs ?? 3000);
    this.sweepTimer.unref();
    this.log.info({ id: this.id }, "coordinator started");
  }

  /** Stops sweeping and waits up to `graceMs` for migrations in flight; the rest are resumed by the next coordinator. Idempotent. */
  async close(graceMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.hosts.stop();
    const all = Promise.allSettled(Array.from(this.drivers.values(), (d) => d.done));
    await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
    this.log.info("coordinator stopped");
  }

  // ------------------------------------------------------------ helpers

  private driverDeps() {
    return {
      journal: this.journal, agents: this.agents, log: this.log, coordinatorId: this.id, leaseMs: this.opts.leaseMs ?? 15_000,
      publish: (r: MigrationRecord, message: string) => publishEvent(this.nc, r, message), gate: this.gate,
    };
  }

  private track(d: MigrationDriver): void {
    this.drivers.set(d.id, d);
    void d.done.then((r) => {
      this.drivers.delete(d.id);
      if (isTerminal(r.phase)) this.terminal.add(r.id);
    });
  }

  private checkOptions(o: Partial<MigrationOptions> | undefined): MigrationOptions {
    const out: MigrationOptions = { ...DEFAULT_OPTIONS, ...this.opts.defaults };
    for (const [k, v] of Object.entries(o ?? {}) as [keyof MigrationOptions, unknown][]) {
      if (v === undefined) continue;
      const lim = OPTION_LIMITS[k];
      if (lim === undefined) throw new BadRequestError(`unknown migration option "${k}"`);
      if (lim === null) {
        if (typeof v !== "boolean") throw new BadRequestError(`option ${k} must be a boolean`);
        (out as unknown as Record<string, unknown>)[k] = v;
      } else {
        if (typeof v !== "number" || !Number.isInteger(v) || v < lim[0] || v > lim[1]) throw new BadRequestError(`option ${k} must be an integer from ${lim[0]} to ${lim[1]}`);
        (out as unknown as Record<string, unknown>)[k] = v;
      }
    }
    return out;
  }

  /**
   * Hosts are known from their heartbeats alone, so a coordinator that has
   * just started has not heard from every host yet. For a host it has not
   * heard from, it waits until a host that is up must have reported (one
   * liveness period after it started listening) before calling it unknown.
   */
  private async heardFrom(hostIds: readonly string[]): Promise<void> {
    const until = this.listeningSince + (this.opts.hostAliveMs ?? 5000);
    while (hostIds.some((h) => !this.hosts.get(h)) && Date.now() < until && !this.closed) await new Promise((r) => setTimeout(r, 25));
  }

  private requireLiveHost(hostId: string, role: string): void {
    if (!this.hosts.get(hostId)) throw new UnknownHostError(`${role} host ${hostId} is unknown (no agent with that id has reported)`, { hostId });
    if (!this.hosts.isAlive(hostId)) throw new UnavailableError(`${role} host ${hostId} has not sent a heartbeat recently`, { hostId });
  }

  /** The VM's ownership record, registering it from heartbeats if netmig has not seen it yet. */
  private async vmRecord(vmId: string): Promise<Versioned<VmRecord>> {
    const existing = await this.journal.getVm(vmId);
    if (existing) return existing;
    const owners = this.hosts.ownersOf(vmId);
    if (owners.length === 0) throw new UnknownVmError(`VM ${vmId} is unknown: no live host reports its state`, { vmId });
    if (owners.length > 1) throw new ConflictError(`VM ${vmId} is reported live on several hosts (${owners.map((o) => o.hostId).join(", ")}); refusing to guess`, { vmId });
    const o = owners[0]!;
    try {
      return await this.journal.putVm({ vmId, owner: o.hostId, epoch: o.epoch, migrationId: null }, 0);
    } catch (err) {
      const again = await this.journal.getVm(vmId);
      if (again) return again;
      throw err;
    }
  }

  private async readMigration(id: string): Promise<Versioned<MigrationRecord>> {
    const r = await this.journal.getMigration(id);
    if (!r) throw new UnknownMigrationError(`migration ${id} does not exist`, { migrationId: id });
    if (isUnreadable(r)) throw new InDoubtError(`migration ${id} is IN_DOUBT: its record is unreadable`, { migrationId: id });
    return r;
  }

  // ------------------------------------------------------------ migrations

  async startMigration(req: StartRequest): Promise<MigrationRecord> {
    const vmId = checkVmId(req.vmId);
    const dst = checkHostId(req.dst, "destination host");
    if (req.src) checkHostId(req.src, "source host");
    const options = this.checkOptions(req.options);
    await this.heardFrom([dst, ...(req.src ? [req.src] : [])]);
    const vm = await this.vmRecord(vmId);
    if (vm.value.migrationId) {
      const cur = await this.journal.getMigration(vm.value.migrationId);
      if (!cur || isUnreadable(cur) || !isTerminal(cur.value.phase)) {
        throw new VmMigratingError(`VM ${vmId} is already migrating (migration ${vm.value.migrationId})`, { vmId, migrationId: vm.value.migrationId });
      }
    }
    const src = vm.value.owner;
    if (req.src && req.src !== src) throw new BadRequestError(`VM ${vmId} is owned by host ${src}, not ${req.src}`, { vmId });
    if (dst === src) throw new BadRequestError(`VM ${vmId} is already on host ${dst}`, { vmId });
    await this.heardFrom([src]);
    this.requireLiveHost(dst, "destination");
    this.requireLiveHost(src, "source");

    const now = Date.now();
    const rec: MigrationRecord = {
      id: newMigrationId(), vmId, src, dst, phase: Phase.Pending, epoch: vm.value.epoch, mode: req.mode ?? "auto", options,
      progress: emptyProgress(), history: [{ phase: Phase.Pending, atMs: now }], driver: this.id, leaseUntil: now + (this.opts.leaseMs ?? 15_000),
      sealedGen: null, nextRound: 0, switchoverRequested: false, completeRequested: false, createdAtMs: now, updatedAtMs: now,
    };
    // Until its driver is tracked, the record is this call's alone: a sweep
    // running meanwhile would see it as ours and untracked, and take it over.
    this.starting.add(rec.id);
    try {
      const created = await this.journal.createMigration(rec);
      try {
        await this.journal.putVm({ ...vm.value, migrationId: rec.id }, vm.revision);
      } catch (err) {
        await this.dropLostRecord(rec.id);
        if (err instanceof ConflictError) {
          const now2 = await this.journal.getVm(vmId);
          throw new VmMigratingError(`VM ${vmId} is already migrating${now2?.value.migrationId ? ` (migration ${now2.value.migrationId})` : ""}`, { vmId });
        }
        throw err;
      }
      publishEvent(this.nc, rec, "migration created");
      this.log.info({ migrationId: rec.id, vmId, src, dst, mode: rec.mode }, "migration started");
      this.track(new MigrationDriver(this.driverDeps(), created, false));
      return rec;
    } finally {
      this.starting.delete(rec.id);
    }
  }

  /**
   * Removes the record of a migration that lost the race for its VM's lock
   * (retried: a record left behind would show in ListMigrations and be
   * recovered by a sweep, which aborts it harmlessly but needlessly).
   */
  private async dropLostRecord(id: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.journal.deleteMigration(id);
      } catch (err) {
        if (attempt >= 3) return void this.log.warn({ migrationId: id, err }, "could not remove the record of a migration that lost the race for its VM; a sweep will abort it");
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  /** Waits until this coordinator stops driving the migration (normally: it ended). */
  async waitForEnd(id: string): Promise<MigrationRecord> {
    const d = this.drivers.get(id);
    return d ? d.done : this.getMigration(id);
  }

  /**
   * Migrates every VM off `src`, `concurrency` at a time, to `dsts` round-robin
   * (default: every other live host). Each VM's freeze window has its hosts
   * to itself: the host gate holds back other VMs' bulk rounds on them
   * meanwhile (see host-gate.ts).
   */
  async evacuate(req: { src: string; dsts: string[]; concurrency: number; options: Partial<MigrationOptions> }, onProgress: (p: EvacuationProgress) => void): Promise<EvacuationProgress> {
    const src = checkHostId(req.src, "src_host");
    const named = req.dsts.map((d) => checkHostId(d, "dst_hosts"));
    await this.heardFrom([src, ...named]);
    this.requireLiveHost(src, "source");
    const dsts = named.length ? named : this.hosts.list().filter((h) => h.alive && h.hostId !== src).map((h) => h.hostId);
    if (dsts.length === 0) throw new BadRequestError(`no destination host to evacuate ${src} to`);
    if (dsts.includes(src)) throw new BadRequestError(`cannot evacuate host ${src} to itself`);
    for (const d of dsts) this.requireLiveHost(d, "destination");
    const vms = (this.hosts.get(src)?.vms ?? []).filter((v) => v.status === "active").map((v) => v.vmId);
    const migrate = async (vmId: string, dst: string) => this.waitForEnd((await this.startMigration({ vmId, dst, src, options: req.options })).id);
    return evacuateVms(vms, dsts, Math.max(1, Math.min(64, req.concurrency || 4)), migrate, onProgress, this.log);
  }

  async getMigration(id: string): Promise<MigrationRecord> {
    if (typeof id !== "string" || id.length === 0 || id.length > 128) throw new BadRequestError("migration id is required");
    const d = this.drivers.get(id);
    if (d) return d.record;
    return (await this.readMigration(id)).value;
  }

  async listMigrations(filter: { vmId?: string; activeOnly?: boolean; limit?: number } = {}): Promise<MigrationRecord[]> {
    const out: MigrationRecord[] = [];
    for (const id of await this.journal.migrationIds()) {
      const r = this.drivers.get(id)?.record ?? (await this.journal.getMigration(id).then((x) => (x && !isUnreadable(x) ? x.value : null)));
      if (!r) continue;
      if (filter.vmId && r.vmId !== filter.vmId) continue;
      if (filter.activeOnly && isTerminal(r.phase)) continue;
      out.push(r);
    }
    out.sort((a, b) => b.createdAtMs - a.createdAtMs);
    return filter.limit ? out.slice(0, filter.limit) : out;
  }

  /** Migrations whose record cannot be read (IN_DOUBT), by id, with what was found. */
  inDoubtMigrations(): Map<string, string> {
    return new Map(this.inDoubt);
  }

  /** Subscribes to a migration's events; the current record is delivered first. */
  async watch(id: string, onEvent: (e: MigrationEvent) => void): Promise<() => void> {
    const sub = this.nc.subscribe(subjects.events(id), {
      callback: (err, msg) => {
        if (err) return;
        try {
          const env = decodeEnvelope(msg.data);
          onEvent(env.body as MigrationEvent);
        } catch {
          /* a malformed event is not the watcher's problem */
        }
      },
    });
    const r = await this.getMigration(id).catch((err) => {
      sub.unsubscribe();
      throw err;
    });
    onEvent({ migration: r, message: "current state", atMs: Date.now(), done: isTerminal(r.phase) });
    return () => sub.unsubscribe();
  }

  async cancel(id: string, reason: string): Promise<MigrationRecord> {
    const d = this.drivers.get(id);
    const r = d?.record ?? (await this.readMigration(id)).value;
    if (isTerminal(r.phase)) return r;
    if (r.phase === Phase.Committed || r.phase === Phase.Activated || r.phase === Phase.Released) {
      throw new WrongPhaseError(`migration ${id} has committed (phase ${r.phase}); it can only finish`, { migrationId: id, vmId: r.vmId });
    }
    if (!d) throw new UnavailableError(`migration ${id} is driven by coordinator ${r.driver}; cancel it there`, { migrationId: id });
    d.requestAbort(reason || "cancelled by request");
    return (await d.done);
  }

  // ------------------------------------------------------------ phase by phase

  /**
   * Creates a phased migration and starts pre-copy; returns at once. Idempotent
   * by VM and destination: while the VM has an unfinished migration to `dst`
   * (from `src`, when given), that migration is the answer, also to a retry
   * that races the first call.
   */
  async prepare(req: StartRequest): Promise<MigrationRecord> {
    const vmId = checkVmId(req.vmId);
    const dst = checkHostId(req.dst, "destination host");
    const existing = async (): Promise<MigrationRecord | null> => {
      const vm = await this.journal.getVm(vmId);
      if (!vm?.value.migrationId) return null;
      const cur = this.drivers.get(vm.value.migrationId)?.record ?? (await this.journal.getMigration(vm.value.migrationId).then((x) => (x && !isUnreadable(x) ? x.value : null)));
      if (!cur || isTerminal(cur.phase) || cur.dst !== dst) return null;
      if (req.src && req.src !== cur.src) throw new BadRequestError(`VM ${vmId} is migrating from host ${cur.src}, not ${req.src} (migration ${cur.id})`, { vmId, migrationId: cur.id });
      return cur;
    };
    const found = await existing();
    if (found) return found;
    try {
      return await this.startMigration({ ...req, vmId, dst, mode: "phased" });
    } catch (err) {
      // A concurrent Prepare for the same VM and destination won the race: its migration is ours too.
      if (err instanceof VmMigratingError) {
        const winner = await existing();
        if (winner) return winner;
      }
      throw err;
    }
  }

  /**
   * Finds the migration a phase call means: by id, or the VM's current or
   * latest one (to `dst`, when given). When the id comes with a VM or a
   * destination, they must agree.
   */
  private async resolve(t: PhaseTarget): Promise<MigrationRecord> {
    if (t.migrationId) {
      const r = await this.getMigration(t.migrationId);
      if (t.vmId && t.vmId !== r.vmId) throw new BadRequestError(`migration ${r.id} is of VM ${r.vmId}, not ${t.vmId}`, { migrationId: r.id });
      if (t.dst && t.dst !== r.dst) throw new BadRequestError(`migration ${r.id} goes to host ${r.dst}, not ${t.dst}`, { migrationId: r.id });
      return r;
    }
    const vmId = checkVmId(t.vmId, "vm_id (or migration_id)");
    if (t.dst) checkHostId(t.dst, "dst_host");
    const vm = await this.journal.getVm(vmId);
    if (vm?.value.migrationId) {
      const r = await this.getMigration(vm.value.migrationId).catch((err) => {
        if (err instanceof UnknownMigrationError) return null; // an import holds the lock; it has no record
        throw err;
      });
      if (r && (!t.dst || r.dst === t.dst)) return r;
    }
    const latest = (await this.listMigrations({ vmId })).find((m) => !t.dst || m.dst === t.dst);
    if (!latest) throw new UnknownMigrationError(`no migration of VM ${vmId}${t.dst ? ` to ${t.dst}` : ""}`, { vmId });
    return latest;
  }

  private driverOf(r: MigrationRecord): MigrationDriver {
    const d = this.drivers.get(r.id);
    if (!d) throw new UnavailableError(`migration ${r.id} (phase ${r.phase}) is driven by coordinator ${r.driver}, not ${this.id}; call that one`, { migrationId: r.id });
    return d;
  }

  /** Waits until the migration reaches one of `phases` or ends. */
  private async until(d: MigrationDriver, phases: Phase[]): Promise<MigrationRecord> {
    let stopped = false;
    void d.done.then(() => (stopped = true));
    for (;;) {
      const r = d.record;
      if (phases.includes(r.phase) || isTerminal(r.phase)) return r;
      if (stopped) {
        // The driver stopped short: another coordinator took the migration over, or the recovery sweep will resume it.
        const now = await this.getMigration(r.id);
        if (phases.includes(now.phase) || isTerminal(now.phase)) return now;
        throw new UnavailableError(`migration ${r.id} (phase ${now.phase}) is driven by coordinator ${now.driver}, not by this call's; ask again`, { migrationId: r.id });
      }
      await Promise.race([d.done, new Promise((res) => setTimeout(res, 5))]);
    }
  }

  async switchover(t: PhaseTarget): Promise<MigrationRecord> {
    const r = await this.resolve(t);
    if (isTerminal(r.phase) || r.phase === Phase.Activated || r.phase === Phase.Released) return r;
    const d = this.driverOf(r);
    d.requestSwitchover();
    return this.until(d, [Phase.Activated, Phase.Released, Phase.Done, Phase.Aborted]);
  }

  async complete(t: PhaseTarget): Promise<MigrationRecord> {
    const r = await this.resolve(t);
    if (isTerminal(r.phase)) return r;
    const d = this.driverOf(r);
    d.requestComplete();
    return d.done;
  }

  async abort(t: PhaseTarget): Promise<MigrationRecord> {
    const r = await this.resolve(t);
    return this.cancel(r.id, t.reason || "aborted by request");
  }

  // ------------------------------------------------------------ hosts and VMs

  listHosts(): (HostInfo & { alive: boolean })[] {
    return this.hosts.list();
  }

  /** The VM's owner: after a commit that is the destination, even before the VM record catches up. */
  private async ownerOf(vmId: string): Promise<{ vm: VmRecord; owner: string; epoch: number }> {
    const vm = (await this.vmRecord(vmId)).value;
    if (vm.migrationId) {
      const m = this.drivers.get(vm.migrationId)?.record ?? (await this.journal.getMigration(vm.migrationId).then((x) => (x && !isUnreadable(x) ? x.value : null)));
      if (m && isCommitted(m.phase)) return { vm, owner: m.dst, epoch: m.epoch + 1 };
    }
    return { vm, owner: vm.owner, epoch: vm.epoch };
  }

  async vmState(vmIdIn: string): Promise<VmSummaryOut> {
    const vmId = checkVmId(vmIdIn);
    const { vm, owner, epoch } = await this.ownerOf(vmId);
    const d = await this.agents.describe({ hostId: owner, vmId, migrationId: "", epoch });
    return { vmId, owner, epoch, digest: d.digest, counts: d.counts as Record<string, number>, migrationId: vm.migrationId ?? "", gen: d.gen, status: d.status };
  }

  async exportVm(vmIdIn: string): Promise<{ hostId: string; document: StateDocument }> {
    const vmId = checkVmId(vmIdIn);
    const { owner, epoch } = await this.ownerOf(vmId);
    const set = new TableSet();
    const receiver = new RoundReceiver({
      reset: async () => set.clear(),
      apply: async (delta) => void set.apply(delta),
      digest: async () => ({ digest: set.digest.toString(), tables: set.digest.tables() }),
      sealed: async () => undefined,
      commit: async () => {
        throw new BadRequestError("an export's seal cannot carry a commit order");
      },
    }, vmId);
    await receiveOnInbox(this.nc, receiver, (inbox) => this.agents.export({ hostId: owner, vmId, migrationId: "", epoch }, inbox, 120_000));
    if (!receiver.finalSealed) throw new NetmigError("INTERNAL", `export of VM ${vmId} ended without a sealed snapshot`, { vmId });
    return { hostId: owner, document: toDocument({ schemaVersion: SCHEMA_VERSION, vmId, tables: set.tables() }) };
  }

  async importVm(hostIdIn: string, documentText: string): Promise<VmSummaryOut> {
    const hostId = checkHostId(hostIdIn, "host_id");
    const state = parseDocument(documentText);
    const vmId = state.vmId;
    this.requireLiveHost(hostId, "import");
    const known = await this.journal.getVm(vmId);
    if (known) throw new VmExistsError(`VM ${vmId} is already managed by netmig (owner ${known.value.owner}); import refused`, { vmId });
    const live = this.hosts.ownersOf(vmId);
    if (live.length > 0) throw new VmExistsError(`VM ${vmId} already has state on host ${live[0]!.hostId}; import refused`, { vmId });
    const migrationId = `import-${newMigrationId()}`;
    const epoch = 1;
    const vm = await this.journal.putVm({ vmId, owner: hostId, epoch, migrationId }, 0).catch((err) => {
      throw err instanceof ConflictError ? new VmExistsError(`VM ${vmId} is being imported concurrently`, { vmId }) : err;
    });
    const target = { hostId, vmId, migrationId, epoch };
    try {
      await this.agents.prepare(target, this.id);
      const digest = StateDigest.of(state.tables);
      const zones: Record<string, number> = {};
      for (const p of state.tables.ports) zones[p.ifaceId] = p.ctZone;
      await sendRound(this.nc, { vmId, baseGen: null, gen: 1, upserts: blocksOf(state.tables), deletes: {} }, {
        subject: subjects.agentChunk(hostId, true), migrationId, vmId, epoch, round: 0, seqBase: 0, final: true,
        digest: digest.toString(), tables: digest.tables(), zones,
      });
      await this.agents.activate(target);
      await this.journal.putVm({ vmId, owner: hostId, epoch, migrationId: null }, vm.revision);
    } catch (err) {
      await this.agents.abort(target).catch(() => undefined);
      await this.journal.deleteVm(vmId).catch(() => undefined);
      throw err;
    }
    this.log.info({ vmId, hostId }, "VM state imported");
    return this.vmState(vmId);
  }

  // ------------------------------------------------------------ recovery

  /** Takes over unfinished migrations that are ours or whose driver's lease expired. */
  private async sweep(): Promise<void> {
    if (this.sweeping || this.closed) return;
    this.sweeping = true;
    try {
      for (const id of await this.journal.migrationIds()) {
        if (this.drivers.has(id) || this.starting.has(id) || this.terminal.has(id)) continue;
        const r = await this.journal.getMigration(id);
        if (!r) continue;
        if (isUnreadable(r)) {
          if (!this.inDoubt.has(id)) this.log.error({ migrationId: id, raw: r.raw }, "migration IN_DOUBT: its record is unreadable; an operator must decide");
          this.inDoubt.set(id, r.raw);
          continue;
        }
        if (isTerminal(r.value.phase)) {
          this.terminal.add(id);
          continue;
        }
        if (r.value.driver !== this.id && r.value.leaseUntil > Date.now()) continue;
        let taken: Versioned<MigrationRecord>;
        try {
          taken = await this.journal.updateMigration({ ...r.value, driver: this.id, leaseUntil: Date.now() + (this.opts.leaseMs ?? 15_000) }, r.revision);
        } catch {
          continue; // someone else took it
        }
        this.log.info({ migrationId: id, phase: r.value.phase, previousDriver: r.value.driver }, "taking over unfinished migration");
        this.track(new MigrationDriver(this.driverDeps(), taken, true));
      }
    } catch (err) {
      this.log.warn({ err }, "recovery sweep failed; retrying");
    } finally {
      this.sweeping = false;
    }
  }

  /** Hosts that come back after a failure: thaw sources and drop staged copies of ended migrations. */
  private async reconcile(h: HostInfo): Promise<void> {
    for (const v of h.vms) {
      if ((v.status !== "frozen" && v.status !== "staged") || !v.migrationId || this.drivers.has(v.migrationId)) continue;
      const key = `${h.hostId}/${v.vmId}/${v.migrationId}`;
      if ((this.reconciled.get(key) ?? 0) > Date.now() - 5000) continue;
      this.reconciled.set(key, Date.now());
      try {
        const r = await this.journal.getMigration(v.migrationId);
        if (isUnreadable(r) || (r && !isTerminal(r.value.phase))) continue;
        // No record: an import (which has none) is in progress while the VM is locked to it.
        if (r === null && (await this.journal.getVm(v.vmId))?.value.migrationId === v.migrationId) continue;
        const epoch = r ? r.value.epoch : v.epoch;
        const target = { hostId: h.hostId, vmId: v.vmId, migrationId: v.migrationId, epoch };
        if (v.status === "staged") await this.agents.abort(target);
        else if (r?.value.phase === Phase.Aborted) await this.agents.thaw(target);
        this.log.info({ hostId: h.hostId, vmId: v.vmId, migrationId: v.migrationId, status: v.status }, "reconciled a host after its migration ended");
      } catch (err) {
        this.log.warn({ err, hostId: h.hostId, vmId: v.vmId }, "reconciliation failed; will retry");
      }
    }
  }
}
