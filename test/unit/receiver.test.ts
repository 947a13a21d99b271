import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeColumns } from "../../protocol/codec/columnar.js";
import { pack, unpack } from "../../protocol/codec/packr.js";
import { BadRequestError, DigestMismatchError } from "../../protocol/errors.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { generateVmState } from "../../protocol/state/generate.js";
import type { StateDelta } from "../../protocol/state/model.js";
import { TableSet, type Change } from "../../protocol/state/table-set.js";
import { keyOf, TABLE_NAMES, type ConntrackRow, type FdbRow, type TableName } from "../../protocol/state/tables.js";
import { RoundReceiver, type StageTarget } from "../../protocol/transfer/receiver.js";
import type { SealReply } from "../../protocol/transfer/chunks.js";
import type { CommitOrder, CommitResult } from "../../protocol/agent-api.js";
import { ConflictError } from "../../protocol/errors.js";
import { blocksOf } from "../../protocol/state/row-block.js";

const VM = "vm-rx";

/** A staging target holding a TableSet, counting what it is asked to do. */
class SetTarget implements StageTarget {
  set = new TableSet();
  resets = 0;
  applies = 0;
  sealedCalls = 0;
  zones: Record<string, number>[] = [];
  async reset(): Promise<void> {
    this.set = new TableSet();
    this.resets++;
  }
  async apply(delta: StateDelta, zones: Record<string, number>): Promise<void> {
    this.set.apply({ upserts: delta.upserts, deletes: delta.deletes });
    this.applies++;
    this.zones.push(zones);
  }
  async digest(): Promise<SealReply> {
    return { digest: this.set.digest.toString(), tables: this.set.digest.tables() };
  }
  async sealed(): Promise<void> {
    this.sealedCalls++;
  }
  /** Commit orders carried out, in order; a set `refuse` makes the next one fail. */
  commits: CommitOrder[] = [];
  refuse: Error | null = null;
  async commit(order: CommitOrder): Promise<CommitResult> {
    assert.equal(this.sealedCalls > 0, true, "the staged state is sealed before the commit");
    if (this.refuse) throw this.refuse;
    this.commits.push(order);
    return { revision: order.revision + 1, activatedAtMs: 1, digest: this.set.digest.toString(), gen: 0 };
  }
}

/** Through msgpack, as on the wire. */
const wire = (v: unknown): unknown => unpack(pack(v));

interface Round {
  chunks: unknown[];
  seal: Record<string, unknown>;
}

/** Builds a round's chunk bodies (like sender.ts: one block per chunk, deletes in their own chunks) and its seal. */
function buildRound(round: number, baseGen: number | null, gen: number, change: Change, digest: StateDigest, zones: Record<string, number>, final = false, rowsPerChunk = 700): Round {
  const header = { round, baseGen, gen, zones };
  const chunks: unknown[] = [];
  for (const t of TABLE_NAMES) {
    const rows = change.upserts[t];
    for (let i = 0; i < (rows?.length ?? 0); i += rowsPerChunk) chunks.push(wire({ ...header, blocks: [encodeColumns(rows!.slice(i, i + rowsPerChunk))], deletes: {} }));
  }
  for (const t of TABLE_NAMES) {
    const keys = change.deletes[t] ?? [];
    if (keys.length) chunks.push(wire({ ...header, blocks: [], deletes: { [t]: keys } }));
  }
  const seal = wire({ round, baseGen, gen, chunks: chunks.length, digest: digest.toString(), tables: digest.tables(), final }) as Record<string, unknown>;
  return { chunks, seal };
}

function source(): { src: TableSet; zones: Record<string, number> } {
  const state = generateVmState(VM, { conntrack: 3000, fdb: 400, acls: 50, ports: 2, seed: 4 });
  const src = new TableSet();
  src.apply({ upserts: blocksOf(state.tables), deletes: {} });
  src.startTracking();
  const zones = Object.fromEntries(state.tables.ports.map((p) => [p.ifaceId, p.ctZone]));
  return { src, zones };
}

