/**
 * The docker-compose topology on network namespaces, for tests on machines
 * without a container engine: one namespace per service, each with its own
 * address on a shared bridge that lives in a "switch" namespace. Nothing is
 * added to the root namespace: no interface, no address, no route. The test
 * process reaches a service through `expose()`, a forwarder that runs in one
 * of the namespaces and listens on a Unix socket, with a loopback listener in
 * the test process in front of it. Every namespace belongs to this topology
 * alone, so each run uses the compose file's own subnet (198.18.0.0/24).
 *
 * Processes run with `ip netns exec <ns> ...` (which execs, so the PID is the
 * program's own) and are stopped by PID. `close()` stops the processes, closes
 * the listeners, removes the namespaces (their veths and the bridge go with
 * them) and the temp dir; an exit hook does the same if the test process dies
 * first. Namespaces are created through NetnsLab (netns.ts), whose prefix
 * makes their names unique per run.
 */
import { AGENT_NODE_FLAGS } from "../../cli/node-flags.js";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Proc } from "./cluster.js";
import { NetnsLab, sh, uniq } from "./netns.js";
import { findNatsServer } from "./nats-server.js";
import { waitFor } from "./wait.js";

const MAIN = fileURLToPath(new URL("../../cli/main.js", import.meta.url));
const FORWARDER = fileURLToPath(new URL("./ns-forwarder.js", import.meta.url));

/** The device every service namespace uses on the bridge. */
const DEV = "eth0";

/** One service's namespace on the bridge. */
export interface Node {
  readonly name: string;
  /** Namespace name (unique per run). */
  readonly ns: string;
  /** Address on the bridge, without prefix. */
  readonly ip: string;
}

export interface NodeSpec {
  /** Service name (at most 12 of [a-z0-9-]: it names the switch-side veth). */
  name: string;
  /** Last octet of the node's address in the subnet (2-254). */
  hostOctet: number;
}

export interface TopologyOptions {
  nodes: NodeSpec[];
  /** First three octets of the /24, inside 198.18.0.0/15. Default: "198.18.0". */
  subnet?: string;
}

/** Why namespace tests cannot run here, or null if they can. */
export async function netnsSkipReason(): Promise<string | null> {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "needs root (CAP_NET_ADMIN) for network namespaces";
  const ns = `nmprobe${uniq()}`;
  const r = await sh(["ip", "netns", "add", ns], { check: false }).catch((err: Error) => ({ code: 1, stderr: err.message }));
  if (r.code !== 0) return `cannot create network namespaces (is iproute2 installed?): ${r.stderr.trim().slice(0, 200)}`;
  await sh(["ip", "netns", "del", ns], { check: false });
  return null;
}

const live = new Set<Topology>();
let hookInstalled = false;

export class Topology {
  readonly lab = new NetnsLab();
  readonly dir = mkdtempSync(join(tmpdir(), "netmig-topo-"));
  readonly nodes = new Map<string, Node>();
  readonly procs: Proc[] = [];
  private sw = "";
  private readonly listeners: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private socketCount = 0;
  private closing: Promise<void> | null = null;

  private constructor() {}

  /** Builds the switch and one namespace per node, and checks that every node reaches every other. */
  static async create(o: TopologyOptions): Promise<Topology> {
    const t = new Topology();
    live.add(t);
    installExitHook();
    try {
      await t.build(o);
    } catch (err) {
      await t.close();
      throw err;
    }
    return t;
  }

