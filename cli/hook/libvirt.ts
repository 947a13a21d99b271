/**
 * The libvirt qemu hook: maps libvirt's migration hook calls to netmig's
 * phase calls.
 *
 *   destination  migrate begin -        → PrepareMigration{vm_id: <uuid>, dst_host: <this host>}
 *   source       stopped end -          → CompleteMigration (runs Switchover first if needed)
 *   source       release end migrated   → CompleteMigration (idempotent; "-" before libvirt 10.5)
 *   destination  release end <any>      → AbortMigration (`failed` is the normal case)
 *   anything else                       → exit 0, no call
 *
 * The VM is named by its domain UUID (libvirt's `vm-id` external id on the
 * OVS ports). For `migrate begin` the hook is a filter: it prints the domain
 * XML exactly as received and exits 0, or — when netmig cannot prepare and
 * the policy is fail-closed — prints nothing and exits 1 so libvirt cancels
 * the migration. Exit codes of the other operations are ignored by libvirt;
 * the hook exits 0 and logs. The hook never calls libvirt, and finishes
 * within the configured budget (timeout_ms, default 5000).
 *
 * Entry points: {@link libvirtHookMain} (reads stdin, writes stdout, returns
 * the exit code) and {@link runLibvirtHook} (the same without the process).
 */
import { HookPolicy, CompleteOn, loadHookConfig, type HookConfig } from "./config.js";
import { ovsInterfaces, parseDomainXml, type DomainInfo } from "./domain-xml.js";
import { actionFor, parseInvocation, releaseMeansMigrated, type HookAction, type HookInvocation } from "./libvirt-events.js";
import { HookLog } from "./log.js";
import type { PhaseCallError, PhaseClient } from "./phase-client.js";

export interface HookResult {
  /** The process's exit code: non-zero only for a `migrate begin` that must be cancelled. */
  exitCode: number;
  /** What to print on stdout: for `migrate begin`, the domain XML byte for byte (or nothing); otherwise nothing. */
  stdout: Buffer;
}

export interface HookRunOptions {
  /** When the hook started (Date.now() ms); the budget counts from here. Default: now. */
  startedAtMs?: number;
}

const EMPTY: Buffer = Buffer.alloc(0);
const OK: HookResult = { exitCode: 0, stdout: EMPTY };
const VM_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Extra time the watchdog gives the calls' own deadlines, ms. */
const WATCHDOG_GRACE_MS = 100;

interface Ctx {
  inv: HookInvocation;
  config: HookConfig;
  log: HookLog;
  input: Buffer;
  domain: DomainInfo | null;
  xmlProblem: string | null;
  deadlineAt: number;
}

/**
 * Runs the hook for libvirt's argv (`<vm-name> <operation> <sub-operation> <extra>`)
 * and the domain XML libvirt wrote on stdin. Never throws.
 */
export async function runLibvirtHook(argv: readonly string[], stdin: Buffer | string, env: NodeJS.ProcessEnv, opts: HookRunOptions = {}): Promise<HookResult> {
  const startedAt = opts.startedAtMs ?? Date.now();
  const inv = parseInvocation(argv);
  const action = actionFor(inv);
  const config = loadHookConfig(env);
  let log = new HookLog(config.logFile, config.logLevel, { vm: inv.vmName, op: [inv.operation, inv.subOperation, inv.extra].join(" ").trim(), host: config.hostId });
  for (const p of config.problems) log.warn(`configuration problem: ${p}`);
  if (action.type === "ignore") {
    log.debug("nothing to do for this operation");
    return OK;
  }
  if (action.type === "started") {
    log.debug("QEMU started (on a migration destination it is paused, waiting for the memory stream); nothing to call");
    return OK;
  }
  const input = typeof stdin === "string" ? Buffer.from(stdin, "utf8") : stdin;
  let domain: DomainInfo | null = null;
  let xmlProblem: string | null = null;
  try {
    domain = parseDomainXml(input.toString("utf8"));
    if (!domain.uuid) xmlProblem = "the domain XML has no <uuid>";
    else if (!VM_ID.test(domain.uuid)) xmlProblem = `the domain UUID ${JSON.stringify(domain.uuid.slice(0, 80))} is not a valid netmig VM id`;
  } catch (err) {
    xmlProblem = input.length === 0 ? "no domain XML on stdin" : `the domain XML cannot be read: ${(err as Error).message}`;
  }
  if (domain?.uuid) log = log.with({ vm_id: domain.uuid });
  const ctx: Ctx = { inv, config, log, input, domain, xmlProblem, deadlineAt: startedAt + config.timeoutMs };
  try {
    return action.type === "prepare" ? await prepare(ctx) : await finish(ctx, action);
  } catch (err) {
    // A bug must not take a migration down with it: apply the policy, or exit 0.
    log.error(`unexpected hook failure: ${(err as Error)?.stack ?? String(err)}`);
    return action.type === "prepare" ? refuse(ctx, `unexpected hook failure: ${(err as Error)?.message ?? String(err)}`) : OK;
  }
}

