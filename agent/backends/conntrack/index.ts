/**
 * Kernel conntrack: the standalone `conntrack` backend and the pieces the
 * `ovs` backend composes with.
 */
import { ConntrackBackend, type ConntrackBackendOptions } from "./conntrack-backend.js";

export type { ConntrackBackendOptions } from "./conntrack-backend.js";
export type { ConntrackSelector } from "./selector.js";
export type { KernelConntrackOptions } from "./kernel-table.js";
export { ConntrackBackend } from "./conntrack-backend.js";
export { KernelConntrack } from "./kernel-table.js";
export { ZoneRemapper } from "./remap.js";
export { parseExtended, parseExtendedLine } from "./parse.js";
export { CtnlWriter } from "./ctnetlink-helper.js";
export { encodeCtOps, ipBytes, type CtOp } from "./ctnetlink-messages.js";

/** Creates the standalone conntrack backend. Call `start()` before use. */
export function createConntrackBackend(options: ConntrackBackendOptions): ConntrackBackend {
  return new ConntrackBackend(options);
}
