/**
 * The far end of the benchmark's reference transfers, run as its own process
 * like an agent: `node responder.js <nats-url> <subject> ack|json`.
 *   ack   answers every message at once (the raw NATS floor);
 *   json  parses each message as a JSON array of row objects and stores the
 *         rows in a map by key before answering (the naive script).
 * Prints "ready" once subscribed; exits when its stdin closes.
 */
import { connect } from "nats";
import { keyOf, type TableName } from "../protocol/state/tables.js";

const [url, subject, mode] = process.argv.slice(2);
if (!url || !subject || (mode !== "ack" && mode !== "json")) {
  process.stderr.write("usage: responder <nats-url> <subject> ack|json\n");
  process.exit(2);
}
const nc = await connect({ servers: url });
const store = new Map<string, unknown>();
const empty = new Uint8Array(0);
const sub = nc.subscribe(subject, {
  callback: (_err, msg) => {
    if (mode === "json") {
      const { table, rows } = JSON.parse(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength).toString("utf8")) as { table: TableName; rows: unknown[] };
      for (const r of rows) store.set(keyOf(table, r), r);
    }
    msg.respond(empty);
  },
});
await nc.flush();
process.stdout.write("ready\n");
process.stdin.resume();
process.stdin.on("end", () => {
  sub.unsubscribe();
  void nc.close().then(() => process.exit(0));
});
