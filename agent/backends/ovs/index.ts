/**
 * The `ovs` dataplane backend: public surface.
 */
import { OvsBackend } from "./ovs-backend.js";
import type { OvsBackendOptions } from "./options.js";

export type { OvsBackendOptions, VmRecognition } from "./options.js";
export { OvsBackend } from "./ovs-backend.js";
export { hashCookie, vmCookie } from "./cookie.js";

/** Creates the ovs backend (`netmig agent --backend ovs`). Call `start()` before use. */
export function createOvsBackend(options: OvsBackendOptions): OvsBackend {
  return new OvsBackend(options);
}
