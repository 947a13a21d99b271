/**
 * The optional lifecycle watcher: follows libvirt's domain lifecycle events
 * on a hypervisor and calls Switchover at the moment the source pauses the
 * guest for the last time (`Suspended Migrated`), which no hook reports.
 * Without it, the switchover runs later, at the source's `stopped end` hook
 * (CompleteMigration does it first), after the destination has resumed.
 *
 * It runs `virsh event --loop --event lifecycle` (a long-lived process, not a
 * hook, so calling libvirt is fine here), restarts it with backoff when it
 * exits (libvirtd restarted), and names each domain by its UUID through
 * `virsh domuuid <name>` (cached, refreshed when a domain is defined again).
 * Switchover goes only to a migration whose source is this host.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { loadHookConfig, type HookConfig } from "./config.js";
import { HookLog } from "./log.js";
import type { PhaseCallError } from "./phase-client.js";

export interface LifecycleEvent {
  domain: string;
  /** e.g. "Suspended", "Resumed", "Stopped", "Started", "Defined". */
  event: string;
  /** e.g. "Migrated", "Paused", "Booted". */
  detail: string;
}

const MARK = "event 'lifecycle' for domain ";

/**
 * Reads one line of `virsh event --loop --event lifecycle` output:
 * `event 'lifecycle' for domain 'vm1': Suspended Migrated` (older virsh
 * prints the name unquoted; with --timestamp a time stamp comes first).
 */
export function parseLifecycleLine(line: string): LifecycleEvent | null {
  const at = line.indexOf(MARK);
  if (at === -1) return null;
  const rest = line.slice(at + MARK.length).trimEnd();
  const m = /^'(.*)': (\S+) (\S+)$/.exec(rest) ?? /^(.*): (\S+) (\S+)$/.exec(rest);
  if (!m || !m[1]) return null;
  return { domain: m[1], event: m[2]!, detail: m[3]! };
}

export interface LifecycleWatchOptions {
  config: HookConfig;
  log: HookLog;
  /** Resolves a domain name to its UUID. Default: `virsh domuuid <name>`, bounded by timeout_ms. */
  resolveUuid?: (name: string) => Promise<string | null>;
  /** First delay before restarting virsh, ms (doubles up to 30000). Default 1000. */
  restartDelayMs?: number;
  /** Called after each event has been handled (tests). */
  onHandled?: (e: LifecycleEvent, outcome: string) => void;
}

/**
 * States: `idle` (constructed) → `running` (virsh up, or waiting to restart
 * it) → `closed` (virsh stopped, handlers finished). close() is idempotent.
 */
