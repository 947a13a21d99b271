// Starts a local nats-server (the system binary) for `netmig demo` and for the
// tests, in the way of the nats.js test launcher: a temporary config with
// `port: -1` and a ports file, the binary spawned, and the ports file awaited
// while racing an early exit.
//
// Every server lives in its own mkdtemp() directory holding its config, its
// ports file and (with JetStream) its store. Servers are stopped by PID only.
// A process 'exit' hook (plus SIGINT/SIGTERM/SIGHUP, re-raised afterwards)
// SIGKILLs servers a crashed process left running and removes their directories.
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, rmSync, statSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

/** Options for {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Enable JetStream, stored in a directory inside the server's temp dir. Default: true. */
  jetstream?: boolean;
  /** Largest message payload the server accepts (`max_payload`), in bytes. Default: the server's (1 MiB). */
  maxPayloadBytes?: number;
  /** Client port. Default: one the server picks (`port: -1`). */
  port?: number;
  /** Address to listen on. Default: "127.0.0.1". */
  host?: string;
  /** Path of the nats-server binary. Default: {@link findNatsServer}(). */
  binary?: string;
  /** How long to wait for the server to report its port, in milliseconds. Default: 10000. */
  startTimeoutMs?: number;
}

/** Options for {@link NatsServerHandle.stop}. */
export interface NatsServerStopOptions {
  /** Keep the temp dir (config and JetStream store) so that `restart()` can follow. Default: false. */
  keepData?: boolean;
  /** Time between SIGTERM and SIGKILL, in milliseconds. Default: 5000. */
  graceMs?: number;
}

/** A running (or stopped) nats-server started by {@link startNatsServer}. */
export interface NatsServerHandle {
  /** Client URL, e.g. "nats://127.0.0.1:41234". Stays the same across `restart()`. */
  readonly url: string;
  /** Client port. Stays the same across `restart()`. */
  readonly port: number;
  /** Address the server listens on. */
  readonly host: string;
  /** PID of the current process, or of the last one once it has exited. Changes on `restart()`. */
  readonly pid: number;
  /** The server's temp dir (config, ports file, store). */
  readonly dir: string;
  /** JetStream `store_dir`, or null when JetStream is off. */
  readonly storeDir: string | null;
  /** True while the server process is alive. */
  readonly running: boolean;
  /**
   * SIGTERM, then SIGKILL after `graceMs`; resolves once the process has
   * exited. Idempotent and safe to call concurrently. Removes the temp dir
   * unless `keepData` is set.
   */
  stop(opts?: NatsServerStopOptions): Promise<void>;
  /** SIGKILL (a crash); keeps the temp dir so `restart()` finds the JetStream data. */
  kill(): Promise<void>;
  /**
   * Starts the server again on the same port with the same config and store
   * dir, so JetStream data survives. A running server is stopped first
   * (gracefully, keeping data). Rejects once `stop()` has removed the data.
   */
  restart(): Promise<void>;
  /** Sends `sig` to the server process (e.g. "SIGHUP" reloads, "SIGUSR2" enters lame duck mode). */
  signal(sig: NodeJS.Signals): void;
  /** The server's recent stdout/stderr (last 64 KiB), for assertions and failure messages. */
  log(): string;
}

/** The nats-server binary could not be found or is not executable. */
export class NatsServerNotFoundError extends Error {
  override readonly name = "NatsServerNotFoundError";
  readonly code = "NATS_SERVER_NOT_FOUND";
  constructor(readonly searched: readonly string[]) {
    super(
      `nats-server binary not found (looked for ${searched.join(", ")}). ` +
        "Install it with `apt-get install nats-server` (Debian/Ubuntu; run as root), " +
        "or run `node scripts/setup.mjs`, which installs it.",
    );
  }
}

