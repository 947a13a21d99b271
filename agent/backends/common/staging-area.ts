/**
 * A staging area on a destination: the rows received for one incoming
 * migration (already remapped to this host), their incremental digest, and
 * persistence to the state directory when sealed.
 *
 * `removals` tells a backend, before `apply`, which rows a delta will take
 * out, so it can remove them from its dataplane too.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeBlock, decodeColumns } from "../../../protocol/codec/columnar.js";
import { pack, unpack } from "../../../protocol/codec/packr.js";
import { BadRequestError, InvalidStateError, NotStagedError } from "../../../protocol/errors.js";
import { canonicalJson, StateDigest } from "../../../protocol/state/digest.js";
import { emptyTables, tableCounts, type StateDelta, type Tables } from "../../../protocol/state/model.js";
import { keyOf, TABLE_NAMES, TABLES, type TableName } from "../../../protocol/state/tables.js";
import { setBlock } from "../../../protocol/state/row-block.js";
import type { StagedSummary } from "../backend.js";

type Row = Record<string, unknown>;

function sameRow(t: TableName, a: Row, b: Row): boolean {
  for (const fl of TABLES[t].fields) {
    const x = a[fl.name];
    const y = b[fl.name];
    if (x === y) continue;
    if (fl.type === "json" && canonicalJson(x) === canonicalJson(y)) continue;
    return false;
  }
  return true;
}

export class StagingArea {
  gen = 0;
  sealed = false;
  readonly digest = new StateDigest();
  private readonly tables = new Map<TableName, Map<string, Row>>();
  /** When each row was last written to the dataplane, by `${table}|${key}` (ms). */
  readonly loadedAt = new Map<string, number>();
  /** Backend-specific small data (allocated zones ...), persisted with the area. */
  meta: Record<string, unknown> = {};

  constructor(readonly vmId: string, readonly stagingId: string) {
    for (const t of TABLE_NAMES) this.tables.set(t, new Map());
  }

  /**
   * The rows `apply(delta)` will remove from table `t`, by key: the delta's
   * deletes. Staging is additive whatever `delta.baseGen` says (a full
   * snapshot arrives in many chunks; the area is emptied before it starts).
   */
  removals(delta: StateDelta, t: TableName): Map<string, Row> {
    const cur = this.tables.get(t)!;
    const out = new Map<string, Row>();
    for (const key of delta.deletes[t] ?? []) {
      const row = cur.get(key);
      if (row) out.set(key, row);
    }
    return out;
  }

  /**
   * Applies a chunk's upserts and deletes; rows must already be remapped.
   * `rows` holds tables' upserts already built as objects (the caller had to
   * build them anyway), so they are not built twice.
   */
  apply(delta: StateDelta, rows: Partial<Record<TableName, readonly unknown[]>> = {}): void {
    for (const t of TABLE_NAMES) {
      for (const [key, row] of this.removals(delta, t)) this.del(t, key, row);
      const cur = this.tables.get(t)!;
      for (const row of (rows[t] ?? delta.upserts[t] ?? []) as Iterable<Row>) {
        const key = keyOf(t, row);
        const old = cur.get(key);
        if (old && sameRow(t, old, row)) continue;
        if (old) this.digest.remove(t, old);
        cur.set(key, row);
        this.digest.add(t, row);
      }
    }
    this.gen = delta.gen;
  }

  private del(t: TableName, key: string, row: Row): void {
    this.tables.get(t)!.delete(key);
    this.digest.remove(t, row);
    this.loadedAt.delete(`${t}|${key}`);
  }

  rows<T extends TableName>(t: T): Tables[T] {
    return [...this.tables.get(t)!.values()] as unknown as Tables[T];
  }

  snapshot(): Tables {
    const out = emptyTables();
    for (const t of TABLE_NAMES) (out as unknown as Record<TableName, Row[]>)[t] = [...this.tables.get(t)!.values()];
    return out;
  }

  summary(): StagedSummary {
    return {
      vmId: this.vmId,
      stagingId: this.stagingId,
      gen: this.gen,
      digest: this.digest.toString(),
      tables: this.digest.tables(),
      counts: tableCounts(this.snapshot()),
      sealed: this.sealed,
    };
  }

  // ------------------------------------------------------------ persistence

  static fileName(dir: string, vmId: string, stagingId: string): string {
    return join(dir, "staging", `${encodeURIComponent(vmId)}~${encodeURIComponent(stagingId)}.bin`);
  }

  /** Writes the area atomically (tmp + rename). */
  async save(dir: string): Promise<void> {
    await mkdir(join(dir, "staging"), { recursive: true });
    const file = StagingArea.fileName(dir, this.vmId, this.stagingId);
    const blocks = TABLE_NAMES.map((t) => encodeBlock(t, [...this.tables.get(t)!.values()]));
    const body = pack({
      v: 1, vmId: this.vmId, stagingId: this.stagingId, gen: this.gen, sealed: this.sealed,
      meta: this.meta, loadedAt: [...this.loadedAt.entries()], blocks,
    });
    await writeFile(`${file}.tmp`, body);
    await rename(`${file}.tmp`, file);
  }

  async deleteFile(dir: string): Promise<void> {
    await rm(StagingArea.fileName(dir, this.vmId, this.stagingId), { force: true });
  }

  /** Loads every persisted area of a state directory. */
  static async loadAll(dir: string): Promise<StagingArea[]> {
    let names: string[];
    try {
      names = await readdir(join(dir, "staging"));
    } catch {
      return [];
    }
    const out: StagingArea[] = [];
    for (const name of names) {
      if (!name.endsWith(".bin")) continue;
      const file = join(dir, "staging", name);
      const raw = unpack(await readFile(file), 4 * 1024 * 1024 * 1024) as Record<string, unknown>;
      if (raw.v !== 1 || typeof raw.vmId !== "string" || typeof raw.stagingId !== "string" || !Array.isArray(raw.blocks)) {
        throw new InvalidStateError(`${file}: not a netmig staging area`);
      }
      const area = new StagingArea(raw.vmId, raw.stagingId);
      const delta: StateDelta = { vmId: raw.vmId, baseGen: null, gen: Number(raw.gen), upserts: {}, deletes: {} };
      for (const b of raw.blocks) {
        const block = decodeColumns(b, file);
        setBlock(delta.upserts, block);
      }
      area.apply(delta);
      area.sealed = raw.sealed === true;
      area.meta = (raw.meta ?? {}) as Record<string, unknown>;
      for (const [k, v] of (raw.loadedAt ?? []) as [string, number][]) area.loadedAt.set(k, v);
      out.push(area);
    }
    return out;
  }
}

