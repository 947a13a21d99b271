/**
 * Creates the dataplane backend an agent was asked for.
 */
import { BadRequestError } from "../../protocol/errors.js";
import type { Backend } from "./backend.js";
import { MemoryBackend, type MemoryBackendOptions } from "./memory/backend.js";

export const BACKEND_KINDS = ["memory"] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

export interface BackendConfig {
  kind: string;
  memory?: MemoryBackendOptions;
}

export function createBackend(cfg: BackendConfig): Backend {
  switch (cfg.kind) {
    case "memory":
      return new MemoryBackend(cfg.memory ?? { stateDir: null });
    default:
      throw new BadRequestError(`unknown backend "${cfg.kind}" (known: ${BACKEND_KINDS.join(", ")})`);
  }
}