function fullRound(src: TableSet, zones: Record<string, number>, round = 0, final = false): Round {
  return buildRound(round, null, src.gen, { upserts: src.full(), deletes: {} }, src.digest, zones, final);
}

/** Some churn on the source: updates, deletes and inserts in conntrack and fdb. */
function churn(src: TableSet, salt: number): void {
  const ct = Array.from(src.rows("conntrack")).slice(0, 300) as unknown as ConntrackRow[];
  src.apply({
    upserts: blocksOf({ conntrack: ct.slice(0, 200).map((r) => ({ ...r, timeoutSec: 1000 + salt })) }),
    deletes: { conntrack: ct.slice(200, 260).map((r) => keyOf("conntrack", r)) },
  });
  const fdb = Array.from(src.rows("fdb")).slice(0, 10) as unknown as FdbRow[];
  src.apply({
    upserts: blocksOf({ fdb: fdb.map((r) => ({ ...r, ageSec: salt })), acls: [{ id: `new-${salt}`, direction: "egress", priority: 1, table: 0, match: "udp", actions: "drop" }] }),
    deletes: { acls: ["acl-1"] },
  });
}

async function send(rx: RoundReceiver, r: Round, seq0: number): Promise<{ seq: number; reply: SealReply }> {
  let seq = seq0;
  for (const c of r.chunks) {
    const ack = await rx.onChunk(seq, c);
    assert.deepEqual(ack, { seq, applied: true });
    seq++;
  }
  const reply = await rx.onSeal(seq, r.seal);
  return { seq: seq + 1, reply };
}

async function rejectsWith(p: Promise<unknown>, C: new (...a: never[]) => Error, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof C, `expected ${C.name}, got ${String(err)}`);
    assert.match((err as Error).message, re);
    return true;
  });
}

test("receiver - a full round then delta rounds reach the source's digest", async () => {
  const { src, zones } = source();
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  const r0 = fullRound(src, zones);
  assert.ok(r0.chunks.length > 4, "several chunks");
  let { seq, reply } = await send(rx, r0, 0);
  assert.equal(reply.digest, src.digest.toString());
  assert.deepEqual(reply.tables, src.digest.tables());
  assert.equal(target.resets, 0, "a receiver's first round finds its target fresh");
  assert.equal(rx.finalSealed, false);
  assert.equal(target.sealedCalls, 0);
  assert.equal(rx.rows, 3000 + 400 + 50 + 2 + 2 + 1 + 1 + 64 + 2);
  assert.deepEqual(target.zones[0], zones);

  let base = src.gen;
  churn(src, 1);
  const d1 = src.since(base);
  assert.ok((d1.deletes.conntrack?.length ?? 0) > 0, "the delta deletes rows");
  ({ seq, reply } = await send(rx, buildRound(1, base, src.gen, d1, src.digest, zones), seq));
  assert.equal(reply.digest, src.digest.toString());

  base = src.gen;
  churn(src, 2);
  ({ seq, reply } = await send(rx, buildRound(2, base, src.gen, src.since(base), src.digest, zones, true), seq));
  assert.equal(reply.digest, src.digest.toString());
  assert.equal(target.resets, 0, "delta rounds do not reset");
  assert.equal(rx.finalSealed, true);
  assert.equal(target.sealedCalls, 1);
  // The staged rows are exactly the source's.
  for (const t of TABLE_NAMES) {
    const want = new Map(Array.from(src.rows(t)).map((r) => [keyOf(t, r), r]));
    assert.equal(target.set.count(t), want.size, t);
    for (const [k, r] of want) assert.deepEqual(target.set.get(t, k), r, `${t} ${k}`);
  }
});

test("receiver - a new full round resets what was staged", async () => {
  const { src, zones } = source();
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  let { seq } = await send(rx, fullRound(src, zones), 0);
  // The source restarts with a full snapshot of a smaller state.
  src.apply({ upserts: {}, deletes: { conntrack: Array.from(src.rows("conntrack")).slice(0, 1000).map((r) => keyOf("conntrack", r)) } });
  const { reply } = await send(rx, fullRound(src, zones, 1), seq);
  assert.equal(target.resets, 1);
  assert.equal(reply.digest, src.digest.toString());
  assert.equal(target.set.count("conntrack"), 2000);
});