  private async build(o: TopologyOptions): Promise<void> {
    const subnet = o.subnet ?? "198.18.0";
    this.sw = await this.lab.addNs("sw");
    await sh(["ip", "-n", this.sw, "link", "add", "br0", "type", "bridge"]);
    await sh(["ip", "-n", this.sw, "link", "set", "br0", "up"]);
    for (const { name, hostOctet } of o.nodes) {
      if (!/^[a-z0-9-]{1,12}$/.test(name)) throw new Error(`node name ${JSON.stringify(name)}: use 1-12 of [a-z0-9-]`);
      if (!Number.isInteger(hostOctet) || hostOctet < 2 || hostOctet > 254) throw new Error(`node ${name}: host octet ${hostOctet} is not in 2-254`);
      const ns = await this.lab.addNs(name);
      const ip = `${subnet}.${hostOctet}`;
      await this.lab.veth(ns, DEV, this.sw, `v-${name}`);
      await sh(["ip", "-n", this.sw, "link", "set", `v-${name}`, "master", "br0"]);
      await this.lab.addr(ns, DEV, `${ip}/24`);
      this.nodes.set(name, { name, ns, ip });
    }
    // Every node reachable (from the first) before anyone uses the network.
    const [first, ...rest] = [...this.nodes.values()];
    for (const n of rest) {
      await waitFor(async () => (await sh(["ip", "netns", "exec", first!.ns, "ping", "-c", "1", "-W", "1", n.ip], { check: false })).code === 0,
        { what: `ping ${first!.name} → ${n.name} (${n.ip})`, timeoutMs: 10_000, intervalMs: 100 });
    }
  }

