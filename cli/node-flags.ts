/**
 * The Node (V8) flags an agent runs with, and how to tell whether it does.
 *
 * `--max-semi-space-size=4` (MB): a young generation of 8 MB instead of 32.
 * An agent allocates far more in ArrayBuffers (received and sent chunks,
 * decoded columns) than in JS objects, and V8 frees a dead young
 * ArrayBuffer's memory at the next scavenge. With the default young
 * generation few scavenges come while a big round streams, and dead chunk
 * buffers pile up until external memory pressure forces a major collection
 * (~64 MB later). Measured on a 1M-entry VM's migrations: peak RSS 3.1–3.4×
 * the encoded state over baseline without the flag, 2.8–2.9× with it, freeze
 * windows unchanged (docs/performance.md).
 *
 * V8 reads the flag at startup only: give it on the node command line or in
 * NODE_OPTIONS (docker-compose.yml does, for its agents; so does the test
 * and benchmark harness).
 */
export const AGENT_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=4"];

/** The agent flags this process was started without (from its command line and NODE_OPTIONS). */
export function missingAgentFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ""): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].map((a) => a.split("=")[0]!.replace(/_/g, "-"));
  return AGENT_NODE_FLAGS.filter((f) => !given.includes(f.split("=")[0]!));
}
