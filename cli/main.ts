#!/usr/bin/env node
/**
 * The netmig command: runs the daemons and talks gRPC to the coordinator.
 * `netmig help` lists the commands.
 */
import { parseArgs } from "node:util";
import { NetmigError } from "../protocol/errors.js";
import type { MigrationServiceClient } from "../proto/gen/netmig/v1/MigrationService.js";
import type { Flags } from "./args.js";

const USAGE = `netmig — moves a VM's network state with it when it live-migrates

daemons
  netmig agent --host-id <id> [--nats <url>] [--state-dir <dir>] [--backend memory|ovs|conntrack]
                [--heartbeat-ms <ms>] [--gc-after-round-kib <KiB, 0: never; default 2048>]
      memory:    [--churn <entries/s|N%>] [--first-zone <n>]
      ovs:       [--ovsdb <unix socket>] [--ovs-rundir <dir>] [--vswitchd-ctl <socket>] [--bridge br-int]
                 [--vm-id-key vm-id] [--iface-id-key iface-id] [--mac-key attached-mac] [--zone-key ct-zone]
                 [--cookie-mask 0xffffffff00000000] [--conntrack on|off] [--ct-mark <mark>[/<mask>]]
                 [--fdb-hold-ms <ms>] [--port-wait-ms <ms>] [--keep-ports] [--netns <ns>] [--ct-zone-range 4096-65000]
      conntrack: --ct-zone <vm>:<iface>=<zone>... and/or --ct-mark <vm>=<mark>[/<mask>]... [--netns <ns>] [--ct-zone-range <lo>-<hi>]
  netmig coordinator [--nats <url>] [--grpc <addr>] [--id <id>] [--replicas <n>] [--tls-cert <f> --tls-key <f> [--tls-ca <f>]]

migrations (talk to the coordinator: --coordinator <host:port> or NETMIG_COORDINATOR, default 127.0.0.1:50051)
  netmig migrate <vm> --to <host> [--from <host>] [--freeze-budget-ms <ms>] [--stop-and-copy] [--no-wait]
  netmig watch <migration-id>
  netmig status <migration-id>
  netmig cancel <migration-id>
  netmig list [--vm <vm>] [--active]
  netmig evacuate <host> [--to <host,host>] [--concurrency <n>]
  netmig hosts
  netmig vm show <vm>
  netmig vm export <vm> [-o <file>]
  netmig vm import <file|-> --host <host>

  netmig demo [--conntrack <n>] [--fdb <n>] [--acls <n>] [--churn <entries/s>]
  netmig scenario --path <host,host[,...]> [--vm <vm>] [--seed-host <host>] [--conntrack <n>] [--wait-ms <ms>]
                  (the docker-compose demo job: seed a VM, migrate it along the path, print each result)

hypervisor integration (config: /etc/netmig/hook.conf and NETMIG_* variables; docs/libvirt-hook.md)
  netmig hook libvirt <vm-name> <operation> <sub-operation> <extra>   libvirt qemu hook (domain XML on stdin)
  netmig hook lifecycle-watch                                          Suspended Migrated → Switchover, until SIGTERM

Add --json for machine-readable output.`;

const common = { json: { type: "boolean" }, coordinator: { type: "string" }, help: { type: "boolean", short: "h" }, "tls-ca": { type: "string" }, "tls-cert": { type: "string" }, "tls-key": { type: "string" } } as const;

/** What running one command needs. */
interface Run {
  flags: Flags;
  positionals: string[];
  json: boolean;
  client: () => Promise<MigrationServiceClient>;
  arg: (i: number, usage: string) => string;
}

interface Command {
  flags?: object;
  /** The exit code; -1: a daemon is running, and it exits on a signal. */
  run(r: Run): Promise<number>;
}

/**
 * Each command's module is loaded when that command runs, so `netmig agent`
 * loads no gRPC and no coordinator (its heap stays small: see cli/daemons.ts).
 */
