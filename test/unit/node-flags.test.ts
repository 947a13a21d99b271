import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AGENT_NODE_FLAGS, missingAgentFlags } from "../../cli/node-flags.js";

test("node flags - the agent's flags are found on the command line or in NODE_OPTIONS, in either spelling", () => {
  assert.deepEqual(missingAgentFlags([], ""), [...AGENT_NODE_FLAGS]);
  assert.deepEqual(missingAgentFlags(["--max-semi-space-size=4"], ""), []);
  assert.deepEqual(missingAgentFlags([], "--enable-source-maps --max_semi_space_size=8"), [], "another value is the operator's choice");
  assert.deepEqual(missingAgentFlags(["--max-old-space-size=512"], "--max-semi"), [...AGENT_NODE_FLAGS]);
});

test("node flags - docker-compose.yml starts its agents with them", () => {
  const compose = readFileSync(fileURLToPath(new URL("../../../docker-compose.yml", import.meta.url)), "utf8");
  assert.match(compose, new RegExp(`^  NODE_OPTIONS: ${AGENT_NODE_FLAGS.join(" ")}$`, "m"));
  assert.equal(compose.match(/environment: \*agent-env/g)?.length, 3, "every agent service uses them");
});
