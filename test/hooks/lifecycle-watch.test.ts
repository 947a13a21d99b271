import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { appendFileSync, chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unaryCall } from "../../cli/client.js";
import { defaultConfig, type HookConfig } from "../../cli/hook/config.js";
import { LifecycleWatch, type LifecycleEvent } from "../../cli/hook/lifecycle-watch.js";
import { HookLog } from "../../cli/hook/log.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { Cluster } from "../harness/cluster.js";
import { Deferred, waitFor } from "../harness/wait.js";
import { domainXml, runHook } from "./hook-harness.js";

// libvirt is not installed here: a fake virsh prints the lines the test appends
// to a file (`virsh event --loop`) and answers `virsh domuuid` from a table.
let c: Cluster;
let dir: string;
let events: string;
let domains: string;
let pids: string;
let virsh: string;

before(async () => {
  c = await Cluster.start({ agents: ["host-a", "host-b"] });
  dir = mkdtempSync(join(tmpdir(), "netmig-watch-"));
  events = join(dir, "events");
  domains = join(dir, "domains");
  pids = join(dir, "pids");
  virsh = join(dir, "virsh");
  writeFileSync(events, "");
  writeFileSync(domains, "");
  writeFileSync(virsh, `#!/bin/bash
case "$1" in
  event) echo $$ >> '${pids}'; exec tail -n +1 -s 0.05 -f '${events}' ;;
  domuuid) awk -v n="$2" '$1 == n { print $2; found = 1 } END { exit !found }' '${domains}' ;;
  *) echo "fake virsh: unexpected $*" >&2; exit 1 ;;
esac
`);
  chmodSync(virsh, 0o755);
});

after(async () => {
  await c?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function config(hostId: string): HookConfig {
  return { ...defaultConfig(), coordinator: c.grpcAddress, hostId, virsh, logFile: join(dir, "watch.log"), logLevel: "debug", timeoutMs: 5000 };
}

/** A watcher whose handled events can be awaited one by one, by domain. */
function startWatch(hostId: string) {
  const waiters = new Map<string, Deferred<string>>();
  const next = (domain: string) => {
    const d = new Deferred<string>();
    waiters.set(domain, d);
    return d;
  };
  const cfg = config(hostId);
  const watch = new LifecycleWatch({
    config: cfg, log: new HookLog(cfg.logFile, cfg.logLevel, { host: hostId }), restartDelayMs: 50,
    onHandled: (e: LifecycleEvent, outcome) => {
      if (e.event === "Suspended") waiters.get(e.domain)?.resolve(outcome);
    },
  });
  watch.start();
  return { watch, next };
}

/** PIDs of every `virsh event` the fake started, oldest first. */
function pidLines(): string[] {
  return existsSync(pids) ? readFileSync(pids, "utf8").split("\n").filter(Boolean) : [];
}

async function migrationOf(uuid: string): Promise<Migration__Output | null> {
  const res = await unaryCall<object, { migrations: Migration__Output[] }>(c.client, "ListMigrations", { vm_id: uuid });
  return res.migrations[0] ?? null;
}

test("lifecycle watch - Suspended Migrated on the source switches over at once; the stopped hook then completes", async () => {
  const uuid = randomUUID();
  const state = generateVmState(uuid, { conntrack: 2000 });
  await c.importVm("host-a", state);
  appendFileSync(domains, `web-9 ${uuid}\n`);
  const xml = domainXml({ uuid, name: "web-9", ovsInterfaceId: state.tables.ports[0]!.ifaceId, ovsMac: state.tables.ports[0]!.mac });

  const begin = await runHook(["web-9", "migrate", "begin", "-"], xml, { NETMIG_COORDINATOR: c.grpcAddress, NETMIG_HOST_ID: "host-b", NETMIG_HOOK_LOG: join(dir, "hook.log") });
  assert.equal(begin.code, 0, begin.stderr);
  await waitFor(async () => (await migrationOf(uuid))?.phase === "PRECOPY", { what: "pre-copy" });

  const src = startWatch("host-a");
  const dst = startWatch("host-b");
  try {
    const onSrc = src.next("web-9");
    const onDst = dst.next("web-9");
    appendFileSync(events, "event 'lifecycle' for domain 'web-9': Resumed Unpaused\nnot an event line\n");
    appendFileSync(events, "2024-05-01 10:00:00.000+0000: event 'lifecycle' for domain 'web-9': Suspended Migrated\n");
    assert.equal(await onSrc.wait({ timeoutMs: 15_000, what: "the source watcher's switchover" }), "ACTIVATED");
    assert.equal(await onDst.wait({ timeoutMs: 15_000, what: "the destination watcher" }), "no-migration", "only the source switches over");
    const m = await migrationOf(uuid);
    assert.equal(m?.phase, "ACTIVATED", "switched over; the source is released at Complete");
    assert.equal(await c.vmStatus("host-b", uuid), "active");

    const stopped = await runHook(["web-9", "stopped", "end", "-"], xml, { NETMIG_COORDINATOR: c.grpcAddress, NETMIG_HOST_ID: "host-a", NETMIG_HOOK_LOG: join(dir, "hook.log") });
    assert.equal(stopped.code, 0, stopped.stderr);
    const done = await migrationOf(uuid);
    assert.equal(done?.phase, "DONE");
    const phases = done!.history.map((h) => h.phase);
    assert.ok(phases.indexOf("ACTIVATED") < phases.indexOf("RELEASED"), phases.join(" → "));
  } finally {
    await src.watch.close();
    await dst.watch.close();
  }
});

test("lifecycle watch - a domain that is not migrating or has no UUID: no switchover; virsh is restarted when it exits", async () => {
  const uuid = randomUUID();
  await c.importVm("host-a", generateVmState(uuid, { conntrack: 100 }));
  appendFileSync(domains, `idle-1 ${uuid}\n`);
  const started = pidLines().length;
  const w = startWatch("host-a");
  try {
    await waitFor(() => pidLines().length > started, { what: "virsh event to start" });
    const idle = w.next("idle-1");
    const ghost = w.next("ghost");
    appendFileSync(events, "event 'lifecycle' for domain 'idle-1': Suspended Migrated\nevent 'lifecycle' for domain 'ghost': Suspended Migrated\n");
    assert.equal(await idle.wait({ timeoutMs: 10_000 }), "no-migration");
    assert.equal(await ghost.wait({ timeoutMs: 10_000 }), "no-uuid");
    assert.equal(await migrationOf(uuid), null);

    // libvirtd restarts: virsh event exits, and the watcher starts it again.
    const before = pidLines();
    process.kill(Number(before[before.length - 1]), "SIGTERM");
    await waitFor(() => pidLines().length > before.length, { what: "virsh event to be restarted", timeoutMs: 10_000 });
  } finally {
    await w.watch.close();
  }
});