export class LifecycleWatch {
  private state: "idle" | "running" | "closed" = "idle";
  private child: ChildProcess | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private delayMs: number;
  private readonly uuids = new Map<string, string>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly o: LifecycleWatchOptions) {
    this.delayMs = o.restartDelayMs ?? 1000;
  }

  start(): void {
    if (this.state !== "idle") return;
    this.state = "running";
    this.spawnVirsh();
  }

  private spawnVirsh(): void {
    if (this.state !== "running") return;
    const { config, log } = this.o;
    const startedAt = Date.now();
    const child = spawn(config.virsh, ["event", "--loop", "--event", "lifecycle"], { stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    log.info("following libvirt lifecycle events", { virsh: config.virsh, pid: child.pid ?? null });
    createInterface({ input: child.stdout! }).on("line", (line) => this.onLine(line));
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const ended = (why: string) => {
      if (this.child !== child) return;
      this.child = null;
      if (this.state !== "running") return;
      if (Date.now() - startedAt > 60_000) this.delayMs = this.o.restartDelayMs ?? 1000;
      const wait = this.delayMs / 2 + Math.random() * this.delayMs;
      log.error(`virsh event ended (${why}); restarting in ${Math.round(wait)} ms`, { stderr: stderr.trim() || undefined });
      this.delayMs = Math.min(this.delayMs * 2, 30_000);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        this.spawnVirsh();
      }, wait);
    };
    child.once("error", (err) => ended((err as NodeJS.ErrnoException).code === "ENOENT" ? `${config.virsh} not found: install the libvirt client or set virsh in the config` : err.message));
    child.once("exit", (code, signal) => ended(signal ? `signal ${signal}` : `exit code ${code}`));
  }

  private onLine(line: string): void {
    const e = parseLifecycleLine(line);
    if (!e) return;
    if (e.event === "Undefined" || e.event === "Defined") this.uuids.delete(e.domain);
    const p = this.handle(e).then(
      (outcome) => this.o.onHandled?.(e, outcome),
      (err) => {
        this.o.log.error(`handling ${e.event} ${e.detail} of ${e.domain} failed: ${(err as Error).message}`);
        this.o.onHandled?.(e, "error");
      },
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async uuidOf(name: string): Promise<string | null> {
    const cached = this.uuids.get(name);
    if (cached) return cached;
    const uuid = await (this.o.resolveUuid ?? ((n) => virshDomUuid(this.o.config, n)))(name);
    if (uuid) this.uuids.set(name, uuid);
    return uuid;
  }

  private async handle(e: LifecycleEvent): Promise<string> {
    const { config } = this.o;
    if (!(e.event === "Suspended" && e.detail === "Migrated")) {
      // Warm the name → UUID cache so the switchover does not wait for virsh.
      if (e.event !== "Undefined" && e.event !== "Stopped") await this.uuidOf(e.domain).catch(() => null);
      return "ignored";
    }
    let log = this.o.log.with({ vm: e.domain, event: `${e.event} ${e.detail}` });
    const vmId = await this.uuidOf(e.domain);
    if (!vmId) {
      log.warn("cannot find the domain's UUID; no switchover");
      return "no-uuid";
    }
    log = log.with({ vm_id: vmId });
    const { PhaseClient } = await import("./phase-client.js");
    const client = new PhaseClient({ config, deadlineAt: Date.now() + config.timeoutMs });
    try {
      const m = await client.activeMigration(vmId);
      if (!m || m.src_host !== config.hostId) {
        log.debug("no migration of this VM from this host; nothing to switch over");
        return "no-migration";
      }
      log = log.with({ migration_id: m.migration_id, dst_host: m.dst_host });
      log.info("the source paused the guest for the last time: switching over");
      const r = await client.switchover(m.migration_id, `libvirt lifecycle ${e.event} ${e.detail} on ${config.hostId}`);
      (r.phase === "ABORTED" ? log.error.bind(log) : log.info.bind(log))(`switchover: migration ${r.phase}`, { phase: r.phase, ...(r.error ? { error: r.error.message } : {}) });
      return r.phase;
    } catch (err) {
      const ce = err as PhaseCallError;
      log.error(`switchover failed: ${ce.message}; CompleteMigration at the source's stopped hook will run it`, { code: ce.netmigCode ?? ce.code });
      return "error";
    } finally {
      client.close();
    }
  }

  /** Stops virsh and waits for events being handled. Idempotent. */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    await Promise.allSettled([...this.inFlight]);
  }
}

/** `virsh domuuid <name>`, bounded by the config's timeout. */
export function virshDomUuid(config: HookConfig, name: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(config.virsh, ["domuuid", name], { timeout: config.timeoutMs }, (err, stdout) => {
      const uuid = String(stdout ?? "").trim();
      resolve(err || !uuid ? null : uuid);
    });
  });
}

/**
 * `lifecycle-watch` as a process: runs until SIGINT/SIGTERM. Config as for
 * the hook (/etc/netmig/hook.conf, NETMIG_* variables).
 */
export async function lifecycleWatchMain(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const config = loadHookConfig(env);
  const log = new HookLog(config.logFile, config.logLevel, { host: config.hostId, component: "lifecycle-watch" });
  for (const p of config.problems) log.warn(`configuration problem: ${p}`);
  const watch = new LifecycleWatch({ config, log });
  watch.start();
  const { onShutdown } = await import("../signals.js");
  onShutdown(() => watch.close());
}