async function openClient(ctx: Ctx): Promise<PhaseClient> {
  const { PhaseClient } = await import("./phase-client.js");
  return new PhaseClient({
    config: ctx.config,
    deadlineAt: ctx.deadlineAt,
    onRetry: (rpc, attempt, err) => ctx.log.debug(`${rpc} attempt ${attempt} failed; retrying`, { error: err.message }),
  });
}

/** Races a call against the budget, so the hook ends in time even if a deadline is not honoured. */
async function withinBudget<T>(ctx: Ctx, rpc: string, p: Promise<T>): Promise<T> {
  const { PhaseCallError, CallFailure } = await import("./phase-client.js");
  const err = new PhaseCallError(CallFailure.Timeout, rpc, `${rpc}: no answer within the hook's budget of ${ctx.config.timeoutMs} ms`, null, null);
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(err), Math.max(0, ctx.deadlineAt - Date.now()) + WATCHDOG_GRACE_MS);
  });
  try {
    return await Promise.race([p, watchdog]);
  } finally {
    clearTimeout(timer);
  }
}

function asCallError(err: unknown): PhaseCallError | null {
  return (err as Error)?.name === "PhaseCallError" ? (err as PhaseCallError) : null;
}

function describe(err: unknown): string {
  const e = asCallError(err);
  if (!e) return (err as Error)?.message ?? String(err);
  const what = e.code === "UNREACHABLE" ? "coordinator unreachable" : e.code === "TIMEOUT" ? "coordinator did not answer in time" : e.code === "LOCAL" ? "call not possible" : "coordinator refused";
  return `${what} (${e.netmigCode ?? e.code}): ${e.message}`;
}

// ------------------------------------------------------------ migrate begin (destination)

/** What `migrate begin` answers when netmig could not prepare: per policy. */
function refuse(ctx: Ctx, reason: string): HookResult {
  const { config, log, inv } = ctx;
  const where = config.logFile === "-" ? "stderr" : config.logFile === "syslog" ? "syslog (journalctl -t netmig-hook)" : config.logFile;
  if (config.policy === HookPolicy.FailOpen) {
    log.error(`FAIL-OPEN: VM ${inv.vmName} migrates to ${config.hostId} WITHOUT its network state (ports, tags, ACLs, QoS, conntrack): ${reason}`, { policy: config.policy });
    process.stderr.write(`netmig: WARNING: VM ${inv.vmName} migrates without its network state (policy fail-open): ${reason}; see ${where}\n`);
    return { exitCode: 0, stdout: ctx.input };
  }
  log.error(`FAIL-CLOSED: cancelling the migration of VM ${inv.vmName} to ${config.hostId}: ${reason}`, { policy: config.policy });
  // libvirt puts a failing hook's output in the migration's error message.
  process.stderr.write(`netmig: migration of VM ${inv.vmName} cancelled (policy fail-closed): ${reason}; see ${where}\n`);
  return { exitCode: 1, stdout: EMPTY };
}

async function prepare(ctx: Ctx): Promise<HookResult> {
  const { domain, config, log } = ctx;
  if (ctx.xmlProblem || !domain?.uuid) return refuse(ctx, ctx.xmlProblem ?? "no VM UUID");
  const ovs = ovsInterfaces(domain);
  log.info("incoming migration: preparing the VM's network state", {
    interfaces: domain.interfaces.length,
    ovs_interfaces: ovs.map((i) => ({ interfaceid: i.virtualPort?.interfaceId ?? null, mac: i.mac, bridge: i.source })),
  });
  const client = await openClient(ctx);
  try {
    const m = await withinBudget(ctx, "PrepareMigration", client.prepare(domain.uuid, config.hostId, config.migrationTimeoutMs));
    log.info("pre-copy started; deltas flow until the switchover", { migration_id: m.migration_id, src_host: m.src_host, phase: m.phase });
    return { exitCode: 0, stdout: ctx.input };
  } catch (err) {
    const e = asCallError(err);
    if (e?.code === "REFUSED" && e.netmigCode === "UNKNOWN_VM") {
      log.warn("the VM is not managed by netmig (no host reports its network state); it migrates without netmig", { error: e.message });
      return { exitCode: 0, stdout: ctx.input };
    }
    return refuse(ctx, describe(err));
  } finally {
    client.close();
  }
}

// ------------------------------------------------------------ stopped / release (source or destination)

