import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeEnvelope } from "../../protocol/codec/envelope.js";
import { generateVmState } from "../../protocol/state/generate.js";
import type { StateDelta } from "../../protocol/state/model.js";
import { TableSet } from "../../protocol/state/table-set.js";
import { keyOf, TABLE_NAMES, type ConntrackRow, type TableName } from "../../protocol/state/tables.js";
import { blocksOf } from "../../protocol/state/row-block.js";
import { parseChunk } from "../../protocol/transfer/chunks.js";
import { encodeRound, type EncodedMessage, type RoundHeader } from "../../protocol/transfer/encoder.js";
import { RoundReceiver, type StageTarget } from "../../protocol/transfer/receiver.js";

const VM = "vm-enc";
const header = (over: Partial<RoundHeader> = {}): RoundHeader => ({ migrationId: "m-1", vmId: VM, epoch: 1, round: 0, seqBase: 1000, final: false, digest: "d", tables: {}, zones: {}, ...over });

function loaded(conntrack: number): TableSet {
  const s = new TableSet();
  s.apply({ upserts: blocksOf(generateVmState(VM, { conntrack, fdb: 500, acls: 50, seed: 3 }).tables), deletes: {} });
  return s;
}

/** A staging target on a TableSet, as an agent's memory backend would be. */
function target(): StageTarget & { set: TableSet } {
  const t = {
    set: new TableSet(),
    async reset() {
      t.set = new TableSet();
    },
    async apply(delta: StateDelta) {
      if (delta.baseGen === null && Object.keys(delta.deletes).length === 0) t.set.append({ upserts: delta.upserts });
      else {
        t.set.indexSome(Infinity);
        t.set.apply({ upserts: delta.upserts, deletes: delta.deletes });
      }
    },
    async digest() {
      t.set.indexSome(Infinity);
      return { digest: t.set.digest.toString(), tables: t.set.digest.tables() };
    },
    async sealed() {},
    async commit(): Promise<never> {
      throw new Error("no commit orders in these tests");
    },
  };
  return t;
}

async function deliver(rx: RoundReceiver, m: EncodedMessage): Promise<void> {
  const env = decodeEnvelope(m.data);
  await rx.onMessage(env.kind, env.seq, env.body);
}

test("encoder - a round that fits one message carries its seal inline, under the round's first seq", () => {
  const s = loaded(100);
  const msgs = Array.from(encodeRound({ vmId: VM, baseGen: 4, gen: 5, upserts: s.full(), deletes: { acls: ["acl-x"] } }, header({ final: true }), 1024 * 1024));
  assert.deepEqual(msgs.map((m) => m.kind), ["chunk+seal"]);
  const env = decodeEnvelope(msgs[0]!.data);
  assert.equal(env.seq, 1000);
  const { delta, seal } = parseChunk(env.body, VM);
  assert.equal(seal?.final, true);
  assert.equal(seal?.digest, "d");
  assert.equal(delta.upserts.conntrack?.length, 100);
  assert.deepEqual(delta.deletes, { acls: ["acl-x"] });
  assert.equal(msgs[0]!.rows, 100 + 500 + 50 + (s.count("ports") + s.count("qos") + s.count("mirrors") + s.count("monitoring") + s.count("neighbours") + s.count("counters")) + 1);
});

test("encoder - a big round goes in chunks under the size limit, one block per table each, seqs in order, then a seal counting them", () => {
  const s = loaded(30_000);
  const max = 64 * 1024;
  const msgs = Array.from(encodeRound({ vmId: VM, baseGen: null, gen: s.gen, upserts: s.full(), deletes: {} }, header(), max));
  assert.ok(msgs.length > 20, `${msgs.length} messages`);
  assert.equal(msgs.at(-1)!.kind, "seal");
  const rows = new Map<TableName, number>();
  msgs.forEach((m, i) => {
    assert.ok(m.data.byteLength <= max, `message ${i}: ${m.data.byteLength} bytes`);
    const env = decodeEnvelope(m.data);
    assert.equal(env.seq, 1000 + i);
    if (m.kind === "seal") {
      assert.equal((env.body as { chunks: number }).chunks, msgs.length - 1);
      return;
    }
    assert.equal(m.kind, "chunk");
    const body = env.body as { blocks: { t: TableName }[]; sizes?: Record<string, number> };
    const tables = body.blocks.map((b) => b.t);
    assert.equal(new Set(tables).size, tables.length, `message ${i} has one block per table`);
    assert.equal(body.sizes?.conntrack, 30_000, "a full round announces its table sizes");
    const { delta } = parseChunk(env.body, VM);
    for (const t of TABLE_NAMES) rows.set(t, (rows.get(t) ?? 0) + (delta.upserts[t]?.length ?? 0));
  });
  for (const t of TABLE_NAMES) assert.equal(rows.get(t) ?? 0, s.count(t), t);
});

test("encoder - a live read encoded while the table changes between chunks, then the delta since its generation, rebuilds the table exactly", async () => {
  const src = loaded(20_000);
  src.startTracking();
  const g0 = src.gen;
  const t = target();
  const rx2 = new RoundReceiver(t, VM);
  let salt = 0;
  for (const m of encodeRound({ vmId: VM, baseGen: null, gen: g0, upserts: src.liveRead(), deletes: {} }, header({ digest: "" }), 32 * 1024)) {
    await deliver(rx2, m);
    // Between messages (the sender awaiting acks), the VM changes: rows replaced, deleted (others move into their places) and added.
    const ct = Array.from(src.rows("conntrack")) as unknown as ConntrackRow[];
    const pick = (k: number) => ct[(salt * 7919 + k * 104729) % ct.length]!;
    salt++;
    src.apply({
      upserts: blocksOf({ conntrack: [{ ...pick(1), timeoutSec: 9000 + salt }, { ...pick(2), sport: 60000 - (salt % 5000) }] }),
      deletes: { conntrack: [keyOf("conntrack", pick(3)), keyOf("conntrack", pick(4))], fdb: salt % 3 === 0 ? [keyOf("fdb", Array.from(src.rows("fdb"))[0])] : [] },
    });
  }
  assert.notEqual((await t.digest()).digest, src.digest.toString(), "the live round alone mixes generations");
  const d = src.since(g0);
  for (const m of encodeRound({ vmId: VM, baseGen: g0, gen: src.gen, upserts: d.upserts, deletes: d.deletes }, header({ round: 1, seqBase: 9000, final: true, digest: src.digest.toString(), tables: src.digest.tables() }), 32 * 1024)) {
    await deliver(rx2, m);
  }
  assert.equal(rx2.finalSealed, true, "the final seal's digest checked out");
  assert.equal((await t.digest()).digest, src.digest.toString());
});