test("receiver - a delta round whose baseGen is not the last sealed gen is refused", async () => {
  const { src, zones } = source();
  // A delta as the very first round.
  const rx0 = new RoundReceiver(new SetTarget(), VM);
  const g0 = src.gen;
  churn(src, 1);
  const early = buildRound(0, g0, src.gen, src.since(g0), src.digest, zones);
  await rejectsWith(rx0.onChunk(0, early.chunks[0]), BadRequestError, /round 0 is a delta from generation 1, but the last sealed round ended at nothing: a full snapshot is needed/);
  await rejectsWith(rx0.onSeal(9, early.seal), BadRequestError, /last sealed round ended at nothing/);

  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  const { seq } = await send(rx, fullRound(src, zones), 0);
  const sealedGen = src.gen;
  const base = src.gen;
  churn(src, 2);
  const g1 = src.gen;
  churn(src, 3);
  // Claims to start at g1, but the receiver sealed at sealedGen.
  const skip = buildRound(1, g1, src.gen, src.since(g1), src.digest, zones);
  const before = target.set.digest.toString();
  await rejectsWith(rx.onChunk(seq, skip.chunks[0]), BadRequestError, new RegExp(`round 1 is a delta from generation ${g1}, but the last sealed round ended at ${sealedGen}`));
  assert.equal(target.set.digest.toString(), before, "nothing of the refused round was applied");
  // The right delta is still accepted afterwards.
  const { reply } = await send(rx, buildRound(1, base, src.gen, src.since(base), src.digest, zones), seq + 1);
  assert.equal(reply.digest, src.digest.toString());
});

test("receiver - a delta after a round that never sealed is refused", async () => {
  const { src, zones } = source();
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  let { seq } = await send(rx, fullRound(src, zones), 0);
  const sealedAt = src.gen;
  churn(src, 1);
  const r1 = buildRound(1, sealedAt, src.gen, src.since(sealedAt), src.digest, zones);
  for (const c of r1.chunks) await rx.onChunk(seq++, c); // round 1 is never sealed
  const g1 = src.gen;
  churn(src, 2);
  const r2 = buildRound(2, g1, src.gen, src.since(g1), src.digest, zones);
  await rejectsWith(rx.onChunk(seq, r2.chunks[0]), BadRequestError, new RegExp(`ended at ${sealedAt}`));
});

test("receiver - a duplicate chunk seq is acked and not applied twice", async () => {
  const { src, zones } = source();
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  const r0 = fullRound(src, zones);
  let seq = 0;
  for (const c of r0.chunks) {
    assert.deepEqual(await rx.onChunk(seq, c), { seq, applied: true });
    assert.deepEqual(await rx.onChunk(seq, c), { seq, applied: false }, "a resent chunk is acked, not applied");
    seq++;
  }
  assert.equal(target.applies, r0.chunks.length);
  const rows = rx.rows;
  // A resend of an earlier chunk, late.
  assert.deepEqual(await rx.onChunk(0, r0.chunks[0]), { seq: 0, applied: false });
  assert.equal(rx.rows, rows);
  // The seal counts each chunk once.
  const reply = await rx.onSeal(seq, r0.seal);
  assert.equal(reply.digest, src.digest.toString());
  // A resent seal (same seq) gets the same answer without another check.
  assert.deepEqual(await rx.onSeal(seq, r0.seal), reply);

  // In a delta round, a resent delete chunk is not applied twice either (it would be harmless, but is counted once).
  const base = src.gen;
  churn(src, 1);
  const r1 = buildRound(1, base, src.gen, src.since(base), src.digest, zones);
  let s = seq + 1;
  for (const c of r1.chunks) {
    await rx.onChunk(s, c);
    assert.equal((await rx.onChunk(s, c)).applied, false);
    s++;
  }
  assert.equal((await rx.onSeal(s, r1.seal)).digest, src.digest.toString());
});

