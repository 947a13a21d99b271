/** `netmig migrate`, `netmig watch` and `netmig evacuate`: start or follow migrations with live progress. */
import type * as grpc from "@grpc/grpc-js";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import type { MigrationEvent__Output } from "../../proto/gen/netmig/v1/MigrationEvent.js";
import type { EvacuationEvent__Output } from "../../proto/gen/netmig/v1/EvacuationEvent.js";
import type { MigrationOptions } from "../../proto/gen/netmig/v1/MigrationOptions.js";
import { optInt, optStr, str, type Flags } from "../args.js";
import { unaryCall } from "../client.js";
import { freezeWindowMs, LiveLine, migrationSummary, ms, progressLine } from "../render.js";

export const migrateFlags = {
  to: { type: "string" }, from: { type: "string" }, "freeze-budget-ms": { type: "string" }, "max-rounds": { type: "string" },
  "converge-rows": { type: "string" }, "stop-and-copy": { type: "boolean" }, "timeout-ms": { type: "string" }, "no-wait": { type: "boolean" },
} as const;

export function optionsFrom(flags: Flags): MigrationOptions {
  return {
    freeze_budget_ms: optInt(flags, "freeze-budget-ms", 1, 600_000) ?? 0,
    max_precopy_rounds: optInt(flags, "max-rounds", 0, 1000) ?? 0,
    converge_rows: optInt(flags, "converge-rows", 0, 100_000_000) ?? 0,
    stop_and_copy: flags["stop-and-copy"] === true,
    timeout_ms: optInt(flags, "timeout-ms", 1000, 86_400_000) ?? 0,
  };
}

/** Follows a migration's events until it ends; resolves with the final record. */
export function follow(client: MigrationServiceClient, id: string, onEvent: (e: MigrationEvent__Output) => void): Promise<Migration__Output> {
  return new Promise((resolve, reject) => {
    const call = client.WatchMigration({ migration_id: id });
    let ended = false;
    call.on("data", (e: MigrationEvent__Output) => {
      onEvent(e);
      if (e.done) ended = true;
    });
    call.on("error", (err: grpc.ServiceError) => reject(err));
    call.on("end", () => {
      if (!ended) return reject(new Error(`the watch of migration ${id} ended before the migration did`));
      unaryCall<{ migration_id: string }, Migration__Output>(client, "GetMigration", { migration_id: id }).then(resolve, reject);
    });
  });
}

export async function migrateCommand(client: MigrationServiceClient, vmId: string, flags: Flags, json: boolean): Promise<number> {
  const started = await unaryCall<object, Migration__Output>(client, "StartMigration", {
    vm_id: vmId, dst_host: str(flags, "to"), src_host: optStr(flags, "from") ?? "", options: optionsFrom(flags), wait: false,
  });
  if (flags["no-wait"]) {
    console.log(json ? JSON.stringify(started) : started.migration_id);
    return 0;
  }
  return watchCommand(client, started.migration_id, json);
}

export async function watchCommand(client: MigrationServiceClient, id: string, json: boolean): Promise<number> {
  const line = new LiveLine();
  if (!json) console.log(`migration ${id}`);
  const final = await follow(client, id, (e) => {
    if (json) console.log(JSON.stringify(e));
    else line.update(`${progressLine(e.phase, e.progress)}  ${e.message}`);
  });
  line.done();
  if (!json) console.log(migrationSummary(final));
  return final.phase === "DONE" ? 0 : 1;
}

export const evacuateFlags = { to: { type: "string" }, concurrency: { type: "string" }, "freeze-budget-ms": { type: "string" }, "stop-and-copy": { type: "boolean" } } as const;

export async function evacuateCommand(client: MigrationServiceClient, host: string, flags: Flags, json: boolean): Promise<number> {
  const dsts = (optStr(flags, "to") ?? "").split(",").filter(Boolean);
  const line = new LiveLine();
  const freezes: number[] = [];
  let last: EvacuationEvent__Output | null = null;
  await new Promise<void>((resolve, reject) => {
    const call = client.EvacuateHost({ src_host: host, dst_hosts: dsts, concurrency: optInt(flags, "concurrency", 1, 64) ?? 4, options: optionsFrom(flags) });
    call.on("data", (e: EvacuationEvent__Output) => {
      last = e;
      const p = e.migration?.progress;
      if (p?.freeze_window_ms) freezes.push(freezeWindowMs(p));
      if (json) console.log(JSON.stringify(e));
      else line.update(`evacuating ${host}: ${e.done}/${e.total} done, ${e.failed} failed, ${ms(e.elapsed_ms)}`);
    });
    call.on("error", reject);
    call.on("end", () => resolve());
  });
  line.done();
  const l = last as EvacuationEvent__Output | null;
  if (!json && l) {
    freezes.sort((a, b) => a - b);
    const p99 = freezes.length ? freezes[Math.min(freezes.length - 1, Math.ceil(freezes.length * 0.99) - 1)]! : 0;
    console.log(`evacuated ${l.done} of ${l.total} VMs in ${ms(l.elapsed_ms)}; ${l.failed} failed; freeze p99 ${ms(p99)}`);
  }
  return l && l.failed === 0 ? 0 : 1;
}
