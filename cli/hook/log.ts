/**
 * The hook's log: JSON lines appended synchronously to a file an operator can
 * find (default /var/log/netmig/hook.log; the directory is created), so a
 * short-lived hook loses nothing when it exits. When the file cannot be
 * written the lines go to stderr instead, which libvirt keeps in its own log.
 */
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { LOG_LEVELS, type LogLevel } from "./config.js";

export type LogFields = Record<string, unknown>;

export class HookLog {
  private readonly min: number;
  private fileBroken: string | null = null;
  private dirMade = false;

  /**
   * @param file path of the log file; "-" writes to stderr only.
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
    if (this.file !== "-" && this.fileBroken === null) {
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