async function finish(ctx: Ctx, action: Extract<HookAction, { type: "stopped" | "released" }>): Promise<HookResult> {
  const { domain, config } = ctx;
  let log = ctx.log;
  if (ctx.xmlProblem || !domain?.uuid) {
    log.warn(`cannot tell which VM this is: ${ctx.xmlProblem ?? "no VM UUID"}; nothing done`);
    return OK;
  }
  const vmId = domain.uuid;
  const reason = `libvirt ${ctx.inv.operation} ${ctx.inv.subOperation} ${ctx.inv.extra} on ${config.hostId}`.replace(/\s+/g, " ");
  const client = await openClient(ctx);
  let rpc = "ListMigrations";
  try {
    if (action.type === "released" && action.reason === "failed") {
      // An incoming migration failed here: abort what was prepared for this host.
      rpc = "AbortMigration";
      const m = await withinBudget(ctx, rpc, client.abort({ vmId, dstHost: config.hostId }, reason));
      logEnded(log.with({ migration_id: m.migration_id }), "incoming migration failed", m.phase);
      return OK;
    }
    const m = await withinBudget(ctx, rpc, client.activeMigration(vmId));
    if (!m) {
      log.debug("no migration of this VM in progress; nothing to do");
      return OK;
    }
    log = log.with({ migration_id: m.migration_id, src_host: m.src_host, dst_host: m.dst_host });
    if (m.src_host === config.hostId) {
      if (action.type === "stopped" && config.completeOn === CompleteOn.Release) {
        log.debug("source QEMU stopped; completing at `release end migrated` (complete_on = release)");
        return OK;
      }
      if (action.type === "released" && !releaseMeansMigrated(action.reason)) {
        log.warn(`the VM was released on the source for "${action.reason}" during its migration; not completing (the destination's hook or the migration's timeout aborts it)`);
        return OK;
      }
      rpc = "CompleteMigration";
      log.info("the guest left this host: completing the migration", { phase: m.phase });
      const done = await withinBudget(ctx, rpc, client.complete(m.migration_id, reason));
      logEnded(log, "completed", done.phase, done.error?.message);
    } else if (m.dst_host === config.hostId) {
      if (action.type === "stopped") {
        log.debug("destination QEMU stopped during the migration; waiting for `release end` to abort");
        return OK;
      }
      rpc = "AbortMigration";
      const done = await withinBudget(ctx, rpc, client.abort({ migrationId: m.migration_id }, reason));
      logEnded(log, `incoming migration released (${action.reason})`, done.phase);
    } else {
      log.debug("the VM's migration is between other hosts; nothing to do here");
    }
  } catch (err) {
    const e = asCallError(err);
    if (e?.code === "REFUSED" && (e.netmigCode === "UNKNOWN_MIGRATION" || e.netmigCode === "UNKNOWN_VM")) {
      log.debug("no migration of this VM; nothing to do", { error: e.message });
    } else if (e?.code === "TIMEOUT" && rpc === "CompleteMigration") {
      log.warn(`CompleteMigration did not return within ${config.timeoutMs} ms; the coordinator carries on with it (\`netmig list --vm ${vmId}\`)`);
    } else if (e?.code === "REFUSED" && e.netmigCode === "WRONG_PHASE" && rpc === "AbortMigration") {
      log.error(`the migration has committed and cannot be aborted; the coordinator rolls it forward to ${config.hostId}. If the VM runs elsewhere, migrate its network state there (\`netmig migrate ${vmId} --to <host>\`)`, { error: e.message });
    } else {
      log.error(`${rpc} failed: ${describe(err)}`);
    }
  } finally {
    client.close();
  }
  return OK;
}

function logEnded(log: HookLog, what: string, phase: string, error?: string): void {
  if (phase === "DONE" || phase === "ABORTED") log.info(`${what}: migration ${phase}`, { phase, ...(error ? { error } : {}) });
  else log.warn(`${what}: migration is ${phase}`, { phase, ...(error ? { error } : {}) });
}

// ------------------------------------------------------------ process entry

/** Reads stdin to the end, or until `timeoutMs`. A terminal reads as empty. */
function readStdin(timeoutMs: number): Promise<{ data: Buffer; complete: boolean }> {
  return new Promise((resolve) => {
    if (process.stdin.isTTY) return resolve({ data: EMPTY, complete: true });
    const chunks: Buffer[] = [];
    const done = (complete: boolean) => {
      clearTimeout(timer);
      process.stdin.removeAllListeners("data").removeAllListeners("end").removeAllListeners("error");
      process.stdin.pause();
      resolve({ data: Buffer.concat(chunks), complete });
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    process.stdin.on("data", (c: Buffer) => chunks.push(c));
    process.stdin.once("end", () => done(true));
    process.stdin.once("error", () => done(false));
  });
}

/**
 * The hook as a process: argv as libvirt passes it (`<vm-name> <operation>
 * <sub-operation> <extra>`), domain XML from stdin, filter output to stdout.
 * Returns the exit code; the caller exits with it.
 */
export async function libvirtHookMain(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const startedAtMs = Date.now();
  const action = actionFor(parseInvocation(argv));
  let stdin = EMPTY;
  if (action.type !== "ignore" && action.type !== "started") {
    const config = loadHookConfig(env);
    const r = await readStdin(config.timeoutMs);
    if (!r.complete) {
      new HookLog(config.logFile, config.logLevel, { vm: argv[0] ?? "", op: argv.slice(1).join(" ") }).warn(`stdin did not end within ${config.timeoutMs} ms; treating the domain XML as missing`);
    }
    stdin = r.complete ? r.data : EMPTY;
  }
  const res = await runLibvirtHook(argv, stdin, env, { startedAtMs });
  if (res.stdout.length > 0) {
    await new Promise<void>((resolve) => {
      process.stdout.once("error", () => resolve());
      process.stdout.write(res.stdout, () => resolve());
    });
  }
  return res.exitCode;
}
