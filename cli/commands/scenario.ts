/**
 * `netmig scenario`: the docker-compose demo job, run against a remote
 * coordinator. Waits (with a deadline) for the coordinator and the hosts,
 * imports a generated VM on the seed host unless netmig already manages it,
 * then migrates it to each host of the path in turn, printing progress and
 * each result. Exits 0 only if every migration ends DONE with matching
 * digests; 1 if one does not; 2 on bad flags.
 *
 *   netmig scenario --coordinator coordinator:50051 --path host-a,host-b,host-c [--vm vm-demo-01] [--seed-host host-a] [--conntrack 20000]
 */
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { ListHostsResponse__Output } from "../../proto/gen/netmig/v1/ListHostsResponse.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import type { MigrationOptions } from "../../proto/gen/netmig/v1/MigrationOptions.js";
import type { VmStateSummary__Output } from "../../proto/gen/netmig/v1/VmStateSummary.js";
import { BadRequestError, TimeoutError, UnavailableError } from "../../protocol/errors.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { int, optStr, str, type Flags } from "../args.js";
import { unaryCall } from "../client.js";
import { LiveLine, migrationSummary, progressLine } from "../render.js";
import { follow, optionsFrom } from "./migrate.js";

export const scenarioFlags = {
  vm: { type: "string" }, "seed-host": { type: "string" }, path: { type: "string" },
  conntrack: { type: "string" }, fdb: { type: "string" }, acls: { type: "string" }, "wait-ms": { type: "string" },
  "migration-wait-ms": { type: "string" }, "freeze-budget-ms": { type: "string" }, "max-rounds": { type: "string" },
  "stop-and-copy": { type: "boolean" }, "timeout-ms": { type: "string" },
} as const;

/** gRPC status codes the scenario reacts to. */
const GRPC_NOT_FOUND = 5;
const GRPC_UNAVAILABLE = 14;

/** Host ids as agents take them (`--host-id`). */
const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export interface ScenarioIo {
  /** Where lines go. Default: console.log. */
  out?: (line: string) => void;
  /** Redraw progress on one terminal line. Default: when stdout is a TTY and `out` is the default. */
  liveLine?: boolean;
}

export async function scenarioCommand(client: MigrationServiceClient, flags: Flags, json = false, io: ScenarioIo = {}): Promise<number> {
  const out = io.out ?? ((l: string) => console.log(l));
  const path = str(flags, "path").split(",").map((h) => h.trim()).filter(Boolean);
  if (path.length < 2) throw new BadRequestError(`--path needs at least two hosts (e.g. host-a,host-b), got ${JSON.stringify(flags.path)}`);
  const seedHost = optStr(flags, "seed-host") ?? path[0]!;
  for (const h of [seedHost, ...path]) {
    if (!HOST_ID.test(h)) throw new BadRequestError(`host id ${JSON.stringify(h)} is not valid: use letters, digits, "_", "." and "-"`);
  }
  const vmId = str(flags, "vm", "vm-demo-01");
  const sizes = { conntrack: int(flags, "conntrack", 20_000, 0, 2_000_000), fdb: int(flags, "fdb", 4000, 0, 1_000_000), acls: int(flags, "acls", 500, 0, 100_000) };
  const waitMs = int(flags, "wait-ms", 60_000, 0, 3_600_000);
  const migrationWaitMs = int(flags, "migration-wait-ms", 600_000, 1000, 86_400_000);
  const options = optionsFrom(flags);
  const say = json ? () => undefined : out;
  const live = !json && (io.liveLine ?? (io.out === undefined && process.stdout.isTTY === true));

  say(`netmig scenario: VM ${vmId} seeded on ${seedHost}, then migrated along ${path.join(" → ")}`);
  const hosts = await waitForHosts(client, [...new Set([seedHost, ...path])], waitMs, say);
  say(`  coordinator up; hosts alive: ${hosts.join(", ")}`);

  let vm = await vmState(client, vmId);
  if (vm) {
    say(`  VM ${vmId} is already managed by netmig, on ${vm.owner_host} (epoch ${vm.epoch}); continuing from there`);
  } else {
    const state = generateVmState(vmId, { ...sizes, ports: 2, neighbours: 128 });
    await unaryCall(client, "ImportVmState", { host_id: seedHost, document: Buffer.from(JSON.stringify(toDocument(state))) }, 120_000);
    vm = await vmState(client, vmId);
    say(`  VM ${vmId} imported on ${seedHost}: ${counts(vm)}`);
  }

  const results: Migration__Output[] = [];
  let ok = true;
  for (const [i, to] of path.entries()) {
    const from = vm?.owner_host ?? "";
    if (from === to) {
      // The path's first host is where the VM starts; a later one it is on already is skipped.
      if (i > 0) say(`\n${vmId} is on ${to} already`);
      continue;
    }
    say(`\nmigrating ${vmId}: ${from} → ${to}`);
    const m = await migrate(client, vmId, to, options, migrationWaitMs, json ? null : live ? new LiveLine() : say);
    results.push(m);
    if (json) out(JSON.stringify(m));
    else say(migrationSummary(m));
    const good = m.phase === "DONE" && !!m.progress?.src_digest && m.progress.src_digest === m.progress.dst_digest;
    ok &&= good;
    if (!good) break;
    vm = await vmState(client, vmId);
    say(`  now on ${vm?.owner_host} (epoch ${vm?.epoch}): ${counts(vm)}`);
  }
  say(ok
    ? `\nscenario finished: ${results.length} migration(s) DONE, digests identical on source and destination.`
    : `\nscenario FAILED: a migration did not end DONE with matching digests (see above).`);
  return ok ? 0 : 1;
}

