/**
 * Network namespaces for dataplane tests: create/delete namespaces and veth
 * pairs, assign addresses (198.18.0.0/15 only), run commands inside with
 * `ip netns exec`. Everything created is recorded and removed by `cleanup()`.
 */
import { runCommand, type CommandOptions, type CommandResult } from "../../agent/backends/common/command.js";
import { randomBytes } from "node:crypto";

/** True if an address (with or without /prefix) lies in 198.18.0.0/15. */
export function inTestRange(addr: string): boolean {
  const m = /^198\.(18|19)\.(\d{1,3})\.(\d{1,3})(\/\d{1,2})?$/.exec(addr);
  if (!m) return false;
  const prefix = m[4] ? Number(m[4].slice(1)) : 32;
  return Number(m[2]) <= 255 && Number(m[3]) <= 255 && prefix >= 15;
}

export function assertTestRange(addr: string): void {
  if (!inTestRange(addr)) throw new Error(`test address ${addr} is outside 198.18.0.0/15`);
}

export async function sh(argv: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return runCommand(argv, { timeoutMs: 20_000, ...opts });
}

/** A short unique suffix for names (interface names are limited to 15 characters). */
export function uniq(): string {
  return randomBytes(3).toString("hex");
}

/** Lab namespaces are named nm<owner pid>-<suffix>-<name>, so a later run can tell whose they are. */
const LAB_NS = /^nm(\d+)-[0-9a-f]{6}-/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

let swept: Promise<void> | null = null;

/**
 * Deletes lab namespaces left by a test process that died before its
 * cleanup (SIGKILL, a crashed runner): their owner PID is gone and no
 * process runs inside them. Runs once per process.
 */
function sweepOrphans(): Promise<void> {
  swept ??= (async () => {
    const list = await sh(["ip", "netns", "list"], { check: false });
    for (const line of list.stdout.split("\n")) {
      const ns = line.split(" ")[0] ?? "";
      const m = LAB_NS.exec(ns);
      if (!m || alive(Number(m[1]))) continue;
      const pids = await sh(["ip", "netns", "pids", ns], { check: false });
      if (pids.stdout.trim() === "") await sh(["ip", "netns", "del", ns], { check: false });
    }
  })();
  return swept;
}

export class NetnsLab {
  readonly namespaces: string[] = [];
  private readonly links: { ns: string | null; name: string }[] = [];

  constructor(readonly prefix = `nm${process.pid}-${uniq()}`) {}

  async addNs(name: string): Promise<string> {
    await sweepOrphans();
    const ns = `${this.prefix}-${name}`;
    await sh(["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    // No IPv6: its neighbour discovery chatter would add fdb entries and packets no test asked for.
    await this.exec(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], { check: false });
    return ns;
  }

  /** A veth pair with one end in each namespace; both ends up. */
  async veth(nsA: string, nameA: string, nsB: string, nameB: string): Promise<void> {
    await sh(["ip", "link", "add", nameA, "netns", nsA, "type", "veth", "peer", "name", nameB, "netns", nsB]);
    this.links.push({ ns: nsA, name: nameA });
    await sh(["ip", "-n", nsA, "link", "set", nameA, "up"]);
    await sh(["ip", "-n", nsB, "link", "set", nameB, "up"]);
  }

  async addr(ns: string, dev: string, cidr: string): Promise<void> {
    assertTestRange(cidr);
    await sh(["ip", "-n", ns, "addr", "add", cidr, "dev", dev]);
  }

  /** Moves an interface to another namespace (and brings it up there). */
  async move(fromNs: string, dev: string, toNs: string): Promise<void> {
    await sh(["ip", "-n", fromNs, "link", "set", dev, "netns", toNs]);
    await sh(["ip", "-n", toNs, "link", "set", dev, "up"]);
    const l = this.links.find((x) => x.name === dev);
    if (l) l.ns = toNs;
  }

  /**
   * Turns TX checksum offload off on a device (ethtool -K dev tx off, through
   * the SIOCETHTOOL ioctl so ethtool need not be installed). Needed for veths
   * on OVS' userspace datapath: AF_PACKET hands it packets with partial
   * checksums, which the receiver would drop.
   */
  async txCsumOff(ns: string, dev: string): Promise<void> {
    const py = [
      "import fcntl, socket, struct, sys",
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
      "data = struct.pack('II', 0x17, 0)",
      "ifr = struct.pack('16sP', sys.argv[1].encode(), 0)",
      "import ctypes",
      "buf = ctypes.create_string_buffer(data)",
      "ifr = struct.pack('16sP', sys.argv[1].encode(), ctypes.addressof(buf))",
      "fcntl.ioctl(s.fileno(), 0x8946, ifr)",
    ].join("\n");
    await this.exec(ns, ["python3", "-c", py, dev]);
  }

  exec(ns: string, argv: string[], opts: CommandOptions = {}): Promise<CommandResult> {
    return sh(["ip", "netns", "exec", ns, ...argv], opts);
  }

  /** Deletes everything this lab created (veths die with their namespaces). */
  async cleanup(): Promise<void> {
    for (const l of this.links.splice(0)) {
      await sh(l.ns ? ["ip", "-n", l.ns, "link", "del", l.name] : ["ip", "link", "del", l.name], { check: false });
    }
    for (const ns of this.namespaces.splice(0).reverse()) await sh(["ip", "netns", "del", ns], { check: false });
  }
}

/** Why dataplane tests cannot run here, or null if they can (root, ip netns, OVS, conntrack, python3). */
export async function dataplaneSkipReason(needs: ("ovs" | "conntrack")[] = ["ovs", "conntrack"]): Promise<string | null> {
  if (process.getuid?.() !== 0) return "needs root (CAP_NET_ADMIN) for network namespaces";
  const bins: string[] = ["ip", "python3"];
  if (needs.includes("ovs")) bins.push("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovsdb-tool");
  if (needs.includes("conntrack")) bins.push("conntrack");
  for (const b of bins) {
    const r = await sh(["sh", "-c", `command -v ${b}`], { check: false });
    if (r.code !== 0) return `${b} is not installed (apt-get install openvswitch-switch conntrack iproute2 python3)`;
  }
  const ns = `nmprobe${uniq()}`;
  const r = await sh(["ip", "netns", "add", ns], { check: false });
  if (r.code !== 0) return `cannot create network namespaces: ${r.stderr.trim()}`;
  const ct = needs.includes("conntrack") ? await sh(["ip", "netns", "exec", ns, "conntrack", "-L"], { check: false }) : null;
  await sh(["ip", "netns", "del", ns], { check: false });
  if (ct && ct.code !== 0) return `kernel conntrack unavailable: ${ct.stderr.trim().slice(0, 200)}`;
  return null;
}
