/**
 * Structured logging for the daemons: JSON lines on stderr (pino), level from
 * NETMIG_LOG_LEVEL (default "info"; "silent" turns it off).
 */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(component: string, fields: Record<string, unknown> = {}): Logger {
  return pino({ name: `netmig-${component}`, level: process.env.NETMIG_LOG_LEVEL ?? "info", base: { pid: process.pid, ...fields } }, pino.destination({ fd: 2, sync: true }));
}
