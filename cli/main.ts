#!/usr/bin/env node
/**
 * The netmig command: runs the daemons and talks gRPC to the coordinator.
 * `netmig help` lists the commands.
 */
import { parseArgs } from "node:util";
import { NetmigError } from "../protocol/errors.js";
import type { Flags } from "./args.js";
import { createClient } from "./client.js";
import { agentCommand, agentFlags, coordinatorCommand, coordinatorFlags } from "./commands/daemons.js";
import { demoCommand, demoFlags } from "./commands/demo.js";
import { cancelCommand, hostsCommand, listCommand, listFlags, statusCommand, vmCommand, vmFlags } from "./commands/inspect.js";
import { evacuateCommand, evacuateFlags, migrateCommand, migrateFlags, watchCommand } from "./commands/migrate.js";
import { scenarioCommand, scenarioFlags } from "./commands/scenario.js";

const USAGE = `netmig — moves a VM's network state with it when it live-migrates

daemons
  netmig agent --host-id <id> [--nats <url>] [--state-dir <dir>] [--backend memory|ovs|conntrack]
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

const FLAGS: Record<string, object> = {
  agent: agentFlags, coordinator: coordinatorFlags, migrate: migrateFlags, evacuate: evacuateFlags, list: listFlags, vm: vmFlags, demo: demoFlags,
  scenario: scenarioFlags,
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
  const spec = { ...common, ...(FLAGS[cmd] ?? {}) } as Parameters<typeof parseArgs>[0] extends infer P ? P extends { options?: infer O } ? O : never : never;
  const { values, positionals } = parseArgs({ args: rest, options: spec, allowPositionals: true, strict: true });
  const flags = values as Flags;
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const json = flags.json === true;
  const client = () => createClient({
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
  switch (cmd) {
    case "agent": await agentCommand(flags); return -1;
    case "coordinator": await coordinatorCommand(flags); return -1;
    case "demo": return demoCommand(flags);
    case "scenario": return scenarioCommand(client(), flags, json);
    case "migrate": return migrateCommand(client(), arg(0, "migrate <vm> --to <host>"), flags, json);
    case "watch": return watchCommand(client(), arg(0, "watch <migration-id>"), json);
    case "status": return statusCommand(client(), arg(0, "status <migration-id>"), json);
    case "cancel": return cancelCommand(client(), arg(0, "cancel <migration-id>"), json);
    case "list": return listCommand(client(), flags, json);
    case "hosts": return hostsCommand(client(), json);
    case "evacuate": return evacuateCommand(client(), arg(0, "evacuate <host>"), flags, json);
    case "vm": return vmCommand(client(), positionals[0], positionals[1], flags, json);
    default:
      console.error(`netmig: unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
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
