import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryBackend, type MemoryBackendOptions } from "../../agent/backends/memory/backend.js";
import { BadRequestError, NetmigError, UnknownVmError, VmMigratingError } from "../../protocol/errors.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { generateVmState } from "../../protocol/state/generate.js";
import type { StateDelta, Tables } from "../../protocol/state/model.js";
import { keyOf, TABLE_NAMES, TABLES, type AclRow, type ConntrackRow, type PortRow, type TableName } from "../../protocol/state/tables.js";
import { blocksOf, RowBlock, setBlock, type Blocks, type RowSource, type Sources } from "../../protocol/state/row-block.js";

/** A read's rows as they are now, as blocks of their own (a live read's slices view the table, which later writes change). */
function readAll(sources: Sources): Blocks {
  const out: Blocks = {};
  for (const src of Object.values(sources) as RowSource[]) {
    const b = src.slice(0, src.length);
    setBlock(out, new RowBlock(b.table, b.length, b.cols.map((c) => (Array.isArray(c) ? c.slice() : (c as Uint8Array).slice())), b.dicts));
  }
  return out;
}

type Row = Record<string, unknown>;

const dirs: string[] = [];
const open: MemoryBackend[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "netmig-mem-"));
  dirs.push(d);
  return d;
}

async function backend(stateDir: string | null, o: Partial<MemoryBackendOptions> = {}): Promise<MemoryBackend> {
  const b = new MemoryBackend({ stateDir, ...o });
  await b.start();
  open.push(b);
  return b;
}

afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function smallState(vmId: string, seed = 1, firstZone = 10) {
  return generateVmState(vmId, { conntrack: 800, fdb: 100, acls: 40, ports: 3, neighbours: 10, seed, firstZone });
}

/** All live rows of a VM, by table, sorted by key. */
function rowsByTable(b: MemoryBackend, vmId: string): Record<TableName, Row[]> {
  const out = {} as Record<TableName, Row[]>;
  for (const t of TABLE_NAMES) out[t] = b.rowsOf(vmId, t).sort((x, y) => (keyOf(t, x) < keyOf(t, y) ? -1 : 1));
  return out;
}

function portable(t: TableName, rows: Row[]): Row[] {
  const names = TABLES[t].fields.filter((f) => !f.local).map((f) => f.name);
  return rows.map((r) => Object.fromEntries(names.map((n) => [n, r[n]])));
}

const fullChange = (tables: Partial<Tables>) => ({ upserts: blocksOf(tables), deletes: {} });

test("memory-backend - a written VM reloads after a restart with the same digest and portable rows", async () => {
  const dir = tempDir();
  const s = smallState("vm-a");
  const b1 = await backend(dir);
  const gen = await b1.write("vm-a", fullChange(s.tables), true);
  await b1.write("vm-a", { upserts: blocksOf({ acls: [{ ...s.tables.acls[0]!, priority: 1 }] }), deletes: { conntrack: [keyOf("conntrack", s.tables.conntrack[0])] } }, false);
  const before = (await b1.describe("vm-a"))!;
  assert.equal(before.gen, gen + 1);
  const rows1 = rowsByTable(b1, "vm-a");
  await b1.close();

  const b2 = await backend(dir);
  const after = (await b2.describe("vm-a"))!;
  assert.equal(after.digest, before.digest);
  assert.deepEqual(after.tables, before.tables);
  assert.deepEqual(after.counts, before.counts);
  assert.equal(after.gen, before.gen);
  assert.equal(after.frozen, false);
  const rows2 = rowsByTable(b2, "vm-a");
  for (const t of TABLE_NAMES) assert.deepEqual(portable(t, rows2[t]), portable(t, rows1[t]), t);
  assert.deepEqual((await b2.listVms()).map((v) => v.vmId), ["vm-a"]);
});

