/** `netmig agent` and `netmig coordinator`: run a daemon until a signal. */
import { hostname } from "node:os";
import { join } from "node:path";
import { runAgent, runCoordinator } from "../daemons.js";
import { int, optInt, optStr, str, type Flags } from "../args.js";
import { onShutdown } from "../signals.js";
import { BadRequestError } from "../../protocol/errors.js";
import type { ChurnOptions } from "../../agent/backends/memory/churn.js";
import { checkHostId } from "../../protocol/subjects.js";
import { backendConfigFromFlags, backendFlags } from "./agent-backend.js";

export const agentFlags = {
  "host-id": { type: "string" }, nats: { type: "string" }, "state-dir": { type: "string" },
  "heartbeat-ms": { type: "string" }, churn: { type: "string" }, "first-zone": { type: "string" }, "gc-after-round-kib": { type: "string" },
  ...backendFlags,
} as const;

export async function agentCommand(flags: Flags): Promise<void> {
  const hostId = str(flags, "host-id");
  checkHostId(hostId, "--host-id");
  const stateDir = str(flags, "state-dir", join(process.cwd(), ".netmig", hostId));
  const churn = parseChurn(optStr(flags, "churn"));
  const firstZone = optInt(flags, "first-zone", 1, 65000);
  const backend = backendConfigFromFlags(flags, stateDir, { stateDir, ...(firstZone ? { firstZone } : {}), ...(churn ? { churn } : {}) });
  if (backend.kind !== "memory") {
    const memoryOnly = ["churn", "first-zone"].filter((f) => flags[f] !== undefined);
    if (memoryOnly.length) throw new BadRequestError(`${memoryOnly.map((f) => `--${f}`).join(", ")} only ${memoryOnly.length > 1 ? "apply" : "applies"} to --backend memory`);
  }
  const d = await runAgent({
    hostId, natsUrl: str(flags, "nats", "nats://127.0.0.1:4222"), stateDir, backend, checkNodeFlags: true,
    ...(flags["heartbeat-ms"] ? { heartbeatMs: int(flags, "heartbeat-ms", 1000, 50, 60_000) } : {}),
    ...(flags["gc-after-round-kib"] !== undefined ? { collectAfterRoundBytes: int(flags, "gc-after-round-kib", undefined, 0, 16 * 1024 * 1024) * 1024 } : {}),
  });
  onShutdown(() => d.close());
}

/** `--churn 500` (entries/s per VM) or `--churn 1%` (of each VM's conntrack entries per second). */
function parseChurn(v: string | undefined): ChurnOptions | null {
  if (!v) return null;
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(v);
  if (!m) throw new BadRequestError(`--churn must be entries per second (e.g. 500) or a percentage (e.g. 1%), got ${JSON.stringify(v)}`);
  const n = Number(m[1]);
  return m[2] ? { percentPerSec: n } : { rowsPerSec: n };
}

export const coordinatorFlags = {
  id: { type: "string" }, nats: { type: "string" }, grpc: { type: "string" }, replicas: { type: "string" },
  "tls-cert": { type: "string" }, "tls-key": { type: "string" }, "tls-ca": { type: "string" }, "freeze-budget-ms": { type: "string" },
} as const;

export async function coordinatorCommand(flags: Flags): Promise<void> {
  const cert = optStr(flags, "tls-cert");
  const key = optStr(flags, "tls-key");
  const ca = optStr(flags, "tls-ca");
  const budget = optInt(flags, "freeze-budget-ms", 1, 600_000);
  const d = await runCoordinator({
    id: str(flags, "id", `coord-${hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40)}`),
    natsUrl: str(flags, "nats", "nats://127.0.0.1:4222"),
    grpcAddress: str(flags, "grpc", "127.0.0.1:50051"),
    ...(cert && key ? { tls: { certFile: cert, keyFile: key, ...(ca ? { caFile: ca } : {}) } } : {}),
    ...(flags.replicas ? { replicas: int(flags, "replicas", 1, 1, 5) } : {}),
    ...(budget ? { defaults: { freezeBudgetMs: budget } } : {}),
  });
  onShutdown(() => d.close());
}
