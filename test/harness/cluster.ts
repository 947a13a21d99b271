/**
 * A netmig cluster for tests: a real nats-server (JetStream), a coordinator
 * and agents as real `netmig` processes (so a test can SIGKILL and restart
 * them), a gRPC client and a NATS connection of the test's own.
 * Everything is stopped by PID in close().
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "nats";
import { AGENT_NODE_FLAGS } from "../../cli/node-flags.js";
import { createClient, unaryCall } from "../../cli/client.js";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import type { EvacuationEvent__Output } from "../../proto/gen/netmig/v1/EvacuationEvent.js";
import type { InventoryReply } from "../../protocol/agent-api.js";
import { call, type CallHeader } from "../../protocol/rpc.js";
import { toDocument } from "../../protocol/state/document.js";
import type { VmState } from "../../protocol/state/model.js";
import { subjects } from "../../protocol/subjects.js";
import { encodeBlock } from "../../protocol/codec/columnar.js";
import type { TableName } from "../../protocol/state/tables.js";
import { freePort } from "./free-port.js";
import { startNatsServer, type NatsServerHandle } from "./nats-server.js";
import { waitFor } from "./wait.js";

const MAIN = fileURLToPath(new URL("../../cli/main.js", import.meta.url));

export class Proc {
  private out = "";
  readonly exited: Promise<number | null>;
  constructor(readonly name: string, private readonly child: ChildProcess) {
    const keep = (d: Buffer) => {
      this.out = (this.out + d.toString()).slice(-65536);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }
  get pid(): number {
    return this.child.pid!;
  }
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  log(): string {
    return this.out;
  }
  /** SIGKILL, and wait for the exit. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill("SIGKILL");
    await this.exited;
  }
  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

export interface ClusterOptions {
  agents?: string[];
  /** Extra environment for the coordinator (fault injection). */
  coordinatorEnv?: Record<string, string>;
  /** Churn on every agent: entries/s per VM, or "1%" of each VM's conntrack per second. Default none. */
  churn?: number | string;
  /** Extra `netmig agent` arguments per host (e.g. `--backend ovs ...`). Default none. */
  agentArgs?: (hostId: string) => string[];
  /** How long each agent may take to answer its first inventory. Default 15000 ms. */
  agentStartMs?: number;
}

export class Cluster {
  readonly agents = new Map<string, Proc>();
  coordinator: Proc | null = null;
  client!: MigrationServiceClient;
  nc!: NatsConnection;
  nats!: NatsServerHandle;
  grpcAddress = "";
  readonly dir = mkdtempSync(join(tmpdir(), "netmig-test-"));

  private constructor(private readonly opts: ClusterOptions) {}

