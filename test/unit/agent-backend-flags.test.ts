import { test } from "node:test";
import assert from "node:assert/strict";
import { backendConfigFromFlags } from "../../cli/commands/agent-backend.js";
import type { Flags } from "../../cli/args.js";
import { BadRequestError } from "../../protocol/errors.js";

const cfg = (flags: Flags) => backendConfigFromFlags(flags, "/var/lib/netmig", { stateDir: "/var/lib/netmig" });

function rejects(flags: Flags, re: RegExp): void {
  assert.throws(() => cfg(flags), (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `expected a BadRequestError, got ${String(err)}`);
    assert.match((err as Error).message, re);
    return true;
  });
}

test("agent flags - memory is the default backend", () => {
  assert.deepEqual(cfg({}), { kind: "memory", memory: { stateDir: "/var/lib/netmig" } });
});

test("agent flags - ovs: defaults, sockets, recognition keys, conntrack mark", () => {
  const c = cfg({ backend: "ovs" });
  assert.deepEqual(c, { kind: "ovs", ovs: { stateDir: "/var/lib/netmig/ovs" } });
  const full = cfg({
    backend: "ovs", ovsdb: "unix:/run/ovs/db.sock", "ovs-rundir": "/run/ovs", bridge: "br-vm", "vm-id-key": "vm-uuid",
    "cookie-mask": "0xffff000000000000", conntrack: "on", "ct-mark": ["0x10/0xf0"], "ct-zone-range": "100-200", netns: "hv1", "keep-ports": true,
  });
  assert.deepEqual(full.ovs, {
    stateDir: "/var/lib/netmig/ovs", ovsdbSocket: "/run/ovs/db.sock", runDir: "/run/ovs", bridge: "br-vm", recognition: { vmIdKey: "vm-uuid" },
    cookieMask: 0xffff000000000000n, conntrack: true, conntrackMark: { mark: 16, markMask: 240 }, netns: "hv1", zoneRange: [100, 200], removePorts: false,
  });
  assert.equal(cfg({ backend: "ovs", conntrack: "off" }).ovs?.conntrack, false);
});

test("agent flags - conntrack: VMs by zone and/or mark", () => {
  const c = cfg({ backend: "conntrack", "ct-zone": ["vm1:if0=11", "vm1:if1=12", "vm2:if0=13"], "ct-mark": ["vm3=0x42", "vm1=7/0xff"] });
  assert.deepEqual(c.conntrack?.vms, {
    vm1: { zones: { if0: 11, if1: 12 }, mark: 7, markMask: 255 },
    vm2: { zones: { if0: 13 } },
    vm3: { zones: {}, mark: 0x42 },
  });
  assert.equal(c.conntrack?.stateDir, "/var/lib/netmig/conntrack");
});

test("agent flags - a bad value names its flag", () => {
  rejects({ backend: "ovn" }, /^--backend must be one of memory, ovs, conntrack/);
  rejects({ backend: "ovs", ovsdb: "tcp:127.0.0.1:6640" }, /^--ovsdb must be an absolute unix socket path/);
  rejects({ backend: "ovs", ovsdb: "db.sock" }, /^--ovsdb /);
  rejects({ backend: "ovs", bridge: "br-int-with-a-long-name" }, /^--bridge /);
  rejects({ backend: "ovs", bridge: "br;rm" }, /^--bridge /);
  rejects({ backend: "ovs", "vm-id-key": "a b" }, /^--vm-id-key /);
  rejects({ backend: "ovs", "cookie-mask": "0" }, /^--cookie-mask /);
  rejects({ backend: "ovs", conntrack: "maybe" }, /^--conntrack must be on or off/);
  rejects({ backend: "ovs", "ct-mark": ["1", "2"] }, /^--ct-mark is given once/);
  rejects({ backend: "ovs", "ct-mark": ["0x1ffffffff"] }, /^--ct-mark must hold a 32-bit mark/);
  rejects({ backend: "ovs", "ct-zone-range": "9-1" }, /^--ct-zone-range /);
  rejects({ backend: "ovs", "port-wait-ms": "-5" }, /^--port-wait-ms /);
  rejects({ backend: "ovs", netns: "../x" }, /^--netns /);
  rejects({ backend: "ovs", "ct-zone": ["vm1:if0=11"] }, /^--ct-zone does not apply to --backend ovs/);
  rejects({ backend: "conntrack", bridge: "br-int" }, /^--bridge does not apply to --backend conntrack/);
  rejects({ bridge: "br-int", netns: "x" }, /^--bridge, --netns do not apply to --backend memory/);
  rejects({ backend: "conntrack", "ct-zone": ["vm1:if0"] }, /^--ct-zone must be <vm>:<iface>=<zone>/);
  rejects({ backend: "conntrack", "ct-zone": ["vm1:if0=0"] }, /^--ct-zone must be/);
  rejects({ backend: "conntrack", "ct-zone": ["vm1:if0=11", "vm1:if0=12"] }, /^--ct-zone gives port if0 of VM vm1 two zones/);
  rejects({ backend: "conntrack", "ct-zone": ["vm/1:if0=11"] }, /^--ct-zone must name a VM id/);
  rejects({ backend: "conntrack", "ct-mark": ["__proto__=5"] }, /^--ct-mark must name a VM id/);
  rejects({ backend: "conntrack", "ct-mark": ["vm1"] }, /^--ct-mark must be <vm>=<mark>/);
  rejects({ backend: "conntrack", "ct-mark": ["vm1=1", "vm1=2"] }, /^--ct-mark gives VM vm1 two marks/);
});

test("agent flags - a port named __proto__ stays an ordinary key", () => {
  const c = cfg({ backend: "conntrack", "ct-zone": ["vm1:__proto__=11", "vm1:if0=12"] });
  const zones = c.conntrack!.vms!.vm1!.zones;
  assert.deepEqual(Object.keys(zones).sort(), ["__proto__", "if0"]);
  assert.equal(Object.getOwnPropertyDescriptor(zones, "__proto__")?.value, 11);
  assert.equal(Object.getPrototypeOf(zones), Object.prototype);
});
