import { test } from "node:test";
import assert from "node:assert/strict";
import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { majorCollection, RoundCollector } from "../../agent/collector.js";

test("collector - majorCollection() runs a forced major collection, with or without --expose-gc", async () => {
  const seen: PerformanceEntry[] = [];
  const obs = new PerformanceObserver((list) => void seen.push(...list.getEntries()));
  obs.observe({ entryTypes: ["gc"] });
  try {
    const gc = majorCollection();
    assert.ok(gc, "V8 exposed gc()");
    assert.equal(majorCollection(), gc, "one collector per process");
    gc();
    // gc entries are delivered asynchronously.
    for (let i = 0; i < 50 && !seen.some(isForcedMajor); i++) await new Promise((r) => setTimeout(r, 10));
  } finally {
    obs.disconnect();
  }
  assert.ok(seen.some(isForcedMajor), `no forced major collection among ${seen.length} gc entries`);
});

function isForcedMajor(e: PerformanceEntry): boolean {
  const d = (e as PerformanceEntry & { detail?: { kind?: number; flags?: number } }).detail;
  return d?.kind === constants.NODE_PERFORMANCE_GC_MAJOR && ((d.flags ?? 0) & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0;
}

test("collector - a round collects only when it was big enough, not final, and no window is open; 0 never collects", () => {
  let calls = 0;
  const c = new RoundCollector(1000, () => void calls++);
  const open = () => true;
  const closed = () => false;
  assert.equal(c.afterRound(999, false, closed), null, "small round");
  assert.equal(c.afterRound(5000, true, closed), null, "final round: it is the freeze window");
  assert.equal(c.afterRound(5000, false, open), null, "another VM's freeze window is open on this agent");
  assert.equal(calls, 0);
  const ms = c.afterRound(1000, false, closed);
  assert.equal(calls, 1);
  assert.ok(ms !== null && ms >= 0, `pause ${ms}`);
  const never = new RoundCollector(0, () => void calls++);
  assert.equal(never.afterRound(1e9, false, closed), null);
  assert.equal(calls, 1);
  // Before touching a reservation: the same rule, a reservation being never final.
  assert.equal(c.beforeTouch(999, closed), null, "small reservation");
  assert.equal(c.beforeTouch(5000, open), null, "a freeze window is open on this agent");
  assert.equal(never.beforeTouch(1e9, closed), null);
  assert.equal(calls, 1);
  assert.ok(c.beforeTouch(1000, closed) !== null);
  assert.equal(calls, 2);
});