test("receiver - a seal with a wrong digest is a DigestMismatchError naming the table", async () => {
  const { src, zones } = source();
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  const r0 = fullRound(src, zones);
  // The source's digest with one conntrack row changed.
  const other = src.digest.clone();
  const row = Array.from(src.rows("conntrack"))[17]!;
  other.remove("conntrack", row);
  other.add("conntrack", { ...row, mark: 12345 });
  const seal = { ...r0.seal, digest: other.toString(), tables: other.tables() };
  let seq = 0;
  for (const c of r0.chunks) await rx.onChunk(seq++, c);
  await rejectsWith(rx.onSeal(seq, seal), DigestMismatchError, /differs from the source at generation \d+: conntrack \(3000:[0-9a-f]{16} vs 3000:[0-9a-f]{16}\)$/);
  assert.equal(target.sealedCalls, 0);
  assert.equal(rx.finalSealed, false);
  // Nothing was sealed: a delta from this round's gen is refused.
  const base = src.gen;
  churn(src, 1);
  const r1 = buildRound(1, base, src.gen, src.since(base), src.digest, zones);
  await rejectsWith(rx.onChunk(seq + 1, r1.chunks[0]), BadRequestError, /last sealed round ended at nothing/);
});

test("receiver - a chunk lost in transit shows as a digest mismatch naming its table", async () => {
  const { src, zones } = source();
  const rx = new RoundReceiver(new SetTarget(), VM);
  const r0 = buildRound(0, null, src.gen, { upserts: src.full(), deletes: {} }, src.digest, zones, true);
  // Drop the fdb chunk, and lie about the count so that only the digest can notice.
  const fdbIndex = r0.chunks.findIndex((c) => ((c as { blocks: { t: TableName }[] }).blocks[0]?.t === "fdb"));
  assert.ok(fdbIndex >= 0);
  let seq = 0;
  for (const [i, c] of r0.chunks.entries()) if (i !== fdbIndex) await rx.onChunk(seq++, c);
  await rejectsWith(rx.onSeal(seq, { ...r0.seal, chunks: r0.chunks.length - 1 }), DigestMismatchError, /fdb \(400:[0-9a-f]+ vs 0:0+\)/);
});

test("receiver - a seal claiming more chunks than arrived is refused", async () => {
  const { src, zones } = source();
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  const r0 = fullRound(src, zones, 0, true);
  let seq = 0;
  for (const c of r0.chunks.slice(0, -1)) await rx.onChunk(seq++, c);
  const n = r0.chunks.length;
  await rejectsWith(rx.onSeal(seq, r0.seal), BadRequestError, new RegExp(`round 0 was sealed after ${n} chunks but ${n - 1} arrived`));
  assert.equal(target.sealedCalls, 0);
  // The missing chunk arrives (resent); the seal is resent under a new seq and passes.
  await rx.onChunk(seq++, r0.chunks[n - 1]);
  const reply = await rx.onSeal(seq, r0.seal);
  assert.equal(reply.digest, src.digest.toString());
  assert.equal(target.sealedCalls, 1);
  // Fewer than arrived is refused too.
  const rx2 = new RoundReceiver(new SetTarget(), VM);
  let s = 0;
  for (const c of r0.chunks) await rx2.onChunk(s++, c);
  await rejectsWith(rx2.onSeal(s, { ...r0.seal, chunks: n - 1 }), BadRequestError, /sealed after/);
});

