import { test } from "node:test";
import assert from "node:assert/strict";
import { actionFor, parseInvocation, releaseMeansMigrated } from "../../cli/hook/libvirt-events.js";
import { parseLifecycleLine } from "../../cli/hook/lifecycle-watch.js";

const act = (...argv: string[]) => actionFor(parseInvocation(argv)).type;

test("libvirt events - hook invocations map to netmig actions; everything else is ignored", () => {
  assert.equal(act("vm", "migrate", "begin", "-"), "prepare");
  assert.equal(act("vm", "started", "begin", "-"), "started");
  assert.equal(act("vm", "stopped", "end", "-"), "stopped");
  assert.deepEqual(actionFor(parseInvocation(["vm", "release", "end", "migrated"])), { type: "released", reason: "migrated" });
  assert.deepEqual(actionFor(parseInvocation(["vm", "release", "end"])), { type: "released", reason: "-" }, "older libvirt");
  for (const ignored of [["prepare", "begin", "-"], ["start", "begin", "-"], ["reconnect", "begin", "-"], ["attach", "begin", "-"], ["restore", "begin", "-"], ["migrate", "end", "-"], []]) {
    assert.equal(act("vm", ...ignored), "ignore", ignored.join(" "));
  }
  assert.equal(releaseMeansMigrated("migrated"), true);
  assert.equal(releaseMeansMigrated("-"), true);
  assert.equal(releaseMeansMigrated("shutdown"), false);
  assert.equal(releaseMeansMigrated("failed"), false);
});

test("libvirt events - virsh lifecycle lines, quoted, unquoted and time-stamped", () => {
  assert.deepEqual(parseLifecycleLine("event 'lifecycle' for domain 'web-1': Suspended Migrated"), { domain: "web-1", event: "Suspended", detail: "Migrated" });
  assert.deepEqual(parseLifecycleLine("event 'lifecycle' for domain web 2: Resumed Migrated"), { domain: "web 2", event: "Resumed", detail: "Migrated" });
  assert.deepEqual(parseLifecycleLine("2024-05-01 10:00:00.123+0000: event 'lifecycle' for domain 'a: b': Stopped Migrated"), { domain: "a: b", event: "Stopped", detail: "Migrated" });
  assert.equal(parseLifecycleLine("event 'reboot' for domain 'web-1'"), null);
  assert.equal(parseLifecycleLine("events received: 3"), null);
  assert.equal(parseLifecycleLine(""), null);
});