/**
 * A backend's staging areas, by VM and staging id, persisted in one state
 * directory: what the ovs and conntrack backends keep for incoming VMs.
 */
export class StagingAreas {
  private readonly byKey = new Map<string, StagingArea>();

  constructor(private readonly dir: string) {}

  private static key(vmId: string, stagingId: string): string {
    return `${vmId}\u0000${stagingId}`;
  }

  /** Loads the areas persisted in the state directory. */
  async load(): Promise<void> {
    for (const a of await StagingArea.loadAll(this.dir)) this.byKey.set(StagingAreas.key(a.vmId, a.stagingId), a);
  }

  get(vmId: string, stagingId: string): StagingArea | undefined {
    return this.byKey.get(StagingAreas.key(vmId, stagingId));
  }

  /** The area to stage into (created on first use); refused once sealed. */
  open(vmId: string, stagingId: string): StagingArea {
    const key = StagingAreas.key(vmId, stagingId);
    let area = this.byKey.get(key);
    if (!area) this.byKey.set(key, (area = new StagingArea(vmId, stagingId)));
    if (area.sealed) throw new BadRequestError(`staging area ${stagingId} of VM ${vmId} is sealed`, { vmId });
    return area;
  }

  /** Seals an area and persists it. */
  async seal(vmId: string, stagingId: string): Promise<void> {
    const area = this.get(vmId, stagingId);
    if (!area) throw new NotStagedError(`no staging area ${stagingId} for VM ${vmId}`, { vmId });
    area.sealed = true;
    await area.save(this.dir);
  }

  /** Forgets an area and deletes its file. */
  async delete(vmId: string, stagingId: string): Promise<void> {
    this.byKey.delete(StagingAreas.key(vmId, stagingId));
    await rm(StagingArea.fileName(this.dir, vmId, stagingId), { force: true });
  }

  summary(vmId: string, stagingId: string): StagedSummary | null {
    return this.get(vmId, stagingId)?.summary() ?? null;
  }

  list(): StagedSummary[] {
    return [...this.byKey.values()].map((a) => a.summary());
  }

  /** True when some area holds state for `vmId` (a VM on its way to this host). */
  hasVm(vmId: string): boolean {
    for (const a of this.byKey.values()) if (a.vmId === vmId) return true;
    return false;
  }

  /** Conntrack zones allocated to the areas' ports (`meta.zones`). */
  zones(): Set<number> {
    const out = new Set<number>();
    for (const a of this.byKey.values()) for (const z of Object.values((a.meta.zones ?? {}) as Record<string, number>)) out.add(z);
    return out;
  }
}