/**
 * Starts a migration and follows it to its end (at most `waitMs`). A watch
 * broken by an unreachable coordinator (a restart, say) is resumed.
 */
async function migrate(
  client: MigrationServiceClient, vmId: string, to: string, options: MigrationOptions, waitMs: number,
  progress: LiveLine | ((line: string) => void) | null,
): Promise<Migration__Output> {
  const timeout = new TimeoutError(`migration of ${vmId} to ${to} did not end within ${waitMs} ms (--migration-wait-ms); see \`netmig list --vm ${vmId}\``, { vmId, hostId: to });
  const deadline = Date.now() + waitMs;
  const started = await unaryCall<object, Migration__Output>(client, "StartMigration", { vm_id: vmId, dst_host: to, options, wait: false });
  const id = started.migration_id;
  let last = "";
  const onEvent = (line: string) => {
    if (progress instanceof LiveLine) progress.update(line);
    else if (progress && line !== last) progress(line);
    last = line;
  };
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timeout.context.migrationId = id;
      reject(timeout);
    }, Math.max(0, deadline - Date.now()));
  });
  try {
    for (;;) {
      try {
        return await Promise.race([follow(client, id, (e) => onEvent(`  ${progressLine(e.phase, e.progress)}  ${e.message}`)), expired]);
      } catch (err) {
        if ((err as { code?: unknown }).code !== GRPC_UNAVAILABLE || Date.now() >= deadline) throw err;
        onEvent("  coordinator unreachable; resuming the watch");
        await Promise.race([new Promise((r) => setTimeout(r, 1000)), expired]);
      }
    }
  } finally {
    clearTimeout(timer);
    if (progress instanceof LiveLine) progress.done();
  }
}

/** Waits (at most `waitMs`) until the coordinator answers and every host in `need` is alive. */
async function waitForHosts(client: MigrationServiceClient, need: string[], waitMs: number, say: (l: string) => void): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  let told = "";
  for (;;) {
    let why: string;
    try {
      const res = await unaryCall<object, ListHostsResponse__Output>(client, "ListHosts", {}, 2000);
      const alive = new Set(res.hosts.filter((h) => h.alive).map((h) => h.host_id));
      const missing = need.filter((h) => !alive.has(h));
      if (missing.length === 0) return need;
      const known = new Set(res.hosts.map((h) => h.host_id));
      const never = missing.filter((h) => !known.has(h));
      const dead = missing.filter((h) => known.has(h));
      why = [
        never.length ? `waiting for ${never.join(", ")} to report (no agent with that --host-id has been seen)` : "",
        dead.length ? `${dead.join(", ")} known but not alive (no recent heartbeat)` : "",
      ].filter(Boolean).join("; ");
      if (res.hosts.length > 0) why += `; known hosts: ${res.hosts.map((h) => `${h.host_id}${h.alive ? "" : " (down)"}`).join(", ")}`;
    } catch (err) {
      why = `the coordinator is not answering yet (${(err as { details?: string }).details || (err as Error).message})`;
    }
    if (Date.now() >= deadline) throw new UnavailableError(`gave up after ${waitMs} ms (--wait-ms): ${why}`);
    if (why !== told) say(`  ${why}`);
    told = why;
    await new Promise((r) => setTimeout(r, Math.min(500, Math.max(0, deadline - Date.now()))));
  }
}

async function vmState(client: MigrationServiceClient, vmId: string): Promise<VmStateSummary__Output | null> {
  try {
    return await unaryCall<object, VmStateSummary__Output>(client, "GetVmState", { vm_id: vmId });
  } catch (err) {
    if ((err as { code?: number }).code === GRPC_NOT_FOUND) return null;
    throw err;
  }
}

function counts(s: VmStateSummary__Output | null): string {
  if (!s) return "-";
  return Object.entries(s.counts).filter(([, v]) => Number(v) > 0).map(([k, v]) => `${k} ${Number(v).toLocaleString("en")}`).join(", ");
}