  node(name: string): Node {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name} in this topology`);
    return n;
  }

  /** Runs `argv` inside the node's namespace. */
  spawn(node: string, label: string, argv: string[], env: Record<string, string> = {}): Proc {
    const child = spawn("ip", ["netns", "exec", this.node(node).ns, ...argv], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const p = new Proc(label, child);
    this.procs.push(p);
    return p;
  }

  /** Runs `netmig <args>` (the built CLI) inside the node's namespace. */
  netmig(node: string, label: string, args: string[], env: Record<string, string> = {}): Proc {
    return this.spawn(node, label, [process.execPath, ...(args[0] === "agent" ? AGENT_NODE_FLAGS : []), MAIN, ...args], { NETMIG_LOG_LEVEL: process.env.NETMIG_LOG_LEVEL ?? "info", ...env });
  }

  /**
   * Makes each `node:port` (as seen from inside `via`'s namespace) reachable
   * from the test process, through one forwarder process in `via`; resolves
   * with the local "127.0.0.1:<port>" addresses, in order.
   */
  async expose(via: string, targets: { node: string; port: number }[]): Promise<string[]> {
    const socks = targets.map(() => join(this.dir, `fwd-${this.socketCount++}.sock`));
    const mappings = targets.map((t, i) => `${socks[i]}=${this.node(t.node).ip}:${t.port}`);
    const fwd = this.spawn(via, `forwarder in ${via} (${targets.map((t) => `${t.node}:${t.port}`).join(", ")})`, [process.execPath, FORWARDER, ...mappings]);
    await waitFor(() => {
      if (!fwd.running) throw new Error(`forwarder exited:\n${fwd.log()}`);
      return fwd.log().includes("ready");
    }, { what: `forwarder in ${via}`, timeoutMs: 10_000, intervalMs: 20 });
    const addrs: string[] = [];
    for (const sock of socks) addrs.push(await this.listen(sock));
    return addrs;
  }

  /** A loopback listener in the test process that pipes each connection to a forwarder's socket. */
  private async listen(sock: string): Promise<string> {
    const server = createServer((a) => {
      const b = connect(sock);
      this.sockets.add(a).add(b);
      a.pipe(b);
      b.pipe(a);
      const end = () => {
        a.destroy();
        b.destroy();
        this.sockets.delete(a);
        this.sockets.delete(b);
      };
      a.on("error", end).on("close", end);
      b.on("error", end).on("close", end);
    });
    this.listeners.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const addr = server.address();
    if (!addr || typeof addr === "string") throw new Error("loopback listener has no port");
    return `127.0.0.1:${addr.port}`;
  }

  /** Cuts the node off the network: its veth goes down inside its namespace. */
  async linkDown(node: string): Promise<void> {
    await sh(["ip", "-n", this.node(node).ns, "link", "set", DEV, "down"]);
  }

  async linkUp(node: string): Promise<void> {
    await sh(["ip", "-n", this.node(node).ns, "link", "set", DEV, "up"]);
  }

  /** A fresh directory under the topology's temp dir. */
  subdir(name: string): string {
    const d = join(this.dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** The recent output of every process, for a failing test's message. */
  logs(chars = 3000): string {
    return this.procs.map((p) => `--- ${p.name} (pid ${p.pid}${p.running ? "" : ", exited"})\n${p.log().slice(-chars)}`).join("\n");
  }

  /** Stops every process by PID, then removes the listeners, the network and the temp dir. Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const s of this.sockets) s.destroy();
      await Promise.all(this.listeners.map((l) => new Promise((r) => l.close(r))));
      await Promise.all(this.procs.map((p) => p.stop(3000)));
      await this.lab.cleanup();
      rmSync(this.dir, { recursive: true, force: true });
      live.delete(this);
    })());
  }

  /** For the exit hook: synchronous and best effort. */
  killSync(): void {
    for (const p of this.procs) {
      try {
        if (p.running) process.kill(p.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const ns of this.lab.namespaces) spawnSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 5000 });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  const killAll = () => {
    for (const t of live) t.killSync();
    live.clear();
  };
  process.on("exit", killAll);
  // The test runner stops a file that overruns with a signal: clean up then too.
  for (const [sig, n] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(128 + n);
    });
  }
}

// ------------------------------------------------------------------ NATS

export interface NatsClusterHandle {
  /** Client URLs, comma-joined the way netmig's --nats takes them. */
  readonly urls: string;
  readonly procs: Proc[];
}

/**
 * A nats-server with JetStream in each of `nodes` (port 4222, routes on
 * 6222, monitoring on 8222), clustered when there are several, configured as
 * the compose file's `nats-*` services are. Resolves once every server serves
 * clients and JetStream has a meta leader with every peer current, so R3
 * streams can be created. `via` is the node from which the test process
 * reads the monitoring endpoints (through `Topology.expose`).
 */
export async function startNatsCluster(t: Topology, nodes: string[], o: { via: string; timeoutMs?: number }): Promise<NatsClusterHandle> {
  const bin = findNatsServer();
  if (!bin) throw new Error("nats-server is not installed (apt-get install nats-server)");
  const cluster = "netmig";
  const routes = nodes.map((n) => JSON.stringify(`nats-route://${t.node(n).ip}:6222`)).join(", ");
  const procs = nodes.map((n) => {
    const { ip } = t.node(n);
    const dir = t.subdir(n);
    const conf = join(dir, "nats-server.conf");
    writeFileSync(conf, [
      `server_name: ${JSON.stringify(n)}`,
      `listen: "${ip}:4222"`,
      `http: "${ip}:8222"`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, "jetstream"))} }`,
      ...(nodes.length > 1 ? [`cluster { name: ${JSON.stringify(cluster)}, listen: "${ip}:6222", routes: [${routes}] }`] : []),
      "",
    ].join("\n"));
    return t.spawn(n, n, [bin, "-c", conf]);
  });
  const monitors = await t.expose(o.via, nodes.map((node) => ({ node, port: 8222 })));
  await waitFor(async () => {
    for (const p of procs) if (!p.running) throw new Error(`${p.name} exited:\n${p.log()}`);
    const all = await Promise.all(monitors.map((m) => jetstreamStatus(m)));
    if (all.some((j) => j === null)) return false;
    if (nodes.length === 1) return true;
    // Every server knows the same meta leader and the whole cluster; the leader sees every peer current.
    const leader = all[0]!.meta_cluster?.leader;
    if (!leader || !all.every((j) => j!.meta_cluster?.leader === leader && j!.meta_cluster.cluster_size === nodes.length)) return false;
    const replicas = all[nodes.indexOf(leader)]?.meta_cluster?.replicas ?? [];
    return replicas.length === nodes.length - 1 && replicas.every((r) => r.current);
  }, { what: `JetStream ready on ${nodes.join(", ")}`, timeoutMs: o.timeoutMs ?? 30_000, intervalMs: 200 });
  return { urls: nodes.map((n) => `nats://${t.node(n).ip}:4222`).join(","), procs };
}

interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number; replicas?: { name: string; current: boolean }[] };
}

async function jetstreamStatus(address: string): Promise<Jsz | null> {
  try {
    const res = await fetch(`http://${address}/jsz`, { signal: AbortSignal.timeout(1000) });
    return res.ok ? ((await res.json()) as Jsz) : null;
  } catch {
    return null;
  }
}
