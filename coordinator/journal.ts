/**
 * The coordinator's durable journal in JetStream KV: migration records
 * (bucket netmig-migrations, key = migration id) and VM ownership (bucket
 * netmig-vms, key = VM id; names in protocol/subjects.ts). Every write is a compare-and-set on the
 * revision that was read; a lost race surfaces as a ConflictError.
 */
import type { KV, NatsConnection } from "nats";
import { ConflictError } from "../protocol/errors.js";
import { KV_BUCKETS } from "../protocol/subjects.js";
import { encodeRecord, parseMigrationRecord, parseVmRecord, type MigrationRecord, type VmRecord } from "./record.js";

export interface Versioned<T> {
  value: T;
  revision: number;
}

/** A record that exists but cannot be parsed: the migration is IN_DOUBT. */
export interface Unreadable {
  key: string;
  revision: number;
  raw: string;
}

export interface JournalOptions {
  /** KV replicas (3 on a JetStream cluster). Default 1. */
  replicas?: number;
}

export class Journal {
  private constructor(private readonly migrations: KV, private readonly vms: KV) {}

  static async open(nc: NatsConnection, opts: JournalOptions = {}): Promise<Journal> {
    const js = nc.jetstream();
    const cfg = { history: 5, replicas: opts.replicas ?? 1 };
    const migrations = await js.views.kv(KV_BUCKETS.migrations, cfg);
    const vms = await js.views.kv(KV_BUCKETS.vms, cfg);
    return new Journal(migrations, vms);
  }

  // ---------------------------------------------------------------- migrations

  async createMigration(r: MigrationRecord): Promise<Versioned<MigrationRecord>> {
    try {
      const revision = await this.migrations.create(r.id, encodeRecord(r));
      return { value: r, revision };
    } catch (err) {
      throw new ConflictError(`migration ${r.id} already exists`, { migrationId: r.id }, { cause: err });
    }
  }

  /** Compare-and-set: fails with ConflictError if the record changed since `revision`. */
  async updateMigration(r: MigrationRecord, revision: number): Promise<Versioned<MigrationRecord>> {
    try {
      const next = await this.migrations.update(r.id, encodeRecord(r), revision);
      return { value: r, revision: next };
    } catch (err) {
      throw new ConflictError(`migration ${r.id} was changed by someone else (revision ${revision} is stale)`, { migrationId: r.id, vmId: r.vmId }, { cause: err });
    }
  }

  async getMigration(id: string): Promise<Versioned<MigrationRecord> | Unreadable | null> {
    const e = await this.migrations.get(id);
    if (!e || e.operation !== "PUT") return null;
    const value = parseMigrationRecord(e.value);
    if (!value) return { key: id, revision: e.revision, raw: new TextDecoder().decode(e.value).slice(0, 200) };
    return { value, revision: e.revision };
  }

  /** Removes a record that never took effect (a lost race for the VM lock). */
  async deleteMigration(id: string): Promise<void> {
    await this.migrations.purge(id);
  }

  migrationIds(): Promise<string[]> {
    return keysOf(this.migrations);
  }

  // ---------------------------------------------------------------- VMs

  async getVm(vmId: string): Promise<Versioned<VmRecord> | null> {
    const e = await this.vms.get(vmId);
    if (!e || e.operation !== "PUT") return null;
    const value = parseVmRecord(e.value);
    if (!value) throw new ConflictError(`the ownership record of VM ${vmId} is unreadable`, { vmId });
    return { value, revision: e.revision };
  }

  /** Creates (revision 0) or compare-and-sets a VM record. */
  async putVm(r: VmRecord, revision: number): Promise<Versioned<VmRecord>> {
    try {
      const next = revision === 0 ? await this.vms.create(r.vmId, encodeRecord(r)) : await this.vms.update(r.vmId, encodeRecord(r), revision);
      return { value: r, revision: next };
    } catch (err) {
      throw new ConflictError(`the ownership record of VM ${r.vmId} changed concurrently`, { vmId: r.vmId }, { cause: err });
    }
  }

  /** Forgets a VM whose import failed. */
  async deleteVm(vmId: string): Promise<void> {
    await this.vms.purge(vmId);
  }

  vmIds(): Promise<string[]> {
    return keysOf(this.vms);
  }
}

async function keysOf(kv: KV): Promise<string[]> {
  const out: string[] = [];
  for await (const k of await kv.keys()) out.push(k);
  return out;
}

export function isUnreadable(x: Versioned<MigrationRecord> | Unreadable | null): x is Unreadable {
  return x !== null && "raw" in x;
}