  static async start(opts: ClusterOptions = {}): Promise<Cluster> {
    const c = new Cluster(opts);
    try {
      c.nats = await startNatsServer({ jetstream: true });
      c.nc = await connect({ servers: c.nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
      c.grpcAddress = `127.0.0.1:${await freePort()}`;
      await c.startCoordinator(opts.coordinatorEnv);
      c.client = createClient({ address: c.grpcAddress });
      await Promise.all((opts.agents ?? ["host-a", "host-b"]).map((h) => c.startAgent(h)));
      await c.waitForHosts(opts.agents ?? ["host-a", "host-b"]);
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private spawn(name: string, args: string[], env: Record<string, string> = {}): Proc {
    // Agents run with the Node flags netmig ships them with (cli/node-flags.ts).
    const child = spawn(process.execPath, [...(args[0] === "agent" ? AGENT_NODE_FLAGS : []), MAIN, ...args], { env: { ...process.env, NETMIG_LOG_LEVEL: process.env.NETMIG_LOG_LEVEL ?? "info", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    return new Proc(name, child);
  }

  /** `env`: extra environment (fault injection). */
  async startAgent(hostId: string, churn: number | string = this.opts.churn ?? 0, env: Record<string, string> = {}): Promise<Proc> {
    const p = this.spawn(`agent ${hostId}`, ["agent", "--host-id", hostId, "--nats", this.nats.url, "--state-dir", join(this.dir, hostId), "--heartbeat-ms", "200", ...(churn ? ["--churn", String(churn)] : []), ...(this.opts.agentArgs?.(hostId) ?? [])], env);
    this.agents.set(hostId, p);
    await waitFor(async () => {
      if (!p.running) throw new Error(`agent ${hostId} exited:\n${p.log()}`);
      return this.inventory(hostId).then(() => true, () => false);
    }, { what: `agent ${hostId} to answer`, timeoutMs: this.opts.agentStartMs ?? 15_000 });
    return p;
  }

  async startCoordinator(env: Record<string, string> = {}): Promise<Proc> {
    const p = this.spawn("coordinator", ["coordinator", "--id", "coord-test", "--nats", this.nats.url, "--grpc", this.grpcAddress], env);
    this.coordinator = p;
    const probe = createClient({ address: this.grpcAddress });
    try {
      await waitFor(async () => {
        if (!p.running) throw new Error(`coordinator exited:\n${p.log()}`);
        return unaryCall(probe, "ListHosts", {}, 1000).then(() => true, () => false);
      }, { what: "coordinator gRPC", timeoutMs: 15_000 });
    } finally {
      probe.close();
    }
    return p;
  }

  async waitForHosts(ids: string[]): Promise<void> {
    await waitFor(async () => {
      const res = await unaryCall<object, { hosts: { host_id: string; alive: boolean }[] }>(this.client, "ListHosts", {});
      return ids.every((id) => res.hosts.some((h) => h.host_id === id && h.alive));
    }, { what: `hosts ${ids.join(", ")} alive`, timeoutMs: 15_000 });
  }

  /** A command straight to an agent over NATS. */
  agentCall<R>(hostId: string, op: string, header: CallHeader, body: unknown, timeoutMs = 5000): Promise<R> {
    return call<R>(this.nc, subjects.agentOp(hostId, op as never), op, header, body, timeoutMs);
  }

  inventory(hostId: string): Promise<InventoryReply> {
    return this.agentCall<InventoryReply>(hostId, "inventory", { migrationId: "", vmId: "", epoch: 0 }, {}, 2000);
  }

  /** A config/live write to a VM on a host (the agent's `write` command). */
  write(hostId: string, vmId: string, change: { upserts?: Partial<Record<TableName, unknown[]>>; deletes?: Partial<Record<TableName, string[]>> }): Promise<{ gen: number; digest: string }> {
    const upserts = Object.entries(change.upserts ?? {}).map(([t, rows]) => encodeBlock(t as TableName, rows as unknown[]));
    return this.agentCall(hostId, "write", { migrationId: "", vmId, epoch: 0 }, { upserts, deletes: change.deletes ?? {} });
  }

  /**
   * Creates a VM straight on an agent with plain writes (no coordinator, no
   * JSON document): fast enough for million-row VMs. The coordinator adopts
   * the VM from the agent's heartbeat on its first migration.
   */
  async seed(hostId: string, state: VmState, rowsPerWrite = 5000): Promise<void> {
    let create = true;
    for (const [table, rows] of Object.entries(state.tables) as [TableName, unknown[]][]) {
      const step = table === "conntrack" || table === "fdb" || table === "neighbours" ? rowsPerWrite : Math.ceil(rowsPerWrite / 5);
      for (let i = 0; i < rows.length || (create && i === 0); i += step) {
        const upserts = [encodeBlock(table, rows.slice(i, i + step))];
        await this.agentCall(hostId, "write", { migrationId: "", vmId: state.vmId, epoch: 0 }, { upserts, deletes: {}, create }, 30_000);
        create = false;
      }
    }
  }

  /**
   * Restarts a process's peak RSS count (VmHWM) from its RSS now (Linux
   * /proc/<pid>/clear_refs); false where that is not allowed.
   */
  static resetPeakRss(pid: number): boolean {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, "5");
      return true;
    } catch {
      return false;
    }
  }

  /** A process's resident memory now and at its peak, bytes (from /proc). */
  static memory(pid: number): { rssBytes: number; peakRssBytes: number } {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
    return { rssBytes: kb("VmRSS"), peakRssBytes: kb("VmHWM") };
  }

  async vmStatus(hostId: string, vmId: string): Promise<string | null> {
    const inv = await this.inventory(hostId);
    return inv.vms.find((v) => v.vmId === vmId)?.status ?? null;
  }

  async importVm(hostId: string, state: VmState): Promise<void> {
    await unaryCall(this.client, "ImportVmState", { host_id: hostId, document: Buffer.from(JSON.stringify(toDocument(state))) }, 60_000);
  }

  async exportVm(vmId: string): Promise<{ host_id: string; doc: { digest: string; tables: Record<string, Record<string, unknown>[]> } }> {
    const res = await unaryCall<object, { host_id: string; document: Buffer }>(this.client, "ExportVmState", { vm_id: vmId }, 60_000);
    return { host_id: res.host_id, doc: JSON.parse(res.document.toString("utf8")) };
  }

  migrate(vmId: string, dst: string, options: Record<string, unknown> = {}): Promise<Migration__Output> {
    return unaryCall(this.client, "StartMigration", { vm_id: vmId, dst_host: dst, options, wait: true }, 120_000);
  }

  async waitForPhase(migrationId: string, phases: string[], timeoutMs = 30_000): Promise<Migration__Output> {
    return waitFor(async () => {
      const m = await unaryCall<object, Migration__Output>(this.client, "GetMigration", { migration_id: migrationId }, 2000).catch(() => null);
      return m && phases.includes(m.phase) ? m : null;
    }, { what: `migration ${migrationId} to reach ${phases.join("/")}`, timeoutMs });
  }

  /** An EvacuateHost call: every event it streamed, in order (`onEvent` sees each as it comes); rejects with the stream's error. */
  evacuate(req: object, onEvent?: (e: EvacuationEvent__Output) => void): Promise<EvacuationEvent__Output[]> {
    return new Promise((resolve, reject) => {
      const events: EvacuationEvent__Output[] = [];
      const stream = this.client.EvacuateHost(req);
      stream.on("data", (e: EvacuationEvent__Output) => {
        events.push(e);
        onEvent?.(e);
      });
      stream.on("error", reject);
      stream.on("end", () => resolve(events));
    });
  }

  /** Logs of every process, for a failing test's message. */
  logs(): string {
    return [this.coordinator, ...this.agents.values()].filter((p): p is Proc => !!p).map((p) => `--- ${p.name}\n${p.log().slice(-4000)}`).join("\n");
  }

  async close(): Promise<void> {
    this.client?.close();
    await Promise.all([this.coordinator, ...this.agents.values()].map((p) => p?.stop(3000)));
    await this.nc?.close().catch(() => undefined);
    await this.nats?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
