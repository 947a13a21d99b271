/**
 * Configuration of the libvirt hook and the lifecycle watcher: a file of
 * `key = value` lines (default /etc/netmig/hook.conf, path from
 * NETMIG_HOOK_CONFIG), each key overridable by an environment variable.
 * libvirtd starts hooks with a scrubbed environment, so on a hypervisor the
 * file is what counts; the variables are for tests and manual runs.
 *
 * A hook must not fail because of a typo: problems (unknown keys, bad values,
 * an unreadable file) are collected in `problems` and the default is used.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";

/** The CLI's default (cli/client.ts), repeated so that a hook with nothing to do does not load gRPC. */
export const DEFAULT_COORDINATOR = "127.0.0.1:50051";
export const DEFAULT_CONFIG_PATH = "/etc/netmig/hook.conf";
export const DEFAULT_LOG_FILE = "/var/log/netmig/hook.log";
export const DEFAULT_TIMEOUT_MS = 5000;
/** How long a hook-driven migration may wait for the hypervisor before netmig aborts it, ms (1 h). */
export const DEFAULT_MIGRATION_TIMEOUT_MS = 3_600_000;

/** What the hook does when netmig cannot prepare the migration. */
export const HookPolicy = {
  /** The VM migrates without its network state; the hook logs an error. */
  FailOpen: "fail-open",
  /** The hook exits 1 at `migrate begin`, and libvirt cancels the migration. */
  FailClosed: "fail-closed",
} as const;
export type HookPolicy = (typeof HookPolicy)[keyof typeof HookPolicy];

/** Which source hook call completes the migration. */
export const CompleteOn = {
  /** `stopped end -` on the source (every libvirt version), then `release end migrated` again (idempotent). */
  Stopped: "stopped",
  /** Only `release end migrated` (libvirt ≥ 10.5; `release end -` on older versions). */
  Release: "release",
} as const;
export type CompleteOn = (typeof CompleteOn)[keyof typeof CompleteOn];

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface HookConfig {
  /** Where the config was read from; null when the file does not exist. */
  path: string | null;
  /** Coordinator gRPC address, host:port. Default 127.0.0.1:50051. */
  coordinator: string;
  /** PEM files; with `tlsCa` the connection uses TLS (mTLS with cert and key). */
  tlsCa: string | null;
  tlsCert: string | null;
  tlsKey: string | null;
  /** Default fail-closed. */
  policy: HookPolicy;
  /** This hypervisor's netmig host id (the agent's --host-id). Default: the short hostname. */
  hostId: string;
  /** Budget of one hook run, ms: every call's deadline fits in it. Default 5000. */
  timeoutMs: number;
  /**
   * Overall deadline of a migration the hook prepares, ms: it must cover
   * libvirt's whole memory copy, since deltas flow until the switchover.
   * Sent as the migration's timeout_ms. Default 3600000 (1 h).
   */
  migrationTimeoutMs: number;
  /** Log file (JSON lines); "syslog" logs to syslog (logger(1), facility daemon); "-" logs to stderr. Default /var/log/netmig/hook.log. */
  logFile: string;
  /** Default info. */
  logLevel: LogLevel;
  /** Default stopped. */
  completeOn: CompleteOn;
  /** virsh for the lifecycle watcher. Default "virsh" (from PATH). */
  virsh: string;
  /** What was wrong with the file or the environment; defaults were used instead. */
  problems: string[];
}

interface KeySpec {
  env: string;
  apply(c: HookConfig, v: string): string | null;
}

const path = (field: "tlsCa" | "tlsCert" | "tlsKey" | "logFile" | "virsh"): KeySpec["apply"] => (c, v) => {
  if (!v) return "must not be empty";
  (c as unknown as Record<string, unknown>)[field] = v;
  return null;
};

function oneOf<T extends string>(values: readonly T[], set: (c: HookConfig, v: T) => void): KeySpec["apply"] {
  return (c, v) => {
    if (!(values as readonly string[]).includes(v)) return `must be one of ${values.join(", ")}`;
    set(c, v as T);
    return null;
  };
}

function intIn(min: number, max: number, set: (c: HookConfig, n: number) => void): KeySpec["apply"] {
  return (c, v) => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || n < min || n > max) return `must be an integer from ${min} to ${max}`;
    set(c, n);
    return null;
  };
}

const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
const ADDRESS = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$|^(unix|dns|ipv4|ipv6):.+$/;

