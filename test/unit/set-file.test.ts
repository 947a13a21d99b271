import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SetFile } from "../../agent/backends/memory/store.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { TableSet, type Change } from "../../protocol/state/table-set.js";
import { keyOf, TABLE_NAMES, type ConntrackRow } from "../../protocol/state/tables.js";
import { blocksOf } from "../../protocol/state/row-block.js";

const dir = mkdtempSync(join(tmpdir(), "netmig-setfile-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const META = { frozen: false, sealed: false };

function rowsOf(s: TableSet): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const t of TABLE_NAMES) out[t] = Array.from(s.rows(t), (r) => JSON.stringify(r)).sort();
  return out;
}

test("set-file - a compaction written while the set changes between its slices reloads to exactly the set", async () => {
  for (const [trial, sliceRows] of [[1, 64], [2, 500], [3, 7]] as const) {
    const set = new TableSet();
    const file = new SetFile(dir, `vm-${trial}`);
    file.snapshot(set, META);
    const write = (c: Change) => {
      set.apply(c);
      file.append(set, c);
    };
    write({ upserts: blocksOf(generateVmState(`vm-${trial}`, { conntrack: 5000, fdb: 300, acls: 40, seed: trial }).tables), deletes: {} });
    let salt = 0;
    // Between the compaction's slices: rows replaced, deleted (the last row moves into each hole) and added.
    const churn = () => {
      salt++;
      const ct = Array.from(set.rows("conntrack")) as unknown as ConntrackRow[];
      const pick = (k: number) => ct[(salt * 7919 + k * 104729) % ct.length]!;
      write({
        upserts: blocksOf({ conntrack: [{ ...pick(1), timeoutSec: 10_000 + salt }, { ...pick(2), sport: 1 + (salt % 60_000), dport: 7 }] }),
        deletes: { conntrack: [keyOf("conntrack", pick(3)), keyOf("conntrack", pick(4)), keyOf("conntrack", pick(5))] },
      });
    };
    const done = file.compact(set, META, sliceRows);
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      churn();
      await new Promise((r) => setImmediate(r));
    }
    await done;
    assert.ok(salt > 5, `trial ${trial}: the set changed while the snapshot was written (${salt} times)`);
    churn();
    file.close();
    const loaded = new SetFile(dir, `vm-${trial}`).load();
    assert.ok(loaded);
    assert.equal(loaded.set.digest.toString(), set.digest.toString(), `trial ${trial}: digest after reload`);
    assert.deepEqual(rowsOf(loaded.set), rowsOf(set), `trial ${trial}: rows after reload`);
  }
});
