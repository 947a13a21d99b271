import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalIds } from "../../agent/backends/memory/local-ids.js";
import { KeyedLog } from "../../agent/keyed-log.js";

const isNum = (v: unknown): v is number => typeof v === "number";

test("keyed log - sets and deletes survive a reload, a torn last line is ignored, and the log is compacted on load", () => {
  const dir = mkdtempSync(join(tmpdir(), "netmig-keyed-log-"));
  try {
    const file = join(dir, "sub", "x.log");
    const a = new KeyedLog(file, isNum);
    a.set("one", 1);
    a.set("two", 2);
    a.set("one", 11);
    assert.equal(a.delete("two"), true);
    assert.equal(a.delete("nope"), false);
    a.close();
    assert.equal(readFileSync(file, "utf8").split("\n").filter(Boolean).length, 4, "one line per change");
    appendFileSync(file, '["three", 3]\n["torn", 4');
    const b = new KeyedLog(file, isNum);
    assert.deepEqual(b.entries().sort(), [["one", 11], ["three", 3]]);
    assert.equal(readFileSync(file, "utf8"), '["one",11]\n["three",3]\n', "compacted to one line per key");
    b.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("local ids - assigned ids and the counters survive a restart; released ports are forgotten; an old local-ids.json is folded in", () => {
  const dir = mkdtempSync(join(tmpdir(), "netmig-local-ids-"));
  try {
    const file = join(dir, "local-ids.log");
    const a = new LocalIds(file, 100);
    const p1 = a.assign("vm1-if0");
    const p2 = a.assign("vm1-if1");
    assert.deepEqual([p1.ofport, p1.ctZone, p2.ofport, p2.ctZone], [1, 100, 2, 101]);
    assert.equal(a.assign("vm1-if0"), p1, "assigned once");
    a.release(["vm1-if1"]);
    a.close();
    const b = new LocalIds(file, 100);
    assert.deepEqual(b.get("vm1-if0"), p1);
    assert.equal(b.get("vm1-if1"), undefined);
    assert.deepEqual(b.assign("vm2-if0"), { name: "vnet3", ofport: 3, ctZone: 102 }, "counters go on after a restart");
    b.close();
    const dir2 = join(dir, "old");
    const legacyDir = mkdtempSync(dir2);
    writeFileSync(join(legacyDir, "local-ids.json"), JSON.stringify({ ports: [["old-if0", { name: "vnet7", ofport: 7, ctZone: 55 }]], nextOfport: 8, nextZone: 56 }));
    const c = new LocalIds(join(legacyDir, "local-ids.log"), 1);
    assert.deepEqual(c.get("old-if0"), { name: "vnet7", ofport: 7, ctZone: 55 });
    assert.deepEqual(c.assign("new-if0"), { name: "vnet8", ofport: 8, ctZone: 56 });
    c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
