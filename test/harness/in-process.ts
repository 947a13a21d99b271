/**
 * A small netmig cluster in the test's own process: a real nats-server, two
 * memory-backend agents (host-1, host-2) and coordinators with the options
 * a test needs (a fast sweep, a short lease), all logging nothing. For tests
 * that drive the Coordinator class directly; `Cluster` runs real processes.
 */
import { connect, type NatsConnection } from "nats";
import { runAgent, type Daemon } from "../../cli/daemons.js";
import type { Agent } from "../../agent/service.js";
import { Coordinator, type CoordinatorOptions } from "../../coordinator/service.js";
import { createLogger } from "../../protocol/log.js";
import { startNatsServer, type NatsServerHandle } from "./nats-server.js";
import { waitFor } from "./wait.js";

export interface InProcessCluster {
  nats: NatsServerHandle;
  nc: NatsConnection;
  agents: Daemon<Agent>[];
  coordinators: Coordinator[];
  close(): Promise<void>;
}

export async function startInProcess(coordinators: Omit<CoordinatorOptions, "nc" | "log">[]): Promise<InProcessCluster> {
  const silent = createLogger("test");
  silent.level = "silent";
  const nats = await startNatsServer();
  const agents: Daemon<Agent>[] = [];
  for (const hostId of ["host-1", "host-2"]) {
    agents.push(await runAgent({ hostId, natsUrl: nats.url, stateDir: null, heartbeatMs: 200, backend: { kind: "memory" }, logger: silent }));
  }
  const nc = await connect({ servers: nats.url });
  const coords: Coordinator[] = [];
  for (const o of coordinators) {
    const c = new Coordinator({ ...o, nc, log: silent });
    await c.start();
    coords.push(c);
  }
  await waitFor(() => coords[0]!.listHosts().filter((h) => h.alive).length === 2, { what: "both hosts alive" });
  return {
    nats, nc, agents, coordinators: coords,
    async close() {
      for (const c of coords.reverse()) await c.close();
      for (const a of agents) await a.close();
      await nc.close();
      await nats.stop();
    },
  };
}
