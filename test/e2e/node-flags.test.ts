import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { runAgent } from "../../cli/daemons.js";
import { missingAgentFlags } from "../../cli/node-flags.js";
import { Cluster } from "../harness/cluster.js";
import { startNatsServer } from "../harness/nats-server.js";

const HINT = /running without the agent's Node flags/;

test("node flags - `netmig agent` started with them says nothing; without them it names them in its log", async () => {
  const c = await Cluster.start({ agents: ["host-a"] });
  try {
    assert.doesNotMatch(c.agents.get("host-a")!.log(), HINT, "the harness starts agents with the flags, and the agent sees them");
  } finally {
    await c.close();
  }
  // This test process has no such flags (unless NODE_OPTIONS gave them): an agent in it that checks says so, once.
  const nats = await startNatsServer();
  const lines: string[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(s) });
  const d = await runAgent({ hostId: "host-x", natsUrl: nats.url, stateDir: null, backend: { kind: "memory" }, logger, checkNodeFlags: true });
  await d.close();
  await nats.stop();
  const hints = lines.filter((l) => HINT.test(l));
  assert.equal(hints.length, missingAgentFlags().length ? 1 : 0, lines.join(""));
  if (hints.length) assert.match(hints[0]!, /--max-semi-space-size=4/);
});