test("memory-backend - host-local port ids assigned on write survive a restart", async () => {
  const dir = tempDir();
  const s = smallState("vm-ids", 1, 10); // the writer's ports say vnet0/1/2, ofport 1-3, ctZone 10-12
  const b1 = await backend(dir, { firstZone: 200 });
  await b1.write("vm-ids", fullChange(s.tables), true);
  const ports1 = rowsByTable(b1, "vm-ids").ports as unknown as PortRow[];
  // This host assigned its own ids.
  assert.deepEqual(ports1.map((p) => p.ctZone), [200, 201, 202]);
  assert.deepEqual(ports1.map((p) => p.ofport), [1, 2, 3]);
  assert.deepEqual(ports1.map((p) => p.name), ["vnet1", "vnet2", "vnet3"]);
  assert.deepEqual(await b1.portZones("vm-ids"), Object.fromEntries(ports1.map((p) => [p.ifaceId, p.ctZone])));
  await b1.close();

  const b2 = await backend(dir, { firstZone: 200 });
  const ports2 = rowsByTable(b2, "vm-ids").ports as unknown as PortRow[];
  // Replaying the journal must give the rows that were live, not the rows as the writer sent them.
  assert.deepEqual(ports2.map((p) => [p.name, p.ofport, p.ctZone]), ports1.map((p) => [p.name, p.ofport, p.ctZone]));
  assert.deepEqual(await b2.portZones("vm-ids"), Object.fromEntries(ports1.map((p) => [p.ifaceId, p.ctZone])));
});