test("receiver - a chunk or seal of an older round is ignored or refused", async () => {
  const { src, zones } = source();
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  const r0 = fullRound(src, zones);
  let { seq } = await send(rx, r0, 0);
  const base = src.gen;
  churn(src, 1);
  const r1 = buildRound(1, base, src.gen, src.since(base), src.digest, zones);
  await rx.onChunk(seq++, r1.chunks[0]);
  const applies = target.applies;
  const digest = target.set.digest.toString();
  // A late round-0 chunk under a fresh seq.
  assert.deepEqual(await rx.onChunk(seq + 100, r0.chunks[1]), { seq: seq + 100, applied: false });
  assert.equal(target.applies, applies);
  assert.equal(target.set.digest.toString(), digest);
  // A late round-0 seal.
  await rejectsWith(rx.onSeal(seq + 101, r0.seal), BadRequestError, /seal of round 0 arrived after round 1 began/);
  // Round 1 still completes.
  for (const c of r1.chunks.slice(1)) await rx.onChunk(seq++, c);
  assert.equal((await rx.onSeal(seq, r1.seal)).digest, src.digest.toString());
});

test("receiver - malformed chunks and seals are refused", async () => {
  const rx = new RoundReceiver(new SetTarget(), VM);
  await rejectsWith(rx.onChunk(0, null), BadRequestError, /chunk must be a map/);
  await rejectsWith(rx.onChunk(0, { round: 0, baseGen: null, blocks: [] }), BadRequestError, /chunk\.gen is required/);
  await rejectsWith(rx.onChunk(0, { round: 0, baseGen: null, gen: 1, blocks: {} }), BadRequestError, /chunk\.blocks must be an array/);
  await rejectsWith(rx.onChunk(0, { round: 0, baseGen: null, gen: 1, blocks: [{ t: "nope", n: 0, c: [] }] }), BadRequestError, /chunk\.blocks\[0\]: unknown table "nope"/);
  await rejectsWith(rx.onChunk(0, { round: 0, baseGen: null, gen: 1, blocks: [], deletes: { nope: [] } }), BadRequestError, /chunk\.deletes has unknown table "nope"/);
  await rejectsWith(rx.onChunk(0, { round: 0, baseGen: null, gen: 1, blocks: [], deletes: { acls: [1] } }), BadRequestError, /chunk\.deletes\.acls must be an array of keys/);
  await rejectsWith(rx.onChunk(0, { round: 0, baseGen: null, gen: 1, blocks: [], zones: { a: 70000 } }), BadRequestError, /chunk\.zones\.a must be a zone number/);
  await rejectsWith(rx.onChunk(0, { round: -1, baseGen: null, gen: 1, blocks: [] }), BadRequestError, /chunk\.round/);
  await rejectsWith(rx.onSeal(0, { round: 0, baseGen: null, gen: 1, digest: "x" }), BadRequestError, /seal\.chunks is required/);
  await rejectsWith(rx.onSeal(0, { round: 0, baseGen: null, gen: 1, chunks: 0, digest: 5 }), BadRequestError, /seal\.digest must be a string/);
});

test("receiver - a full round read live while the source changes seals without a digest; the next delta's digest checks it", async () => {
  const { src, zones } = source();
  const g0 = src.gen;
  const live = src.liveRead();
  // The round's chunks are read a slice at a time, the source changing in between (rows move into deleted rows' places).
  const header = { round: 0, baseGen: null, gen: g0, zones };
  const chunks: unknown[] = [];
  let salt = 0;
  for (const t of TABLE_NAMES) {
    const from = live[t];
    for (let i = 0; from && i < from.length; i += 500) {
      chunks.push(wire({ ...header, blocks: [encodeColumns(from.slice(i, i + 500))], deletes: {} }));
      churn(src, ++salt);
    }
  }
  const rx = new RoundReceiver(new SetTarget(), VM);
  let seq = 0;
  for (const c of chunks) await rx.onChunk(seq++, c);
  const reply = await rx.onSeal(seq++, wire({ round: 0, baseGen: null, gen: g0, chunks: chunks.length, digest: "", tables: {}, final: false }));
  assert.notEqual(reply.digest, src.digest.toString(), "the live round alone is not the source's state");
  // A delta round since the read's generation makes it exact, and its digest is checked.
  const r1 = buildRound(1, g0, src.gen, src.since(g0), src.digest, zones, true);
  const { reply: r1reply } = await send(rx, r1, seq);
  assert.equal(r1reply.digest, src.digest.toString());
  assert.equal(rx.finalSealed, true);
  // Only a full round that is not final may go unchecked.
  await rejectsWith(rx.onSeal(100, wire({ round: 2, baseGen: null, gen: src.gen, chunks: 0, digest: "", tables: {}, final: true })), BadRequestError, /digest may be empty only/);
  await rejectsWith(rx.onSeal(101, wire({ round: 2, baseGen: src.gen, gen: src.gen, chunks: 0, digest: "", tables: {}, final: false })), BadRequestError, /digest may be empty only/);
});

