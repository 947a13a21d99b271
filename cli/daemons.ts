/**
 * Runs the netmig daemons (agent, coordinator) with their NATS connections,
 * for `netmig agent`, `netmig coordinator` and the in-process demo. The
 * coordinator's modules (gRPC among them) are loaded by `runCoordinator`
 * only: an agent process does not carry them (a smaller heap is a shorter
 * major collection, and those land in freeze windows).
 */
import { connect, type NatsConnection } from "nats";
import { Agent } from "../agent/service.js";
import { createBackend, type BackendConfig } from "../agent/backends/index.js";
import type { Coordinator } from "../coordinator/service.js";
import type { GrpcServerHandle, GrpcTlsOptions } from "../coordinator/grpc/server.js";
import { createLogger, type Logger } from "../protocol/log.js";
import type { MigrationOptions } from "../coordinator/record.js";
import { AGENT_NODE_FLAGS, missingAgentFlags } from "./node-flags.js";

export async function connectNats(url: string, name: string, log: Logger): Promise<NatsConnection> {
  // noAsyncTraces: nats.js would otherwise capture a stack trace (two or three
  // Error objects) for every request, a chunk's included; netmig's own errors
  // name the subject and the operation that timed out.
  const nc = await connect({ servers: url.split(","), name, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 10_000, noAsyncTraces: true });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect") log.warn({ nats: s.type, server: s.data }, `NATS ${s.type}`);
    }
  })();
  return nc;
}

export interface AgentDaemonOptions {
  hostId: string;
  natsUrl: string;
  backend: BackendConfig;
  stateDir: string | null;
  heartbeatMs?: number;
  /** Log a hint if this process lacks the agent's Node flags (cli/node-flags.ts): `netmig agent` does, an in-process demo does not. */
  checkNodeFlags?: boolean;
  /** Largest message the agent accepts, bytes. Default 8 MiB. */
  maxMessageBytes?: number;
  /** A major garbage collection after each pre-copy round of at least this many bytes (agent/collector.ts); 0: never. Default 2 MiB. */
  collectAfterRoundBytes?: number;
  logger?: Logger;
}

export interface Daemon<T> {
  service: T;
  nc: NatsConnection;
  /** Drains and stops; idempotent. */
  close(): Promise<void>;
}

export async function runAgent(o: AgentDaemonOptions): Promise<Daemon<Agent>> {
  const log = o.logger ?? createLogger("agent", { hostId: o.hostId });
  const nc = await connectNats(o.natsUrl, `netmig-agent-${o.hostId}`, log);
  const backend = createBackend(o.backend);
  const agent = new Agent({ hostId: o.hostId, nc, backend, stateDir: o.stateDir, logger: log, ...(o.heartbeatMs ? { heartbeatMs: o.heartbeatMs } : {}), ...(o.maxMessageBytes ? { maxMessageBytes: o.maxMessageBytes } : {}), ...(o.collectAfterRoundBytes !== undefined ? { collectAfterRoundBytes: o.collectAfterRoundBytes } : {}) });
  await agent.start();
  const missing = o.checkNodeFlags ? missingAgentFlags() : [];
  if (missing.length) log.info({ flags: missing }, `running without the agent's Node flags (NODE_OPTIONS="${AGENT_NODE_FLAGS.join(" ")}"): more memory held between collections; see docs/operations.md`);
  let closing: Promise<void> | null = null;
  return {
    service: agent,
    nc,
    close: () => (closing ??= agent.close().then(() => nc.drain()).catch(() => nc.close())),
  };
}

export interface CoordinatorDaemonOptions {
  id: string;
  natsUrl: string;
  grpcAddress: string;
  tls?: GrpcTlsOptions;
  replicas?: number;
  defaults?: Partial<MigrationOptions>;
  hostAliveMs?: number;
  logger?: Logger;
}

export async function runCoordinator(o: CoordinatorDaemonOptions): Promise<Daemon<Coordinator> & { grpc: GrpcServerHandle }> {
  const [{ Coordinator }, { startGrpcServer }] = await Promise.all([import("../coordinator/service.js"), import("../coordinator/grpc/server.js")]);
  const log = o.logger ?? createLogger("coordinator", { id: o.id });
  const nc = await connectNats(o.natsUrl, `netmig-coordinator-${o.id}`, log);
  const coordinator = new Coordinator({
    nc, id: o.id, log, ...(o.replicas ? { replicas: o.replicas } : {}), ...(o.defaults ? { defaults: o.defaults } : {}), ...(o.hostAliveMs ? { hostAliveMs: o.hostAliveMs } : {}),
  });
  await coordinator.start();
  const grpc = await startGrpcServer(coordinator, log, o.grpcAddress, o.tls);
  log.info({ grpc: grpc.address }, "gRPC API listening");
  let closing: Promise<void> | null = null;
  return {
    service: coordinator,
    nc,
    grpc,
    close: () => (closing ??= (async () => {
      await grpc.close();
      await coordinator.close();
      await nc.drain().catch(() => nc.close());
    })()),
  };
}