test("memory-backend - many writes compact the journal and still reload exactly", async () => {
  const dir = tempDir();
  const s = smallState("vm-big");
  const b1 = await backend(dir, { maintenanceMs: 10 });
  await b1.write("vm-big", fullChange(s.tables), true);
  const snap = join(dir, "vms", "vm-big.snap");
  const journal = join(dir, "vms", "vm-big.journal");
  const snap0 = statSync(snap).size;
  // ~12 MiB of journal: 250 ACLs with ~4 KB match strings, rewritten 12 times.
  let written = 0;
  for (let round = 0; round < 12; round++) {
    const acls: AclRow[] = Array.from({ length: 250 }, (_, i) => ({
      id: `big-${i}`, direction: "ingress", priority: round, table: 0, match: `${round}-${i}-`.padEnd(4000, String.fromCharCode(97 + ((round + i) % 26))), actions: "drop",
    }));
    await b1.write("vm-big", { upserts: blocksOf({ acls }), deletes: {} }, false);
    written += 250 * 4000;
  }
  await b1.write("vm-big", { upserts: {}, deletes: { acls: ["big-0", "big-1"] } }, false);
  assert.ok(written > 8 * 1024 * 1024);
  assert.ok(statSync(journal).size > 8 * 1024 * 1024, "the journal grew past the compaction threshold");
  // Compaction runs off the write path, on the maintenance timer.
  const deadline = Date.now() + 5000;
  while (statSync(snap).size <= snap0 + 500_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(statSync(snap).size > snap0 + 500_000, "the journal was compacted into a new snapshot");
  assert.ok(statSync(journal).size < 1024, "the journal was restarted");
  // Writes after the compaction land in the new journal.
  await b1.write("vm-big", { upserts: blocksOf({ conntrack: s.tables.conntrack.slice(0, 50).map((r) => ({ ...r, timeoutSec: 7 })) }), deletes: { fdb: [keyOf("fdb", s.tables.fdb[3])] } }, false);
  await b1.setFrozen("vm-big", true);
  const before = (await b1.describe("vm-big"))!;
  const rows1 = rowsByTable(b1, "vm-big");
  await b1.close();

  const b2 = await backend(dir);
  const after = (await b2.describe("vm-big"))!;
  assert.deepEqual(after, before);
  assert.deepEqual(rowsByTable(b2, "vm-big"), rows1);
  assert.equal(after.counts.acls, 40 + 248);
  assert.equal(after.frozen, true);
});

test("memory-backend - the frozen flag survives a restart and frozen VMs refuse writes", async () => {
  const dir = tempDir();
  const s = smallState("vm-f");
  const b1 = await backend(dir);
  await b1.write("vm-f", fullChange(s.tables), true);
  await b1.setFrozen("vm-f", true);
  await b1.setFrozen("vm-f", true); // idempotent
  const frozenWrite = (b: MemoryBackend) =>
    assert.rejects(b.write("vm-f", { upserts: blocksOf({ acls: [{ ...s.tables.acls[0]!, priority: 3 }] }), deletes: {} }, false), (e: unknown) => {
      assert.ok(e instanceof VmMigratingError, String(e));
      assert.match((e as Error).message, /migrating/);
      assert.equal((e as NetmigError).context.vmId, "vm-f");
      return true;
    });
  await frozenWrite(b1);
  const digest = (await b1.describe("vm-f"))!.digest;
  await b1.close();

  const b2 = await backend(dir);
  assert.equal((await b2.describe("vm-f"))!.frozen, true);
  await frozenWrite(b2);
  assert.equal((await b2.describe("vm-f"))!.digest, digest, "the refused write changed nothing");
  await b2.setFrozen("vm-f", false);
  await b2.write("vm-f", { upserts: blocksOf({ acls: [{ ...s.tables.acls[0]!, priority: 3 }] }), deletes: {} }, false);
  await b2.close();

  const b3 = await backend(dir);
  const v = (await b3.describe("vm-f"))!;
  assert.equal(v.frozen, false);
  assert.notEqual(v.digest, digest);
  assert.equal((b3.rowsOf("vm-f", "acls") as unknown as AclRow[]).find((a) => a.id === s.tables.acls[0]!.id)?.priority, 3);
});

test("memory-backend - unknown VMs and writes to a VM being received are refused", async () => {
  const b = await backend(null);
  await assert.rejects(b.write("vm-x", fullChange({}), false), UnknownVmError);
  await assert.rejects(b.read("vm-x", null), UnknownVmError);
  await assert.rejects(b.setFrozen("vm-x", true), UnknownVmError);
  assert.equal(await b.describe("vm-x"), null);
  const s = smallState("vm-in");
  await b.stage("vm-in", "m1", { vmId: "vm-in", baseGen: null, gen: 1, upserts: blocksOf(s.tables), deletes: {} }, { srcPortZones: {} });
  await assert.rejects(b.write("vm-in", fullChange(s.tables), true), BadRequestError);
  await b.write("vm-live", fullChange(s.tables), true);
  await assert.rejects(b.stage("vm-live", "m2", { vmId: "vm-live", baseGen: null, gen: 1, upserts: {}, deletes: {} }, { srcPortZones: {} }), BadRequestError);
});

/** Stages a source state in two chunks (a full snapshot split, then a delta) and returns the source's zones. */
async function stageFrom(b: MemoryBackend, vmId: string, stagingId: string, src: ReturnType<typeof smallState>): Promise<Record<string, number>> {
  const zones = Object.fromEntries(src.tables.ports.map((p) => [p.ifaceId, p.ctZone]));
  const ct = src.tables.conntrack;
  const half = Math.floor(ct.length / 2);
  const part1: StateDelta = { vmId, baseGen: null, gen: 5, upserts: blocksOf({ ...src.tables, conntrack: ct.slice(0, half) }), deletes: {} };
  const part2: StateDelta = { vmId, baseGen: null, gen: 5, upserts: blocksOf({ conntrack: ct.slice(half) }), deletes: {} };
  await b.stage(vmId, stagingId, part1, { srcPortZones: zones });
  await b.stage(vmId, stagingId, part2, { srcPortZones: zones });
  return zones;
}

test("memory-backend - a sealed staging area survives a restart and activates with the same digest", async () => {
  const dir = tempDir();
  const src = smallState("vm-s", 3, 10);
  const digest = StateDigest.of(src.tables).toString();
  const b1 = await backend(dir, { firstZone: 500 });
  await stageFrom(b1, "vm-s", "mig-1", src);
  let st = (await b1.staged("vm-s", "mig-1"))!;
  assert.equal(st.digest, digest);
  assert.equal(st.sealed, false);
  assert.equal(await b1.describe("vm-s"), null, "staged state is not live");
  await b1.seal("vm-s", "mig-1");
  assert.equal((await b1.staged("vm-s", "mig-1"))!.sealed, true);
  await b1.close();
  assert.ok(existsSync(join(dir, "staged", "vm-s~mig-1.snap")));

  const b2 = await backend(dir, { firstZone: 500 });
  const list = await b2.listStaged();
  assert.equal(list.length, 1);
  st = list[0]!;
  assert.equal(st.vmId, "vm-s");
  assert.equal(st.stagingId, "mig-1");
  assert.equal(st.sealed, true);
  assert.equal(st.digest, digest);
  const v = await b2.activate("vm-s", "mig-1");
  assert.equal(v.digest, digest);
  assert.equal(v.frozen, false);
  assert.equal(await b2.staged("vm-s", "mig-1"), null);
  assert.deepEqual(await b2.listStaged(), []);
  // The staged files moved to the live VM's place.
  assert.equal(existsSync(join(dir, "staged", "vm-s~mig-1.snap")), false);
  assert.equal(existsSync(join(dir, "staged", "vm-s~mig-1.journal")), false);
  assert.ok(existsSync(join(dir, "vms", "vm-s.snap")));
  assert.ok(existsSync(join(dir, "vms", "vm-s.journal")));
  // Activation is idempotent.
  assert.equal((await b2.activate("vm-s", "mig-1")).digest, digest);
  // The portable rows are the source's.
  const rows = rowsByTable(b2, "vm-s");
  for (const t of TABLE_NAMES) {
    const want = (src.tables[t] as unknown as Row[]).slice().sort((x, y) => (keyOf(t, x) < keyOf(t, y) ? -1 : 1));
    assert.deepEqual(portable(t, rows[t]), portable(t, want), t);
  }
  // The activated VM is a normal live VM: writable, and it survives another restart.
  await b2.write("vm-s", { upserts: {}, deletes: { acls: ["acl-0"] } }, false);
  const d2 = (await b2.describe("vm-s"))!.digest;
  await b2.close();
  const b3 = await backend(dir, { firstZone: 500 });
  assert.equal((await b3.describe("vm-s"))!.digest, d2);
  assert.deepEqual(await b3.listStaged(), []);
});

/** Minor page faults this process has taken so far (Linux: /proc/self/stat, field 10). */
const minorFaults = (): number => Number(readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ")[7]);

test("memory-backend - reserveStaging opens an empty area and faults in its room for the sizes before it returns; the full round then stages into it", async () => {
  const b = await backend(tempDir(), { firstZone: 500 });
  // Over 32 MiB in one allocation, so glibc maps it fresh (zero pages, untouched) rather than reusing memory it kept.
  const rows = 800_000;
  let bytes = 0;
  let faultsAtCall = 0;
  const before = minorFaults();
  await b.reserveStaging("vm-r", "mig-r", { conntrack: rows, fdb: 100 }, (n) => {
    bytes = n;
    faultsAtCall = minorFaults() - before;
  });
  const faults = minorFaults() - before;
  const pages = bytes / 4096;
  assert.ok(bytes >= rows * 40, `${bytes} bytes for ${rows} conntrack rows`);
  assert.ok(faultsAtCall < pages / 10, `told before touching: ${faultsAtCall} faults already, of ${pages} pages`);
  assert.ok(faults >= pages * 0.9, `${faults} page faults while reserving ${pages} pages`);
  const empty = (await b.staged("vm-r", "mig-r"))!;
  assert.equal(empty.counts.conntrack, 0);
  assert.equal(empty.sealed, false);

  const src = smallState("vm-r", 7, 10);
  await stageFrom(b, "vm-r", "mig-r", src);
  assert.equal((await b.staged("vm-r", "mig-r"))!.digest, StateDigest.of(src.tables).toString());
  await b.seal("vm-r", "mig-r");
  assert.equal((await b.activate("vm-r", "mig-r")).digest, StateDigest.of(src.tables).toString());
  await assert.rejects(b.reserveStaging("vm-r", "mig-2", { conntrack: 10 }), (e: unknown) => e instanceof BadRequestError && /already live/.test((e as Error).message));
});

test("memory-backend - remapped conntrack zones of a sealed staging area survive a restart", async () => {
  const dir = tempDir();
  const src = smallState("vm-z", 4, 10);
  const b1 = await backend(dir, { firstZone: 500 });
  const zones = await stageFrom(b1, "vm-z", "mig-z", src);
  await b1.seal("vm-z", "mig-z");
  await b1.close();
  const b2 = await backend(dir, { firstZone: 500 });
  await b2.activate("vm-z", "mig-z");
  const ports = b2.rowsOf("vm-z", "ports") as unknown as PortRow[];
  const myZone = new Map(ports.map((p) => [p.ifaceId, p.ctZone]));
  assert.deepEqual([...myZone.values()].sort(), [500, 501, 502], "ports carry this host's zones after the restart");
  const ifaceOfSrcZone = new Map(Object.entries(zones).map(([iface, z]) => [z, iface]));
  for (const c of b2.rowsOf("vm-z", "conntrack") as unknown as ConntrackRow[]) {
    const want = myZone.get(ifaceOfSrcZone.get(src.tables.conntrack.find((r) => keyOf("conntrack", r) === keyOf("conntrack", c))!.zone)!);
    assert.equal(c.zone, want, `conntrack ${keyOf("conntrack", c)} is in this host's zone of its port`);
  }
});

test("memory-backend - an unsealed staging area is dropped on restart", async () => {
  const dir = tempDir();
  const b1 = await backend(dir);
  await stageFrom(b1, "vm-u", "mig-u", smallState("vm-u"));
  await stageFrom(b1, "vm-k", "mig-k", smallState("vm-k", 2));
  await b1.seal("vm-k", "mig-k");
  assert.equal((await b1.listStaged()).length, 2);
  await b1.close();
  const b2 = await backend(dir);
  const list = await b2.listStaged();
  assert.deepEqual(list.map((s) => [s.vmId, s.stagingId, s.sealed]), [["vm-k", "mig-k", true]]);
  assert.equal(await b2.staged("vm-u", "mig-u"), null);
  assert.deepEqual(readdirSync(join(dir, "staged")).filter((f) => f.startsWith("vm-u")), [], "its files are removed");
  // The VM can now be received again from scratch.
  await stageFrom(b2, "vm-u", "mig-u2", smallState("vm-u"));
  assert.equal((await b2.staged("vm-u", "mig-u2"))!.digest, StateDigest.of(smallState("vm-u").tables).toString());
});

test("memory-backend - a staging area changed after its seal is not sealed after a restart", async () => {
  const dir = tempDir();
  const src = smallState("vm-r", 6);
  const b1 = await backend(dir);
  await stageFrom(b1, "vm-r", "mig-r", src);
  await b1.seal("vm-r", "mig-r");
  // Another delta arrives after the seal: the area is no longer complete.
  await b1.stage("vm-r", "mig-r", { vmId: "vm-r", baseGen: 5, gen: 6, upserts: blocksOf({ acls: [{ ...src.tables.acls[0]!, priority: 9 }] }), deletes: {} }, { srcPortZones: {} });
  assert.equal((await b1.staged("vm-r", "mig-r"))!.sealed, false);
  await b1.close();
  const b2 = await backend(dir);
  const st = await b2.staged("vm-r", "mig-r");
  assert.ok(st === null || st.sealed === false, `after a restart the area must not come back sealed (got sealed=${st?.sealed})`);
});

test("memory-backend - stage remaps ports to this host's ids and conntrack zones through srcPortZones", async () => {
  const b = await backend(null, { firstZone: 300 });
  // Another VM already holds the first ids of this host.
  await b.write("vm-other", fullChange({ ports: smallState("vm-other").tables.ports.slice(0, 1) }), true);
  const src = smallState("vm-m", 8, 40); // source zones 40, 41, 42
  const zones = Object.fromEntries(src.tables.ports.map((p) => [p.ifaceId, p.ctZone]));
  assert.deepEqual(Object.values(zones), [40, 41, 42]);
  const stray: ConntrackRow = { ...src.tables.conntrack[0]!, origSport: 9, zone: 7 }; // a zone of no port
  await b.stage("vm-m", "m", { vmId: "vm-m", baseGen: null, gen: 1, upserts: blocksOf({ ...src.tables, conntrack: [...src.tables.conntrack, stray] }), deletes: {} }, { srcPortZones: zones });
  const st = (await b.staged("vm-m", "m"))!;
  assert.equal(st.digest, StateDigest.of({ ...src.tables, conntrack: [...src.tables.conntrack, stray] }).toString(), "remapping leaves the digest alone");
  await b.activate("vm-m", "m");
  const ports = b.rowsOf("vm-m", "ports") as unknown as PortRow[];
  const mine = new Map(ports.map((p) => [p.ifaceId, p]));
  const p0 = mine.get("vm-m-if0")!;
  const p1 = mine.get("vm-m-if1")!;
  const p2 = mine.get("vm-m-if2")!;
  assert.deepEqual([p0.ctZone, p1.ctZone, p2.ctZone], [301, 302, 303]);
  assert.deepEqual([p0.ofport, p1.ofport, p2.ofport], [2, 3, 4]);
  assert.deepEqual([p0.name, p1.name, p2.name], ["vnet2", "vnet3", "vnet4"]);
  assert.deepEqual(await b.portZones("vm-m"), { "vm-m-if0": 301, "vm-m-if1": 302, "vm-m-if2": 303 });
  const srcZoneToMine = new Map([[40, 301], [41, 302], [42, 303]]);
  const byKey = new Map((b.rowsOf("vm-m", "conntrack") as unknown as ConntrackRow[]).map((r) => [keyOf("conntrack", r), r]));
  assert.equal(byKey.size, src.tables.conntrack.length + 1);
  for (const r of src.tables.conntrack) assert.equal(byKey.get(keyOf("conntrack", r))!.zone, srcZoneToMine.get(r.zone), keyOf("conntrack", r));
  assert.equal(byKey.get(keyOf("conntrack", stray))!.zone, 7, "a zone of no port is left alone");
  // The other VM's ports kept theirs.
  assert.deepEqual((b.rowsOf("vm-other", "ports") as unknown as PortRow[]).map((p) => p.ctZone), [300]);
});

test("memory-backend - discard and remove are idempotent", async () => {
  const dir = tempDir();
  const b = await backend(dir, { firstZone: 50 });
  await b.discard("vm-none", "x");
  await b.remove("vm-none");
  const s = smallState("vm-d");
  await stageFrom(b, "vm-d", "m", s);
  await b.discard("vm-d", "m");
  await b.discard("vm-d", "m");
  assert.equal(await b.staged("vm-d", "m"), null);
  assert.deepEqual(readdirSync(join(dir, "staged")), []);
  await b.write("vm-d", fullChange(s.tables), true);
  assert.ok((await b.describe("vm-d"))!);
  await b.remove("vm-d");
  await b.remove("vm-d");
  assert.equal(await b.describe("vm-d"), null);
  assert.deepEqual(await b.listVms(), []);
  assert.deepEqual(readdirSync(join(dir, "vms")), []);
  await assert.rejects(b.read("vm-d", null), UnknownVmError);
  await b.close();
  const b2 = await backend(dir, { firstZone: 50 });
  assert.deepEqual(await b2.listVms(), []);
  assert.deepEqual(await b2.listStaged(), []);
  // Re-creating after remove starts fresh.
  await b2.write("vm-d", fullChange({ acls: s.tables.acls.slice(0, 2) }), true);
  assert.equal((await b2.describe("vm-d"))!.counts.acls, 2);
  assert.equal((await b2.describe("vm-d"))!.counts.conntrack, 0);
});

test("memory-backend - read(vm, null) then writes then read(vm, gen) gives exactly the delta", async () => {
  const b = await backend(null);
  const s = smallState("vm-rd");
  await b.write("vm-rd", fullChange(s.tables), true);
  const read = await b.read("vm-rd", null);
  // The rows as they are at the read (the read hands out the live tables).
  const full = { ...read, upserts: readAll(read.upserts) };
  assert.equal(full.baseGen, null);
  assert.equal(full.digest, "", "a running VM's tracked full read does not vouch for its rows: the next delta makes them exact");
  assert.equal(full.upserts.conntrack?.length, 800);
  assert.deepEqual(full.deletes, {});
  const ct = s.tables.conntrack;
  const changed = ct.slice(0, 5).map((r) => ({ ...r, timeoutSec: 1 }));
  await b.write("vm-rd", { upserts: blocksOf({ conntrack: changed }), deletes: { conntrack: [keyOf("conntrack", ct[10]), keyOf("conntrack", ct[11])] } }, false);
  await b.write("vm-rd", { upserts: blocksOf({ acls: [{ ...s.tables.acls[2]!, actions: "drop" }] }), deletes: { conntrack: [keyOf("conntrack", ct[0])] } }, false);
  const deltaRead = await b.read("vm-rd", full.gen);
  const delta = { ...deltaRead, upserts: readAll(deltaRead.upserts) };
  assert.equal(delta.baseGen, full.gen);
  assert.equal(delta.gen, full.gen + 2);
  const sortedKeys = (rows: Iterable<unknown> | undefined, t: TableName) => [...(rows ?? [])].map((r) => keyOf(t, r)).sort();
  assert.deepEqual(sortedKeys(delta.upserts.conntrack, "conntrack"), sortedKeys(changed.slice(1), "conntrack"));
  assert.deepEqual(delta.upserts.conntrack!.rows().find((r) => keyOf("conntrack", r) === keyOf("conntrack", changed[1]))!.timeoutSec, 1);
  assert.deepEqual(delta.upserts.acls?.rows(), [{ ...s.tables.acls[2]!, actions: "drop" }]);
  assert.deepEqual([...(delta.deletes.conntrack ?? [])].sort(), [keyOf("conntrack", ct[0]), keyOf("conntrack", ct[10]), keyOf("conntrack", ct[11])].sort());
  assert.deepEqual(Object.keys(delta.upserts).sort(), ["acls", "conntrack"]);
  assert.deepEqual(Object.keys(delta.deletes), ["conntrack"]);
  assert.equal(delta.digest, (await b.describe("vm-rd"))!.digest);
  // Applying the delta to the full snapshot gives the live digest.
  const replica = StateDigest.of(full.upserts);
  assert.equal(replica.toString(), StateDigest.of(s.tables).toString());
  const fullByKey = new Map(full.upserts.conntrack!.rows().map((r) => [keyOf("conntrack", r), r]));
  for (const k of delta.deletes.conntrack!) replica.remove("conntrack", fullByKey.get(k));
  for (const r of delta.upserts.conntrack!) {
    replica.remove("conntrack", fullByKey.get(keyOf("conntrack", r)));
    replica.add("conntrack", r);
  }
  replica.remove("acls", s.tables.acls[2]);
  replica.add("acls", delta.upserts.acls!.row(0));
  assert.equal(replica.toString(), delta.digest);
  // Nothing changed since the delta's gen.
  const none = await b.read("vm-rd", delta.gen);
  assert.deepEqual([none.upserts, none.deletes], [{}, {}]);
  // Tracking ends with the migration.
  await b.endTracking("vm-rd");
  await assert.rejects(b.read("vm-rd", delta.gen), BadRequestError);
});

test("memory-backend - read(vm, null, false) does not start tracking", async () => {
  const b = await backend(null);
  const s = smallState("vm-nt");
  await b.write("vm-nt", fullChange(s.tables), true);
  const exp = await b.read("vm-nt", null, false);
  await b.write("vm-nt", { upserts: {}, deletes: { acls: ["acl-0"] } }, false);
  await assert.rejects(b.read("vm-nt", exp.gen), (e: unknown) => e instanceof BadRequestError && /tracking is off/.test((e as Error).message));
  // A tracking read later starts it; an export in between does not restart it.
  const full = await b.read("vm-nt", null);
  await b.write("vm-nt", { upserts: {}, deletes: { acls: ["acl-1"] } }, false);
  await b.read("vm-nt", null, false);
  await b.read("vm-nt", null);
  const d = await b.read("vm-nt", full.gen);
  assert.deepEqual(d.deletes, { acls: ["acl-1"] });
  // An export of a running VM is exact, and later writes do not reach it.
  const now = (await b.describe("vm-nt"))!.digest;
  const exp2 = await b.read("vm-nt", null, false);
  assert.equal(exp2.digest, now);
  await b.write("vm-nt", { upserts: {}, deletes: { acls: ["acl-2"], conntrack: [keyOf("conntrack", s.tables.conntrack[0])] } }, false);
  assert.equal(StateDigest.of(readAll(exp2.upserts)).toString(), now);
  // A frozen VM does not change while it is read: its full read is exact.
  await b.setFrozen("vm-nt", true);
  const frozen = await b.read("vm-nt", null);
  assert.equal(frozen.digest, (await b.describe("vm-nt"))!.digest);
  assert.equal(StateDigest.of(readAll(frozen.upserts)).toString(), frozen.digest);
});

test("memory-backend - brief listings leave out digests and counts, a describe that is not fresh leaves out digests only; full ones carry them", async () => {
  const b = await backend(null);
  const state = generateVmState("vm-brief", { conntrack: 200, seed: 9 });
  await b.write("vm-brief", { upserts: blocksOf(state.tables), deletes: {} }, true);
  await b.stage("vm-in", "m-1", { vmId: "vm-in", baseGen: null, gen: 1, upserts: blocksOf(generateVmState("vm-in", { conntrack: 10, seed: 2 }).tables), deletes: {} }, { srcPortZones: {} });
  const [full] = await b.listVms();
  const [brief] = await b.listVms(true);
  assert.equal(full!.digest, StateDigest.of(state.tables).toString());
  assert.equal(full!.counts.conntrack, 200);
  assert.deepEqual(brief, { vmId: "vm-brief", gen: full!.gen, digest: "", tables: {}, counts: {}, frozen: false });
  assert.deepEqual(await b.describe("vm-brief", false), { ...brief, counts: full!.counts }, "describe without a fresh read: no digests, but the counts (a stop-and-copy's sizes)");
  assert.deepEqual(await b.describe("vm-brief"), full);
  const [stagedBrief] = await b.listStaged(true);
  assert.equal(stagedBrief!.stagingId, "m-1");
  assert.equal(stagedBrief!.digest, "");
  assert.notEqual((await b.listStaged())[0]!.digest, "");
});

test("memory-backend - churn skips a frozen VM instead of building changes the write path refuses", async () => {
  const b = await backend(null, { churn: { rowsPerSec: 2000, tickMs: 5 } });
  await b.write("vm-churn", { upserts: blocksOf(generateVmState("vm-churn", { conntrack: 500, seed: 4 }).tables), deletes: {} }, true);
  // Count the churn's writes (it writes through the backend's write path).
  let writes = 0;
  const inner = b as unknown as { writeSync: (...a: unknown[]) => unknown };
  const writeSync = inner.writeSync.bind(b);
  inner.writeSync = (...a: unknown[]) => {
    writes++;
    return writeSync(...a);
  };
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const deadline = Date.now() + 5000;
  while (writes === 0 && Date.now() < deadline) await wait(5);
  assert.ok(writes > 0, "churn writes while the VM is live");
  await b.setFrozen("vm-churn", true);
  const gen = (await b.describe("vm-churn"))!.gen;
  writes = 0;
  await wait(100);
  assert.equal(writes, 0, "no churn write attempted while frozen");
  assert.equal((await b.describe("vm-churn"))!.gen, gen);
  await b.setFrozen("vm-churn", false);
  while (writes === 0 && Date.now() < deadline + 5000) await wait(5);
  assert.ok(writes > 0, "churn resumes after the thaw");
});
