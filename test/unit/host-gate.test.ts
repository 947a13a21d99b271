import { test } from "node:test";
import assert from "node:assert/strict";
import { HostGate } from "../../coordinator/host-gate.js";

const tick = () => new Promise((r) => setTimeout(r, 5));

/** Resolves to true once the promise settles within `ms`, false otherwise. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
}

test("host-gate - rounds on one host share it; a switchover waits for them and goes ahead of rounds asked for after it", async () => {
  const gate = new HostGate(10_000);
  const r1 = await gate.shared(["a", "b"]);
  const r2 = await gate.shared(["a", "c"]);
  const order: string[] = [];
  const sw = gate.exclusive(["a", "b"]).then((rel) => {
    order.push("switchover");
    return rel;
  });
  await tick();
  const late = gate.shared(["a", "c"]).then((rel) => {
    order.push("late round");
    return rel;
  });
  // Another host pair is not held up.
  assert.ok(await settlesWithin(gate.shared(["c", "d"]).then((rel) => rel()), 50), "rounds on other hosts go on");
  assert.equal(await settlesWithin(sw, 30), false, "the switchover waits for both rounds");
  r1();
  assert.equal(await settlesWithin(sw, 30), false, "one round still holds host a");
  r2();
  const release = await sw;
  assert.equal(await settlesWithin(late, 30), false, "the round asked for after the switchover waits for it");
  release();
  (await late)();
  assert.deepEqual(order, ["switchover", "late round"]);
});

test("host-gate - switchovers on one host take turns; on disjoint hosts they run together", async () => {
  const gate = new HostGate(10_000);
  const a = await gate.exclusive(["a", "b"]);
  assert.ok(await settlesWithin(gate.exclusive(["c", "d"]).then((rel) => rel()), 50));
  const b = gate.exclusive(["b", "c"]);
  assert.equal(await settlesWithin(b, 30), false);
  a();
  (await b)();
});

test("host-gate - a switchover waits at most maxWaitMs for a round that does not end", async () => {
  const gate = new HostGate(60);
  const stuck = await gate.shared(["a", "b"]);
  const t0 = Date.now();
  const rel = await gate.exclusive(["b", "x"]);
  const waited = Date.now() - t0;
  assert.ok(waited >= 55 && waited < 2000, `waited ${waited} ms`);
  rel();
  stuck();
  // Nothing is left held: both kinds go straight through.
  assert.ok(await settlesWithin(gate.exclusive(["a", "b"]).then((r) => r()), 20));
  assert.ok(await settlesWithin(gate.shared(["a", "b"]).then((r) => r()), 20));
});

test("host-gate - releasing twice counts once", async () => {
  const gate = new HostGate(10_000);
  const r1 = await gate.shared(["a"]);
  const r2 = await gate.shared(["a"]);
  r1();
  r1();
  const sw = gate.exclusive(["a"]);
  assert.equal(await settlesWithin(sw, 30), false, "the second round still holds host a");
  r2();
  (await sw)();
});

test("host-gate - a switchover that must not wait starts at once and still holds back new rounds", async () => {
  const gate = new HostGate(10_000);
  const round = await gate.shared(["a", "b"]);
  const sw = gate.exclusive(["a", "b"], false);
  assert.ok(await settlesWithin(sw, 20), "no wait for the round in flight");
  const late = gate.shared(["b", "c"]);
  assert.equal(await settlesWithin(late, 30), false, "a new round waits");
  round();
  (await sw)();
  (await late)();
});

test("host-gate - bookkeeping waits for the windows open when it asks, not for rounds nor for windows opened after", async () => {
  const gate = new HostGate(10_000);
  const round = await gate.shared(["a", "b"]);
  assert.ok(await settlesWithin(gate.afterWindows(), 20), "rounds in flight do not hold bookkeeping back");
  const w1 = await gate.exclusive(["c", "d"]);
  const waiting = gate.afterWindows();
  assert.equal(await settlesWithin(waiting, 30), false, "a window is open");
  const w2 = await gate.exclusive(["e"]);
  w1();
  assert.ok(await settlesWithin(waiting, 30), "the window opened after the call is not waited for");
  const next = gate.afterWindows();
  assert.equal(await settlesWithin(next, 30), false, "a later call waits for the window open then");
  w2();
  assert.ok(await settlesWithin(next, 30));
  round();
});

test("host-gate - bookkeeping waits at most maxWaitMs for a window that does not end", async () => {
  const gate = new HostGate(60);
  const stuck = await gate.exclusive(["a", "b"]);
  const t0 = Date.now();
  await gate.afterWindows();
  const waited = Date.now() - t0;
  assert.ok(waited >= 55 && waited < 2000, `waited ${waited} ms`);
  stuck();
  assert.ok(await settlesWithin(gate.afterWindows(), 20), "nothing is left open");
});