const daemons = () => import("./commands/daemons.js");
const migrate = () => import("./commands/migrate.js");
const inspect = () => import("./commands/inspect.js");
const COMMANDS: Record<string, () => Promise<Command>> = {
  agent: () => daemons().then((m) => ({ flags: m.agentFlags, run: async (r) => (await m.agentCommand(r.flags), -1) })),
  coordinator: () => daemons().then((m) => ({ flags: m.coordinatorFlags, run: async (r) => (await m.coordinatorCommand(r.flags), -1) })),
  demo: () => import("./commands/demo.js").then((m) => ({ flags: m.demoFlags, run: (r) => m.demoCommand(r.flags) })),
  scenario: () => import("./commands/scenario.js").then((m) => ({ flags: m.scenarioFlags, run: async (r) => m.scenarioCommand(await r.client(), r.flags, r.json) })),
  migrate: () => migrate().then((m) => ({ flags: m.migrateFlags, run: async (r) => m.migrateCommand(await r.client(), r.arg(0, "migrate <vm> --to <host>"), r.flags, r.json) })),
  watch: () => migrate().then((m) => ({ run: async (r) => m.watchCommand(await r.client(), r.arg(0, "watch <migration-id>"), r.json) })),
  evacuate: () => migrate().then((m) => ({ flags: m.evacuateFlags, run: async (r) => m.evacuateCommand(await r.client(), r.arg(0, "evacuate <host>"), r.flags, r.json) })),
  status: () => inspect().then((m) => ({ run: async (r) => m.statusCommand(await r.client(), r.arg(0, "status <migration-id>"), r.json) })),
  cancel: () => inspect().then((m) => ({ run: async (r) => m.cancelCommand(await r.client(), r.arg(0, "cancel <migration-id>"), r.json) })),
  list: () => inspect().then((m) => ({ flags: m.listFlags, run: async (r) => m.listCommand(await r.client(), r.flags, r.json) })),
  hosts: () => inspect().then((m) => ({ run: async (r) => m.hostsCommand(await r.client(), r.json) })),
  vm: () => inspect().then((m) => ({ flags: m.vmFlags, run: async (r) => m.vmCommand(await r.client(), r.positionals[0], r.positionals[1], r.flags, r.json) })),
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(USAGE);
    return 0;
  }
  // libvirt's arguments ("-", "end", …) are not netmig flags: the hook parses its own.
  if (cmd === "hook") {
    const { hookCommand } = await import("./hook/command.js");
    return hookCommand(rest);
  }
  const load = COMMANDS[cmd];
  if (!load) {
    console.error(`netmig: unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  const command = await load();
  const spec = { ...common, ...(command.flags ?? {}) } as Parameters<typeof parseArgs>[0] extends infer P ? P extends { options?: infer O } ? O : never : never;
  const { values, positionals } = parseArgs({ args: rest, options: spec, allowPositionals: true, strict: true });
  const flags = values as Flags;
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const client = async () => (await import("./client.js")).createClient({
    ...(typeof flags.coordinator === "string" ? { address: flags.coordinator } : {}),
    ...(typeof flags["tls-ca"] === "string" ? { caFile: flags["tls-ca"] } : {}),
    ...(typeof flags["tls-cert"] === "string" ? { certFile: flags["tls-cert"] } : {}),
    ...(typeof flags["tls-key"] === "string" ? { keyFile: flags["tls-key"] } : {}),
  });
  const arg = (i: number, usage: string): string => {
    const v = positionals[i];
    if (!v) throw new NetmigError("BAD_REQUEST", `usage: netmig ${usage}`);
    return v;
  };
  return command.run({ flags, positionals, json: flags.json === true, client, arg });
}

main(process.argv.slice(2)).then(
  (code) => {
    // -1: a daemon is running; it exits on a signal.
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    const e = err as { details?: string; message?: string; code?: unknown };
    const msg = e.details || e.message || String(err);
    console.error(`netmig: ${msg}`);
    process.exit(e instanceof NetmigError && e.code === "BAD_REQUEST" ? 2 : (e as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? 2 : 1);
  },
);
