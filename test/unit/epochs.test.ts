import { after, test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EpochStore } from "../../agent/epochs.js";
import { StaleEpochError } from "../../protocol/errors.js";

const made: string[] = [];
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), "netmig-epochs-"));
  made.push(d);
  return d;
};
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

test("epochs - fences survive a reopen, and a stale epoch is refused after it", () => {
  const d = dir();
  const a = new EpochStore(d);
  a.check("vm-1", 3, "freeze", "h");
  a.update("vm-1", { frozenBy: "m-1" });
  a.update("vm-2", { epoch: 7, releasedBy: "m-2" });
  a.update("vm-1", { frozenBy: undefined });
  a.close();
  const b = new EpochStore(d);
  assert.deepEqual(b.get("vm-1"), { epoch: 3 });
  assert.deepEqual(b.get("vm-2"), { epoch: 7, releasedBy: "m-2" });
  assert.throws(() => b.check("vm-1", 2, "activate", "h"), StaleEpochError);
  b.close();
});

test("epochs - a torn last line is ignored, and loading compacts the log to one line per VM", () => {
  const d = dir();
  const a = new EpochStore(d);
  for (let e = 1; e <= 50; e++) a.check("vm-1", e, "transfer", "h");
  a.update("vm-2", { epoch: 4 });
  a.close();
  const file = join(d, "epochs.log");
  assert.equal(readFileSync(file, "utf8").trim().split("\n").length, 51);
  appendFileSync(file, '["vm-1",{"epoch":9');
  const b = new EpochStore(d);
  assert.deepEqual(b.get("vm-1"), { epoch: 50 });
  assert.deepEqual(b.get("vm-2"), { epoch: 4 });
  assert.equal(readFileSync(file, "utf8").trim().split("\n").length, 2);
  b.close();
});

test("epochs - a long-running store compacts its log and loses nothing", () => {
  const d = dir();
  const a = new EpochStore(d);
  for (let e = 1; e <= 5000; e++) a.check(`vm-${e % 3}`, e, "transfer", "h");
  const file = join(d, "epochs.log");
  assert.ok(readFileSync(file, "utf8").trim().split("\n").length < 5000, "the log was compacted");
  a.close();
  const b = new EpochStore(d);
  assert.deepEqual([b.get("vm-0"), b.get("vm-1"), b.get("vm-2")], [{ epoch: 4998 }, { epoch: 4999 }, { epoch: 5000 }]);
  b.close();
});

test("epochs - an epochs.json from an older netmig is folded into the log", () => {
  const d = dir();
  writeFileSync(join(d, "epochs.json"), JSON.stringify({ "vm-old": { epoch: 12, frozenBy: "m-9" } }));
  const a = new EpochStore(d);
  assert.deepEqual(a.get("vm-old"), { epoch: 12, frozenBy: "m-9" });
  assert.equal(existsSync(join(d, "epochs.json")), false);
  a.close();
  assert.deepEqual(new EpochStore(d).get("vm-old"), { epoch: 12, frozenBy: "m-9" });
});

test("epochs - a state directory that does not exist yet is created on the first change", () => {
  const d = join(dir(), "not", "yet");
  const a = new EpochStore(d);
  assert.equal(a.get("vm-1"), undefined);
  a.update("vm-1", { epoch: 2 });
  a.close();
  assert.deepEqual(new EpochStore(d).get("vm-1"), { epoch: 2 });
});