/** nats-server exited early or did not report its port in time. */
export class NatsServerStartError extends Error {
  override readonly name = "NatsServerStartError";
  readonly code = "NATS_SERVER_START_FAILED";
  constructor(
    message: string,
    readonly configPath: string,
    readonly serverLog: string,
    options?: { cause?: unknown },
  ) {
    super(`${message}\nconfig: ${configPath}\nserver output:\n${serverLog.trimEnd() || "(none)"}`, options);
  }
}

/** A stop() or kill() whose process did not exit in time. */
export class NatsServerStopError extends Error {
  override readonly name = "NatsServerStopError";
  readonly code = "NATS_SERVER_STOP_FAILED";
  constructor(readonly pid: number, timeoutMs: number) {
    super(`nats-server pid ${pid} did not exit within ${timeoutMs} ms of SIGKILL`);
  }
}

const EXTRA_BIN_DIRS = ["/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/sbin"];
const DEFAULT_START_TIMEOUT_MS = 10_000;
const DEFAULT_GRACE_MS = 5_000;
const KILL_TIMEOUT_MS = 5_000;
const LOG_LIMIT_CHARS = 64 * 1024;
const POLL_INTERVAL_MS = 20;

/** Path of the nats-server binary: the first executable one on PATH, then in /usr/sbin, /usr/local/bin; null if none. */
export function findNatsServer(): string | null {
  for (const dir of searchDirs()) {
    const candidate = join(dir, "nats-server");
    if (isExecutableFile(candidate)) return candidate;
  }
  return null;
}

/**
 * Starts a nats-server in a fresh temp dir and resolves once it has written
 * its ports file. Rejects with {@link NatsServerNotFoundError} when the binary
 * is missing and {@link NatsServerStartError} when it exits early or does not
 * report its port within `startTimeoutMs`.
 */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const binary = opts.binary ?? findNatsServer();
  if (binary === null) throw new NatsServerNotFoundError(searchDirs().map((d) => join(d, "nats-server")));
  if (!isExecutableFile(binary)) throw new NatsServerNotFoundError([binary]);
  if (opts.maxPayloadBytes !== undefined && !(Number.isInteger(opts.maxPayloadBytes) && opts.maxPayloadBytes > 0)) {
    throw new RangeError(`maxPayloadBytes must be a positive integer, got ${opts.maxPayloadBytes}`);
  }
  if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port <= 65535)) {
    throw new RangeError(`port must be an integer in 0..65535, got ${opts.port}`);
  }

  const dir = await mkdtemp(join(tmpdir(), "netmig-nats-"));
  const server = new NatsServer(binary, dir, {
    jetstream: opts.jetstream ?? true,
    maxPayloadBytes: opts.maxPayloadBytes,
    host: opts.host ?? "127.0.0.1",
    startTimeoutMs: opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
  });
  live.add(server);
  installExitHooks();
  try {
    // 0 and "unset" both mean: let the server pick (port: -1).
    await server.launch(opts.port === undefined || opts.port === 0 ? -1 : opts.port);
  } catch (err) {
    live.delete(server);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return server;
}

interface ServerConfig {
  jetstream: boolean;
  maxPayloadBytes: number | undefined;
  host: string;
  startTimeoutMs: number;
}

interface Running {
  child: ChildProcess;
  pid: number;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  hasExited: boolean;
}

class NatsServer implements NatsServerHandle {
  readonly dir: string;
  readonly storeDir: string | null;
  readonly host: string;
  #port = 0;
  #pid = 0;
  #proc: Running | null = null;
  #removing: Promise<void> | null = null;
  #logText = "";
  #stopping: Promise<void> | null = null;
  readonly #binary: string;
  readonly #config: ServerConfig;
  readonly #configPath: string;
  readonly #serverName: string;

  constructor(binary: string, dir: string, config: ServerConfig) {
    this.#binary = binary;
    this.dir = dir;
    this.#config = config;
    this.host = config.host;
    this.storeDir = config.jetstream ? join(dir, "jetstream") : null;
    this.#configPath = join(dir, "nats-server.conf");
    this.#serverName = `netmig_test_${process.pid}_${++serverCount}`;
  }

