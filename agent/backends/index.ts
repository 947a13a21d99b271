/**
 * Creates the dataplane backend an agent was asked for:
 *
 *  - `memory`: the embedded default (state in memory, persisted to a directory);
 *  - `ovs`: Open vSwitch (ports, flows, fdb, QoS, mirrors), with the VM's
 *    kernel conntrack entries alongside unless `ovs.conntrack` is false;
 *  - `conntrack`: only kernel conntrack entries, VMs selected by zone and/or mark.
 */
import { BadRequestError } from "../../protocol/errors.js";
import type { Backend } from "./backend.js";
import { createConntrackBackend, type ConntrackBackendOptions } from "./conntrack/index.js";
import { MemoryBackend, type MemoryBackendOptions } from "./memory/backend.js";
import { createOvsBackend, type OvsBackendOptions } from "./ovs/index.js";

export const BACKEND_KINDS = ["memory", "ovs", "conntrack"] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

export function isBackendKind(v: string): v is BackendKind {
  return (BACKEND_KINDS as readonly string[]).includes(v);
}

export interface BackendConfig {
  kind: string;
  /** Options of the `memory` backend. Default: no persistence. */
  memory?: MemoryBackendOptions;
  /** Options of the `ovs` backend (required for kind "ovs"). */
  ovs?: OvsBackendOptions;
  /** Options of the `conntrack` backend (required for kind "conntrack"). */
  conntrack?: ConntrackBackendOptions;
}

export function createBackend(cfg: BackendConfig): Backend {
  switch (cfg.kind) {
    case "memory":
      return new MemoryBackend(cfg.memory ?? { stateDir: null });
    case "ovs":
      if (!cfg.ovs) throw new BadRequestError("backend \"ovs\" needs its options (at least stateDir)");
      return createOvsBackend(cfg.ovs);
    case "conntrack":
      if (!cfg.conntrack) throw new BadRequestError("backend \"conntrack\" needs its options (at least stateDir)");
      return createConntrackBackend(cfg.conntrack);
    default:
      throw new BadRequestError(`unknown backend "${cfg.kind}" (known: ${BACKEND_KINDS.join(", ")})`);
  }
}
