import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unaryCall } from "../../cli/client.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";
import { freePort } from "../harness/free-port.js";
import { waitFor } from "../harness/wait.js";
import { connectionCounter, domainXml, readHookLog, runHook } from "./hook-harness.js";

let c: Cluster;
let dir: string;
let logFile: string;
let confFile: string;

before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"] });
  dir = mkdtempSync(join(tmpdir(), "netmig-hook-"));
  logFile = join(dir, "log", "hook.log");
  confFile = join(dir, "hook.conf");
  // The file carries what /etc/netmig/hook.conf would; the environment adds the host id, as an override would.
  writeFileSync(confFile, [
    "# netmig hook test config",
    `coordinator = ${c.grpcAddress}`,
    "policy = fail-closed",
    "timeout_ms = 5000",
    `log_file = "${logFile}"`,
    "log_level = debug",
    "",
  ].join("\n"));
});

after(async () => {
  await c?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Environment of the hook on `host`: the config file, this host's id, and overrides. */
const on = (host: string, extra: Record<string, string> = {}) => ({ NETMIG_HOOK_CONFIG: confFile, NETMIG_HOST_ID: host, ...extra });

interface Vm {
  uuid: string;
  name: string;
  xml: Buffer;
  digest: string;
}

/** A VM on host-a, imported into netmig, and its domain XML. */
async function seedVm(name: string, imported = true): Promise<Vm> {
  const uuid = randomUUID();
  const state = generateVmState(uuid, { conntrack: 2000, seed: name.length });
  if (imported) await c.importVm("host-a", state);
  const port = state.tables.ports[0]!;
  const xml = Buffer.from(domainXml({ uuid, name, ovsInterfaceId: port.ifaceId, ovsMac: port.mac }), "utf8");
  return { uuid, name, xml, digest: StateDigest.of(state.tables).toString() };
}

async function migrationOf(uuid: string): Promise<Migration__Output | null> {
  const res = await unaryCall<object, { migrations: Migration__Output[] }>(c.client, "ListMigrations", { vm_id: uuid });
  return res.migrations[0] ?? null;
}

function logOf(uuid: string) {
  return readHookLog(logFile).filter((l) => l.vm_id === uuid);
}

test("libvirt hook - incoming migration: migrate begin echoes the XML byte for byte, pre-copy runs until the source's stopped hook completes it", async () => {
  const vm = await seedVm("web-1");

  const begin = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b"));
  assert.equal(begin.code, 0, begin.stderr);
  assert.ok(begin.stdout.equals(vm.xml), "stdout of migrate begin is the domain XML, unchanged");

  const m = await waitFor(async () => {
    const cur = await migrationOf(vm.uuid);
    return cur && cur.phase === "PRECOPY" ? cur : null;
  }, { what: "the phased migration to reach PRECOPY" });
  assert.equal(m.mode, "phased");
  assert.equal(m.src_host, "host-a", "the source comes from VM ownership");
  assert.equal(m.dst_host, "host-b", "the destination is the hook's host");
  assert.equal(m.options?.timeout_ms, 3_600_000, "the migration may wait for libvirt's memory copy as long as migration_timeout_ms");

  // The rest of libvirt's incoming sequence on the destination: no calls, no output.
  for (const op of [["prepare", "begin", "-"], ["start", "begin", "-"], ["started", "begin", "-"]]) {
    const r = await runHook([vm.name, ...op], vm.xml, on("host-b"));
    assert.equal(r.code, 0, `${op.join(" ")}: ${r.stderr}`);
    assert.equal(r.stdout.length, 0, `${op.join(" ")} prints nothing`);
  }
  assert.equal((await migrationOf(vm.uuid))?.phase, "PRECOPY", "pre-copy waits for the switchover");
  assert.equal(await c.vmStatus("host-b", vm.uuid), "staged");

  // The guest has moved: the source's QEMU stops, then its resources are released.
  const stopped = await runHook([vm.name, "stopped", "end", "-"], vm.xml, on("host-a"));
  assert.equal(stopped.code, 0, stopped.stderr);
  const done = await migrationOf(vm.uuid);
  assert.equal(done?.phase, "DONE", `${done?.error?.message ?? ""}\n${c.logs()}`);
  const released = await runHook([vm.name, "release", "end", "migrated"], vm.xml, on("host-a"));
  assert.equal(released.code, 0, released.stderr);

  const phases = done!.history.map((h) => h.phase);
  const expected = ["PRECOPY", "FROZEN", "COMMITTED", "ACTIVATED", "RELEASED", "DONE"];
  assert.deepEqual(phases.filter((p) => expected.includes(p)), expected, `prepare → switchover → complete, got ${phases.join(" → ")}`);
  assert.equal(await c.vmStatus("host-b", vm.uuid), "active", "the destination holds the VM");
  assert.equal(await c.vmStatus("host-a", vm.uuid), "released");
  const exported = await c.exportVm(vm.uuid);
  assert.equal(exported.host_id, "host-b");
  assert.equal(exported.doc.digest, vm.digest, "the state arrived whole");

  const lines = logOf(vm.uuid);
  assert.deepEqual(lines.filter((l) => l.level === "error" || l.level === "warn"), [], "nothing went wrong");
  assert.ok(lines.some((l) => l.op === "migrate begin -" && /pre-copy started/.test(l.msg) && l.migration_id === m.migration_id), "the log says which migration started");
  assert.ok(lines.some((l) => l.op === "stopped end -" && /migration DONE/.test(l.msg)), "the log says the migration is done");
});

test("libvirt hook - failed incoming migration: the destination's stopped hook does not complete, release end failed aborts", async () => {
  const vm = await seedVm("db-1");
  const begin = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b"));
  assert.equal(begin.code, 0, begin.stderr);
  await waitFor(async () => (await migrationOf(vm.uuid))?.phase === "PRECOPY", { what: "pre-copy" });

  // libvirt tears the failed incoming QEMU down on the destination: stopped end -, then release end failed.
  const stopped = await runHook([vm.name, "stopped", "end", "-"], vm.xml, on("host-b"));
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal((await migrationOf(vm.uuid))?.phase, "PRECOPY", "a destination's stopped hook never completes a migration");

  const failed = await runHook([vm.name, "release", "end", "failed"], vm.xml, on("host-b"));
  assert.equal(failed.code, 0, failed.stderr);
  const m = await migrationOf(vm.uuid);
  assert.equal(m?.phase, "ABORTED", c.logs());

  const src = (await c.inventory("host-a")).vms.find((v) => v.vmId === vm.uuid);
  assert.equal(src?.status, "active", "the source is active");
  assert.equal(src?.digest, vm.digest, "the source's state is unchanged");
  assert.deepEqual((await c.inventory("host-b")).vms.filter((v) => v.vmId === vm.uuid), [], "the destination holds nothing of the VM");
  assert.deepEqual(logOf(vm.uuid).filter((l) => l.level === "error"), []);

  // And the VM can migrate again, through the hook.
  const again = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b"));
  assert.equal(again.code, 0, again.stderr);
  await runHook([vm.name, "stopped", "end", "-"], vm.xml, on("host-a"));
  assert.equal((await migrationOf(vm.uuid))?.phase, "DONE");
});

test("libvirt hook - unreachable coordinator, fail-closed: exit 1 and no output within the deadline, so libvirt cancels", async () => {
  const vm = await seedVm("cache-1", false);
  const r = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b", {
    NETMIG_COORDINATOR: `127.0.0.1:${await freePort()}`, NETMIG_HOOK_TIMEOUT_MS: "1000",
  }));
  assert.equal(r.code, 1);
  assert.equal(r.stdout.length, 0, "nothing replaces the domain XML");
  assert.ok(r.elapsedMs < 3000, `finished in ${Math.round(r.elapsedMs)} ms`);
  assert.match(r.stderr, /cancelled \(policy fail-closed\)/, "libvirt shows why");
  assert.ok(logOf(vm.uuid).some((l) => l.level === "error" && /^FAIL-CLOSED/.test(l.msg)), "the log says the migration was cancelled");
});

