#!/usr/bin/env node
/**
 * netmig's hypervisor integration as a small executable (hooks/libvirt/netmig
 * runs it), kept apart from cli/main.ts so that a hook with nothing to do
 * starts fast and loads no gRPC:
 *
 *   node dist/cli/hook/main.js libvirt <vm-name> <operation> <sub-operation> <extra>   (domain XML on stdin)
 *   node dist/cli/hook/main.js lifecycle-watch                                          (until SIGTERM)
 *
 * Configuration: /etc/netmig/hook.conf and NETMIG_* variables (docs/libvirt-hook.md).
 */
const USAGE = `usage: main.js libvirt <vm-name> <operation> <sub-operation> <extra>   (domain XML on stdin)
       main.js lifecycle-watch`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === "libvirt") {
    const { libvirtHookMain } = await import("./libvirt.js");
    return libvirtHookMain(rest);
  }
  if (cmd === "lifecycle-watch") {
    const { lifecycleWatchMain } = await import("./lifecycle-watch.js");
    await lifecycleWatchMain();
    return -1;
  }
  process.stderr.write(`${USAGE}\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    // -1: the watcher runs until a signal.
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`netmig-hook: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
