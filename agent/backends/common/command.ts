/**
 * Runs host tools (ovs-ofctl, conntrack, python3 ...) with a deadline, an
 * optional network namespace and an optional stdin payload. One process per
 * batch, never per entry: callers hand over a whole file's worth of input.
 */
import { spawn } from "node:child_process";
import { BackendError, TimeoutError } from "../../../protocol/errors.js";

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number;
  durationMs: number;
}

export interface CommandOptions {
  /** Bytes or text written to the process' stdin, then closed. */
  input?: string | Uint8Array;
  /** Kill the process after this long. Default 30000 ms. */
  timeoutMs?: number;
  /** Throw on a non-zero exit (default true). */
  check?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Cap on captured stdout. Default 512 MiB. */
  maxOutputBytes?: number;
}

/** Where host commands run: the current namespace, or `ip netns exec <netns>`. */
export class HostExec {
  constructor(readonly netns: string | null = null, readonly env: Record<string, string> = {}) {}

  /** The argv actually run for `argv` (with the netns wrapper). */
  wrap(argv: readonly string[]): string[] {
    return this.netns ? ["ip", "netns", "exec", this.netns, ...argv] : [...argv];
  }

  run(argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
    return runCommand(this.wrap(argv), { ...opts, env: { ...this.env, ...opts.env } });
  }
}

/** Runs one command. Rejects with TimeoutError or BackendError (naming the command and its stderr). */
export function runCommand(argv: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxOut = opts.maxOutputBytes ?? 512 * 1024 * 1024;
  const what = argv.slice(0, 6).join(" ");
  // Created here so the stack shows the caller.
  const timeoutError = new TimeoutError(`${what}: no answer within ${timeoutMs} ms`);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ["pipe", "pipe", "pipe"],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let failed: Error | null = null;
    const timer = setTimeout(() => {
      failed = timeoutError;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (d: Buffer) => {
      outBytes += d.length;
      if (outBytes > maxOut) {
        failed ??= new BackendError(`${what}: output exceeds ${maxOut} bytes`);
        child.kill("SIGKILL");
        return;
      }
      out.push(d);
    });
    child.stderr.on("data", (d: Buffer) => {
      errBytes += d.length;
      if (errBytes < 1 << 20) err.push(d);
    });
    child.on("error", (e) => {
      failed ??= new BackendError(`${what}: cannot start (${e.message})`, {}, { cause: e });
    });
    child.stdin.on("error", () => {
      /* the process may exit before reading all input; its exit code tells */
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const res: CommandResult = {
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        code: code ?? -1,
        durationMs: performance.now() - started,
      };
      if (failed) return reject(failed);
      if (opts.check !== false && res.code !== 0) {
        return reject(new BackendError(`${what} exited with ${res.code}: ${res.stderr.trim().slice(0, 2000)}`));
      }
      resolve(res);
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}