test("libvirt hook - unreachable coordinator, fail-open: exit 0 with the XML unchanged within the deadline, and a loud log", async () => {
  const vm = await seedVm("cache-2", false);
  const r = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b", {
    NETMIG_COORDINATOR: `127.0.0.1:${await freePort()}`, NETMIG_HOOK_TIMEOUT_MS: "1000", NETMIG_HOOK_POLICY: "fail-open",
  }));
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.equals(vm.xml), "the domain XML, unchanged");
  assert.ok(r.elapsedMs < 3000, `finished in ${Math.round(r.elapsedMs)} ms`);
  assert.ok(logOf(vm.uuid).some((l) => l.level === "error" && /^FAIL-OPEN: .*WITHOUT its network state/.test(l.msg)), "the log says the VM migrates without its state");
});

test("libvirt hook - a coordinator that accepts connections but never answers: the deadline bounds the hook", async () => {
  const hole = await connectionCounter();
  try {
    const vm = await seedVm("cache-3", false);
    const env = { NETMIG_COORDINATOR: hole.address, NETMIG_HOOK_TIMEOUT_MS: "1000" };
    const closed = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b", env));
    assert.equal(closed.code, 1);
    assert.ok(closed.elapsedMs < 3000, `fail-closed finished in ${Math.round(closed.elapsedMs)} ms`);
    const open = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b", { ...env, NETMIG_HOOK_POLICY: "fail-open" }));
    assert.equal(open.code, 0);
    assert.ok(open.stdout.equals(vm.xml));
    assert.ok(open.elapsedMs < 3000, `fail-open finished in ${Math.round(open.elapsedMs)} ms`);
    const stopped = await runHook([vm.name, "stopped", "end", "-"], vm.xml, on("host-a", env));
    assert.equal(stopped.code, 0, "exit codes of stopped/release are ignored by libvirt; the hook exits 0");
    assert.ok(stopped.elapsedMs < 3000, `stopped finished in ${Math.round(stopped.elapsedMs)} ms`);
    assert.ok(hole.count() >= 1, "the hook did try the coordinator");
  } finally {
    await hole.close();
  }
});

