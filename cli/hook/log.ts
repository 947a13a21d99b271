/**
 * The hook's log: JSON lines, written synchronously so a short-lived hook
 * loses nothing when it exits, to one of
 * - a file an operator can find (default /var/log/netmig/hook.log; the
 *   directory is created);
 * - syslog (`log_file = syslog`): each line through logger(1), tag
 *   `netmig-hook`, facility daemon, so journald / rsyslog keep it;
 * - stderr (`log_file = -`), which libvirt keeps in its own log.
 * When the file or syslog cannot be written, lines go to stderr instead.
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { LOG_LEVELS, type LogLevel } from "./config.js";

/** The `log_file` value that selects syslog. */
export const SYSLOG = "syslog";
/** syslog priorities of the log levels, facility daemon. */
const PRIORITY: Record<LogLevel, string> = { debug: "daemon.debug", info: "daemon.info", warn: "daemon.warning", error: "daemon.err" };
/** Longest one logger(1) run may take, ms. */
const LOGGER_TIMEOUT_MS = 1000;

export type LogFields = Record<string, unknown>;

export class HookLog {
  private readonly min: number;
  private fileBroken: string | null = null;
  private dirMade = false;

  /**
   * @param file path of the log file; "syslog" logs through logger(1); "-" writes to stderr only.
   * @param base fields on every line (vm, op, …); extend with {@link with}.
   */
  constructor(readonly file: string, readonly level: LogLevel, private readonly base: LogFields = {}) {
    this.min = LOG_LEVELS.indexOf(level);
  }

  /** A logger with more fields on every line, writing to the same place. */
  with(fields: LogFields): HookLog {
    const child = new HookLog(this.file, this.level, { ...this.base, ...fields });
    child.fileBroken = this.fileBroken;
    child.dirMade = this.dirMade;
    return child;
  }

  debug(msg: string, fields?: LogFields): void {
    this.write("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write("error", msg, fields);
  }

  private write(level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (LOG_LEVELS.indexOf(level) < this.min) return;
    const line = `${JSON.stringify({ time: new Date().toISOString(), level, name: "netmig-hook", pid: process.pid, ...this.base, ...fields, msg })}\n`;
    if (this.file === SYSLOG && this.fileBroken === null) {
      const r = spawnSync("logger", ["-t", "netmig-hook", `--id=${process.pid}`, "-p", PRIORITY[level], "--", line.trimEnd()], { stdio: ["ignore", "ignore", "pipe"], timeout: LOGGER_TIMEOUT_MS });
      if (!r.error && r.status === 0) return;
      this.fileBroken = r.error?.message ?? (r.stderr?.toString().trim() || `logger exited with ${r.status ?? r.signal}`);
      process.stderr.write(`netmig-hook: cannot log to syslog through logger(1) (${this.fileBroken}); logging to stderr\n`);
    } else if (this.file !== "-" && this.file !== SYSLOG && this.fileBroken === null) {
      try {
        if (!this.dirMade) {
          mkdirSync(dirname(this.file), { recursive: true });
          this.dirMade = true;
        }
        appendFileSync(this.file, line, { mode: 0o640 });
        return;
      } catch (err) {
        this.fileBroken = (err as Error).message;
        process.stderr.write(`netmig-hook: cannot write log file ${this.file} (${this.fileBroken}); logging to stderr\n`);
      }
    }
    process.stderr.write(line);
  }
}
