import { test } from "node:test";
import assert from "node:assert/strict";
import { WallClock, wallClockMs } from "../../protocol/agent-api.js";

test("wall clock - stays within the system clock's millisecond, with sub-millisecond steps", () => {
  let last = 0;
  let fractions = 0;
  for (let i = 0; i < 20_000; i++) {
    const before = Date.now();
    const w = wallClockMs();
    const after = Date.now();
    assert.ok(w >= before && w < after + 1, `${w} outside [${before}, ${after + 1})`);
    assert.ok(w >= last, "it never goes back while the system clock does not");
    if (w % 1 !== 0) fractions++;
    last = w;
  }
  assert.ok(fractions > 0, "finer than Date.now()");
});

test("wall clock - follows a system clock that steps away from the monotonic one, to the millisecond", () => {
  // Fake clocks: time advances 0.25 ms per reading of either; the system clock is its floor, plus a step set below.
  let mono = 1000;
  let step = 0;
  const monoMs = () => (mono += 0.25);
  const systemMs = () => Math.floor((mono += 0.25) + 1_700_000_000_000 + step);
  const c = new WallClock(systemMs, monoMs);
  const within = () => {
    const w = c.ms();
    const s = systemMs();
    assert.ok(w >= s - 1 && w < s + 1, `${w} is ${(w - s).toFixed(2)} ms from the system clock`);
  };
  for (let i = 0; i < 10; i++) within();
  step = 5.8; // stepped ahead, as an agent's clock was found to be
  for (let i = 0; i < 10; i++) within();
  step = -20;
  for (let i = 0; i < 10; i++) within();
});
