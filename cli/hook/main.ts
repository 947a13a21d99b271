#!/usr/bin/env node
/**
 * The entry hooks/libvirt/netmig runs: `netmig hook …` (cli/hook/command.ts)
 * without the rest of the CLI, so that a hook with nothing to do starts fast
 * and loads no gRPC.
 *
 *   node dist/cli/hook/main.js libvirt <vm-name> <operation> <sub-operation> <extra>   (domain XML on stdin)
 *   node dist/cli/hook/main.js lifecycle-watch                                          (until SIGTERM)
 *
 * Configuration: /etc/netmig/hook.conf and NETMIG_* variables (docs/libvirt-hook.md).
 */
import { hookCommand } from "./command.js";

hookCommand(process.argv.slice(2)).then(
  (code) => {
    // -1: the watcher runs until a signal.
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`netmig-hook: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
