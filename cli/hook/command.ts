/**
 * `netmig hook …`: the hypervisor integration's commands, shared by the main
 * CLI (`netmig hook libvirt …`) and the small entry the libvirt wrapper runs
 * (dist/cli/hook/main.js, which starts without loading the rest of the CLI).
 * Both take the same arguments and behave the same.
 *
 *   hook libvirt <vm-name> <operation> <sub-operation> <extra>   (domain XML on stdin)
 *   hook lifecycle-watch                                          (until SIGTERM)
 */
export const HOOK_USAGE = `usage: netmig hook libvirt <vm-name> <operation> <sub-operation> <extra>   (domain XML on stdin; what libvirt runs)
       netmig hook lifecycle-watch                                          (follows libvirt lifecycle events until SIGTERM)
configuration: /etc/netmig/hook.conf (NETMIG_HOOK_CONFIG) and NETMIG_* variables; see docs/libvirt-hook.md`;

/**
 * Runs a hook command. Returns the exit code, or -1 when a long-running
 * watcher was started (it ends on a signal).
 */
export async function hookCommand(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === "libvirt") {
    const { libvirtHookMain } = await import("./libvirt.js");
    return libvirtHookMain(rest);
  }
  if (cmd === "lifecycle-watch" && rest.length === 0) {
    const { lifecycleWatchMain } = await import("./lifecycle-watch.js");
    await lifecycleWatchMain();
    return -1;
  }
  if (cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(`${HOOK_USAGE}\n`);
    return 0;
  }
  process.stderr.write(`${HOOK_USAGE}\n`);
  return 2;
}