/** Keys of the file, with the environment variable that overrides each. */
const KEYS: ReadonlyMap<string, KeySpec> = new Map<string, KeySpec>([
  ["coordinator", { env: "NETMIG_COORDINATOR", apply: (c, v) => (ADDRESS.test(v) ? ((c.coordinator = v), null) : "must be host:port") }],
  ["tls_ca", { env: "NETMIG_TLS_CA", apply: path("tlsCa") }],
  ["tls_cert", { env: "NETMIG_TLS_CERT", apply: path("tlsCert") }],
  ["tls_key", { env: "NETMIG_TLS_KEY", apply: path("tlsKey") }],
  ["policy", { env: "NETMIG_HOOK_POLICY", apply: oneOf(Object.values(HookPolicy), (c, v) => (c.policy = v)) }],
  ["host_id", { env: "NETMIG_HOST_ID", apply: (c, v) => (HOST_ID.test(v) ? ((c.hostId = v), null) : "must be 1-63 letters, digits, '_' or '-'") }],
  ["timeout_ms", { env: "NETMIG_HOOK_TIMEOUT_MS", apply: intIn(100, 600_000, (c, n) => (c.timeoutMs = n)) }],
  ["migration_timeout_ms", { env: "NETMIG_HOOK_MIGRATION_TIMEOUT_MS", apply: intIn(1000, 86_400_000, (c, n) => (c.migrationTimeoutMs = n)) }],
  ["log_file", { env: "NETMIG_HOOK_LOG", apply: path("logFile") }],
  ["log_level", { env: "NETMIG_HOOK_LOG_LEVEL", apply: oneOf(LOG_LEVELS, (c, v) => (c.logLevel = v)) }],
  ["complete_on", { env: "NETMIG_HOOK_COMPLETE_ON", apply: oneOf(Object.values(CompleteOn), (c, v) => (c.completeOn = v)) }],
  ["virsh", { env: "NETMIG_VIRSH", apply: path("virsh") }],
]);

/** Names of the keys the file accepts, for docs and messages. */
export const CONFIG_KEYS: readonly string[] = [...KEYS.keys()];

export function defaultHostId(): string {
  const short = hostname().split(".")[0] ?? "";
  return HOST_ID.test(short) ? short : "localhost";
}

export function defaultConfig(): HookConfig {
  return {
    path: null, coordinator: DEFAULT_COORDINATOR, tlsCa: null, tlsCert: null, tlsKey: null, policy: HookPolicy.FailClosed, hostId: defaultHostId(),
    timeoutMs: DEFAULT_TIMEOUT_MS, migrationTimeoutMs: DEFAULT_MIGRATION_TIMEOUT_MS, logFile: DEFAULT_LOG_FILE, logLevel: "info", completeOn: CompleteOn.Stopped, virsh: "virsh", problems: [],
  };
}

/** Parses config file text into key → value; a later line wins. */
export function parseConfigText(text: string, where: string, problems: string[]): Map<string, string> {
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) return;
    const eq = line.indexOf("=");
    if (eq <= 0) {
      problems.push(`${where}:${i + 1}: expected "key = value"`);
      return;
    }
    const key = line.slice(0, eq).trim().toLowerCase();
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value[value.length - 1] === value[0]) value = value.slice(1, -1);
    if (!KEYS.has(key)) {
      problems.push(`${where}:${i + 1}: unknown key "${key.slice(0, 40)}" (known: ${CONFIG_KEYS.join(", ")})`);
      return;
    }
    out.set(key, value);
  });
  return out;
}

/** The hook's configuration: defaults, then the file, then the environment. */
export function loadHookConfig(env: NodeJS.ProcessEnv): HookConfig {
  const c = defaultConfig();
  const file = env.NETMIG_HOOK_CONFIG || DEFAULT_CONFIG_PATH;
  let values = new Map<string, string>();
  try {
    values = parseConfigText(readFileSync(file, "utf8"), file, c.problems);
    c.path = file;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No file is fine (environment and defaults); one that cannot be read is not.
    if (code !== "ENOENT" || env.NETMIG_HOOK_CONFIG) c.problems.push(`${file}: ${(err as Error).message}`);
  }
  for (const [key, spec] of KEYS) {
    const fromEnv = env[spec.env];
    const value = fromEnv !== undefined && fromEnv !== "" ? fromEnv : values.get(key);
    if (value === undefined) continue;
    const problem = spec.apply(c, value);
    if (problem) c.problems.push(`${key} ${JSON.stringify(value.slice(0, 80))} (${fromEnv ? spec.env : file}) ${problem}; using the default`);
  }
  return c;
}