test("libvirt hook - plain start and stop of a VM that is not migrating: exit 0, no coordinator call for start, quiet for stop", async () => {
  const vm = await seedVm("plain-1");
  const counter = await connectionCounter();
  try {
    for (const op of [["prepare", "begin", "-"], ["start", "begin", "-"], ["started", "begin", "-"], ["reconnect", "begin", "-"], ["attach", "begin", "-"], ["restore", "begin", "-"]]) {
      const r = await runHook([vm.name, ...op], vm.xml, on("host-a", { NETMIG_COORDINATOR: counter.address }));
      assert.equal(r.code, 0, `${op.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout.length, 0);
    }
    assert.equal(counter.count(), 0, "no call to the coordinator");
  } finally {
    await counter.close();
  }
  // Stopping a VM that is not migrating looks it up and does nothing.
  for (const [host, op] of [["host-a", ["stopped", "end", "-"]], ["host-a", ["release", "end", "shutdown"]], ["host-a", ["release", "end", "-"]], ["host-b", ["release", "end", "failed"]]] as const) {
    const r = await runHook([vm.name, ...op], vm.xml, on(host));
    assert.equal(r.code, 0, `${op.join(" ")}: ${r.stderr}`);
  }
  assert.equal(await migrationOf(vm.uuid), null, "no migration was created");
  assert.equal(await c.vmStatus("host-a", vm.uuid), "active");
  assert.deepEqual(logOf(vm.uuid).filter((l) => l.level !== "debug"), [], "only debug lines");
});

test("libvirt hook - a VM netmig does not manage migrates unhindered even when fail-closed", async () => {
  const vm = await seedVm("unmanaged-1", false);
  const r = await runHook([vm.name, "migrate", "begin", "-"], vm.xml, on("host-b"));
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.equals(vm.xml));
  assert.ok(logOf(vm.uuid).some((l) => l.level === "warn" && /not managed by netmig/.test(l.msg)));
  const stopped = await runHook([vm.name, "stopped", "end", "-"], vm.xml, on("host-a"));
  assert.equal(stopped.code, 0);
});

test("libvirt hook - unreadable domain XML on migrate begin follows the policy and never prints a partial XML", async () => {
  const broken = Buffer.from("<domain type='kvm'><name>x</name><uuid>0b5d", "utf8");
  const closed = await runHook(["x", "migrate", "begin", "-"], broken, on("host-b"));
  assert.equal(closed.code, 1);
  assert.equal(closed.stdout.length, 0);
  const open = await runHook(["x", "migrate", "begin", "-"], broken, on("host-b", { NETMIG_HOOK_POLICY: "fail-open" }));
  assert.equal(open.code, 0);
  assert.ok(open.stdout.equals(broken), "fail-open passes libvirt's bytes back untouched");
});

test("libvirt hook - never calls libvirt: a virsh first on PATH is not run during a whole incoming migration", async () => {
  const vm = await seedVm("quiet-1");
  const bin = join(dir, "bin");
  const marker = join(dir, "virsh-was-run");
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "virsh"), `#!/bin/sh\necho "$@" >> '${marker}'\nexit 1\n`);
  chmodSync(join(bin, "virsh"), 0o755);
  const env = (host: string) => on(host, { PATH: `${bin}:${process.env.PATH ?? ""}` });
  for (const [host, op] of [
    ["host-b", ["migrate", "begin", "-"]], ["host-b", ["prepare", "begin", "-"]], ["host-b", ["start", "begin", "-"]], ["host-b", ["started", "begin", "-"]],
    ["host-a", ["stopped", "end", "-"]], ["host-a", ["release", "end", "migrated"]],
  ] as const) {
    const r = await runHook([vm.name, ...op], vm.xml, env(host));
    assert.equal(r.code, 0, `${op.join(" ")}: ${r.stderr}`);
  }
  assert.equal((await migrationOf(vm.uuid))?.phase, "DONE");
  assert.equal(existsSync(marker), false, "virsh was never run");
});