  get url(): string {
    return `nats://${urlHost(this.host)}:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  get pid(): number {
    return this.#pid;
  }

  get running(): boolean {
    return this.#proc !== null && !this.#proc.hasExited;
  }

  log(): string {
    return this.#logText;
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.running) throw new Error(`nats-server ${this.url} is not running (last pid ${this.#pid})`);
    process.kill(this.#pid, sig);
  }

  async stop(opts: NatsServerStopOptions = {}): Promise<void> {
    await this.#terminate(opts.graceMs ?? DEFAULT_GRACE_MS);
    if (!(opts.keepData ?? false) && this.#removing === null) {
      live.delete(this);
      this.#removing = rm(this.dir, { recursive: true, force: true });
    }
    if (this.#removing !== null) await this.#removing;
  }

  kill(): Promise<void> {
    return this.#terminate(0);
  }

  async restart(): Promise<void> {
    if (this.#removing !== null) throw new Error(`nats-server ${this.url} was stopped and its data removed; it cannot be restarted`);
    await this.#terminate(DEFAULT_GRACE_MS);
    await this.launch(this.#port);
  }

  /** Writes the config and spawns the server; `port` -1 lets the server pick one. */
  async launch(port: number): Promise<void> {
    const timeoutMs = this.#config.startTimeoutMs;
    const callSite = new Error(); // so that a timeout's stack shows who started the server
    await writeFile(this.#configPath, this.#renderConfig(port));
    this.#logText = "";

    const child = spawn(this.#binary, ["-c", this.#configPath], { stdio: ["ignore", "pipe", "pipe"] });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once("spawn", () => resolve());
      // Stays attached: a later 'error' without a listener would crash the test process.
      child.on("error", reject);
    });
    try {
      await spawned;
    } catch (err) {
      throw new NatsServerStartError(`could not spawn ${this.#binary}: ${String(err)}`, this.#configPath, "", { cause: err });
    }
    const pid = child.pid;
    if (pid === undefined) throw new NatsServerStartError(`spawned ${this.#binary} without a pid`, this.#configPath, "");

    const running: Running = { child, pid, exited: Promise.resolve(), hasExited: false };
    let exitInfo = "";
    running.exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        running.hasExited = true;
        exitInfo = signal !== null ? `signal ${signal}` : `code ${String(code)}`;
        resolve();
      });
    });
    const outputClosed = new Promise<void>((resolve) => child.once("close", () => resolve()));
    const append = (chunk: Buffer): void => {
      this.#logText += chunk.toString("utf8");
      if (this.#logText.length > LOG_LIMIT_CHARS) this.#logText = this.#logText.slice(-LOG_LIMIT_CHARS);
    };
    child.stdout?.on("data", append);
    child.stderr?.on("data", append);
    // A server a test forgot to stop must not keep the test process alive;
    // the exit hook kills it. Every wait below holds a timer, so awaiting the
    // child never lets the process exit under us.
    child.unref();
    unrefStream(child.stdout);
    unrefStream(child.stderr);
    this.#proc = running;
    this.#pid = pid;

    const deadline = Date.now() + timeoutMs;
    let reported: number | null = null;
    while (reported === null) {
      reported = await this.#readPortsFile(pid);
      if (reported !== null) break;
      if (running.hasExited) {
        await Promise.race([outputClosed, delay(500)]);
        throw new NatsServerStartError(`nats-server exited early (${exitInfo})`, this.#configPath, this.#logText);
      }
      if (Date.now() >= deadline) {
        await this.#terminate(0).catch(() => undefined);
        const err = new NatsServerStartError(
          `nats-server did not write its ports file within ${timeoutMs} ms`,
          this.#configPath,
          this.#logText,
        );
        err.stack = `${err.name}: ${err.message}\n${(callSite.stack ?? "").split("\n").slice(1).join("\n")}`;
        throw err;
      }
      await Promise.race([running.exited, delay(POLL_INTERVAL_MS)]);
    }
    if (port !== -1 && reported !== port) {
      await this.#terminate(0).catch(() => undefined);
      throw new NatsServerStartError(`nats-server listens on port ${reported}, expected ${port}`, this.#configPath, this.#logText);
    }
    this.#port = reported;
  }

  /** Reads `<name>_<pid>.ports`; null until it exists and parses. */
  async #readPortsFile(pid: number): Promise<number | null> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return null;
    }
    const name = names.find((n) => n.endsWith(`_${pid}.ports`));
    if (name === undefined) return null;
    try {
      const parsed: unknown = JSON.parse(await readFile(join(this.dir, name), "utf8"));
      const urls = (parsed as { nats?: unknown }).nats;
      if (!Array.isArray(urls) || typeof urls[0] !== "string") return null;
      const port = Number(new URL(urls[0]).port);
      return Number.isInteger(port) && port > 0 ? port : null;
    } catch {
      return null; // partially written; try again
    }
  }

  /** SIGTERM (or SIGKILL when graceMs is 0), SIGKILL after graceMs; concurrent calls share one stop. */
  #terminate(graceMs: number): Promise<void> {
    if (this.#stopping !== null) return this.#stopping;
    const proc = this.#proc;
    if (proc === null || proc.hasExited) return Promise.resolve();
    this.#stopping = (async () => {
      if (graceMs > 0) {
        sendSignal(proc.pid, "SIGTERM");
        const ac = new AbortController();
        await Promise.race([proc.exited, delay(graceMs, undefined, { signal: ac.signal }).catch(() => undefined)]);
        ac.abort();
      }
      if (!proc.hasExited) {
        sendSignal(proc.pid, "SIGKILL");
        const ac = new AbortController();
        await Promise.race([proc.exited, delay(KILL_TIMEOUT_MS, undefined, { signal: ac.signal }).catch(() => undefined)]);
        ac.abort();
        if (!proc.hasExited) throw new NatsServerStopError(proc.pid, KILL_TIMEOUT_MS);
      }
    })().finally(() => {
      this.#stopping = null;
    });
    return this.#stopping;
  }

  #renderConfig(port: number): string {
    const lines = [
      "# Written by test/harness/nats-server.ts",
      `server_name: ${JSON.stringify(this.#serverName)}`,
      `host: ${JSON.stringify(this.host)}`,
      `port: ${port}`,
      `ports_file_dir: ${JSON.stringify(this.dir)}`,
    ];
    if (this.#config.maxPayloadBytes !== undefined) lines.push(`max_payload: ${this.#config.maxPayloadBytes}`);
    if (this.storeDir !== null) lines.push("jetstream {", `  store_dir: ${JSON.stringify(this.storeDir)}`, "}");
    return `${lines.join("\n")}\n`;
  }

  /** For the exit hook: SIGKILL synchronously and remove the temp dir. */
  killSync(): void {
    const proc = this.#proc;
    if (proc !== null && !proc.hasExited) sendSignal(proc.pid, "SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const live = new Set<NatsServer>();
let serverCount = 0;
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const cleanup = (): void => {
    for (const server of live) {
      try {
        server.killSync();
      } catch {
        // best effort while exiting
      }
    }
    live.clear();
  };
  process.on("exit", cleanup);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      cleanup();
      // Without another listener, the default action (exit) was replaced by
      // ours: raise the signal again so the process still ends as it would have.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

function sendSignal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

function unrefStream(stream: NodeJS.ReadableStream | null): void {
  (stream as { unref?: () => void } | null)?.unref?.();
}

function searchDirs(): string[] {
  const fromPath = (process.env["PATH"] ?? "").split(delimiter).filter((d) => d !== "");
  return [...new Set([...fromPath, ...EXTRA_BIN_DIRS])];
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The host part of a client URL for a listen address. */
function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
