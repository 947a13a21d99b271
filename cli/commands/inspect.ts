/** `netmig status|list|hosts|cancel` and `netmig vm show|export|import`. */
import { readFileSync, writeFileSync } from "node:fs";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import type { ListMigrationsResponse__Output } from "../../proto/gen/netmig/v1/ListMigrationsResponse.js";
import type { ListHostsResponse__Output } from "../../proto/gen/netmig/v1/ListHostsResponse.js";
import type { VmStateSummary__Output } from "../../proto/gen/netmig/v1/VmStateSummary.js";
import type { ExportVmStateResponse__Output } from "../../proto/gen/netmig/v1/ExportVmStateResponse.js";
import { BadRequestError } from "../../protocol/errors.js";
import { optStr, str, type Flags } from "../args.js";
import { unaryCall } from "../client.js";
import { migrationSummary, ms, table } from "../render.js";

export async function statusCommand(client: MigrationServiceClient, id: string, json: boolean): Promise<number> {
  const m = await unaryCall<object, Migration__Output>(client, "GetMigration", { migration_id: id });
  if (json) console.log(JSON.stringify(m));
  else {
    console.log(migrationSummary(m));
    for (const h of m.history) console.log(`  ${new Date(Number(h.at_ms)).toISOString()}  ${h.phase.padEnd(11)} ${h.note}`);
  }
  return 0;
}

export const listFlags = { vm: { type: "string" }, active: { type: "boolean" }, limit: { type: "string" } } as const;

export async function listCommand(client: MigrationServiceClient, flags: Flags, json: boolean): Promise<number> {
  const res = await unaryCall<object, ListMigrationsResponse__Output>(client, "ListMigrations", { vm_id: optStr(flags, "vm") ?? "", active_only: flags.active === true, limit: Number(flags.limit ?? 50) });
  if (json) console.log(JSON.stringify(res.migrations));
  else {
    console.log(table([["ID", "VM", "FROM", "TO", "PHASE", "FREEZE", "CREATED"], ...res.migrations.map((m) => [
      m.migration_id, m.vm_id, m.src_host, m.dst_host, m.phase, m.progress?.freeze_window_ms ? ms(m.progress.freeze_window_ms) : "-", new Date(Number(m.created_at_ms)).toISOString(),
    ])]));
  }
  return 0;
}

export async function hostsCommand(client: MigrationServiceClient, json: boolean): Promise<number> {
  const res = await unaryCall<object, ListHostsResponse__Output>(client, "ListHosts", {});
  if (json) console.log(JSON.stringify(res.hosts));
  else {
    console.log(table([["HOST", "ALIVE", "BACKEND", "VMS", "LAST SEEN"], ...res.hosts.map((h) => [
      h.host_id, h.alive ? "yes" : "no", h.backend, String(h.vms.length), `${((Date.now() - Number(h.last_seen_ms)) / 1000).toFixed(1)} s ago`,
    ])]));
  }
  return 0;
}

export async function cancelCommand(client: MigrationServiceClient, id: string, json: boolean): Promise<number> {
  const m = await unaryCall<object, Migration__Output>(client, "CancelMigration", { migration_id: id, reason: "cancelled from the CLI" });
  console.log(json ? JSON.stringify(m) : migrationSummary(m));
  return m.phase === "ABORTED" ? 0 : 1;
}

export const vmFlags = { host: { type: "string" }, output: { type: "string", short: "o" } } as const;

export async function vmCommand(client: MigrationServiceClient, sub: string | undefined, arg: string | undefined, flags: Flags, json: boolean): Promise<number> {
  switch (sub) {
    case "show": {
      const s = await unaryCall<object, VmStateSummary__Output>(client, "GetVmState", { vm_id: need(arg, "vm show <vm>") });
      if (json) console.log(JSON.stringify(s));
      else {
        console.log(`VM ${s.vm_id} on ${s.owner_host} (epoch ${s.epoch}, ${s.status}${s.migration_id ? `, migrating: ${s.migration_id}` : ""})`);
        console.log(`  digest ${s.digest}  generation ${s.gen}`);
        for (const [t, n] of Object.entries(s.counts)) console.log(`  ${t.padEnd(11)} ${Number(n).toLocaleString("en")}`);
      }
      return 0;
    }
    case "export": {
      const res = await unaryCall<object, ExportVmStateResponse__Output>(client, "ExportVmState", { vm_id: need(arg, "vm export <vm>") }, 120_000);
      const out = optStr(flags, "output");
      if (out) {
        writeFileSync(out, res.document);
        console.error(`exported VM ${res.vm_id} from ${res.host_id} to ${out} (digest ${res.digest})`);
      } else process.stdout.write(res.document);
      return 0;
    }
    case "import": {
      const file = need(arg, "vm import <file> --host <host>");
      const doc = file === "-" ? readFileSync(0) : readFileSync(file);
      const s = await unaryCall<object, VmStateSummary__Output>(client, "ImportVmState", { host_id: str(flags, "host"), document: doc }, 120_000);
      console.log(json ? JSON.stringify(s) : `imported VM ${s.vm_id} on ${s.owner_host} (digest ${s.digest})`);
      return 0;
    }
    default:
      throw new BadRequestError("usage: netmig vm show|export|import ...");
  }
}

function need(v: string | undefined, usage: string): string {
  if (!v) throw new BadRequestError(`usage: netmig ${usage}`);
  return v;
}