test("receiver - a final seal's commit order is carried out once the digest checks, and a repeated seal repeats its outcome", async () => {
  const { src, zones } = source();
  const order = { bucket: "netmig-migrations", key: "m-1", revision: 7, record: new Uint8Array([1, 2, 3]), epoch: 4 };
  // A wrong digest: no commit.
  {
    const target = new SetTarget();
    const rx = new RoundReceiver(target, VM);
    const r0 = fullRound(src, zones, 0, true);
    let seq = 0;
    for (const c of r0.chunks) await rx.onChunk(seq++, c);
    const other = src.digest.clone();
    other.add("acls", { id: "extra", direction: "egress", priority: 1, table: 0, match: "udp", actions: "drop" });
    await rejectsWith(rx.onSeal(seq, wire({ ...r0.seal, digest: other.toString(), tables: other.tables(), commit: order })), DigestMismatchError, /acls/);
    assert.equal(target.commits.length, 0, "no commit on a digest mismatch");
  }
  // A matching digest: committed after sealing, and the reply says so.
  const target = new SetTarget();
  const rx = new RoundReceiver(target, VM);
  const r0 = fullRound(src, zones, 0, true);
  let seq = 0;
  for (const c of r0.chunks) await rx.onChunk(seq++, c);
  target.refuse = new ConflictError("record changed");
  await rejectsWith(rx.onSeal(seq, wire({ ...r0.seal, commit: order })), ConflictError, /record changed/);
  assert.equal(target.commits.length, 0);
  target.refuse = null;
  const reply = await rx.onSeal(seq, wire({ ...r0.seal, commit: order }));
  assert.equal(reply.digest, src.digest.toString());
  assert.deepEqual(reply.committed, { revision: 8, activatedAtMs: 1, digest: src.digest.toString(), gen: 0 });
  assert.equal(target.commits.length, 1);
  assert.deepEqual(target.commits[0]!.key, "m-1");
  const again = await rx.onSeal(seq, wire({ ...r0.seal, commit: order }));
  assert.deepEqual(again, reply, "a resent seal gets the same answer");
  assert.equal(target.commits.length, 1, "and is not committed twice");
});

test("receiver - a commit order on a seal that is not final, or a malformed one, is refused", async () => {
  const { src, zones } = source();
  const order = { bucket: "netmig-migrations", key: "m-1", revision: 7, record: new Uint8Array([1]), epoch: 4 };
  const rx = new RoundReceiver(new SetTarget(), VM);
  const r0 = fullRound(src, zones, 0, false);
  let seq = 0;
  for (const c of r0.chunks) await rx.onChunk(seq++, c);
  await rejectsWith(rx.onSeal(seq, wire({ ...r0.seal, commit: order })), BadRequestError, /seal.commit is allowed on a final seal only/);
  const fin = { ...r0.seal, final: true };
  await rejectsWith(rx.onSeal(seq, wire({ ...fin, commit: { ...order, bucket: "a.b" } })), BadRequestError, /seal.commit.bucket must be a KV bucket name/);
  await rejectsWith(rx.onSeal(seq, wire({ ...fin, commit: { ...order, revision: 0 } })), BadRequestError, /seal.commit.revision/);
  await rejectsWith(rx.onSeal(seq, wire({ ...fin, commit: { ...order, record: "x" } })), BadRequestError, /seal.commit.record must be the encoded record/);
  await rejectsWith(rx.onSeal(seq, wire({ ...fin, commit: { ...order, epoch: undefined } })), BadRequestError, /seal.commit.epoch is required/);
});
