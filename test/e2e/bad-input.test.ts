import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { ServiceError } from "@grpc/grpc-js";
import { connect, type NatsConnection } from "nats";
import { Packr } from "msgpackr";
import { createClient, unaryCall } from "../../cli/client.js";
import { runAgent, runCoordinator, type Daemon } from "../../cli/daemons.js";
import type { Agent } from "../../agent/service.js";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import { encodeEnvelope } from "../../protocol/codec/envelope.js";
import { encodeBlock } from "../../protocol/codec/columnar.js";
import { createLogger } from "../../protocol/log.js";
import { parseReply } from "../../protocol/rpc.js";
import { toDocument } from "../../protocol/state/document.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { subjects } from "../../protocol/subjects.js";
import { startNatsServer, type NatsServerHandle } from "../harness/nats-server.js";
import { waitFor } from "../harness/wait.js";

// Agent and coordinator run in this process, so the test sees their Object.prototype.
let nats: NatsServerHandle;
let nc: NatsConnection;
let agent: Daemon<Agent>;
let coord: Awaited<ReturnType<typeof runCoordinator>>;
let client: MigrationServiceClient;
const protoKeys = Object.getOwnPropertyNames(Object.prototype).sort();
const silent = createLogger("test");
silent.level = "silent";

before(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  agent = await runAgent({ hostId: "host-x", natsUrl: nats.url, stateDir: null, heartbeatMs: 200, maxMessageBytes: 256 * 1024, backend: { kind: "memory" }, logger: silent });
  coord = await runCoordinator({ id: "coord-x", natsUrl: nats.url, grpcAddress: "127.0.0.1:0", logger: silent });
  client = createClient({ address: coord.grpc.address });
  await waitFor(() => coord.service.listHosts().some((h) => h.hostId === "host-x" && h.alive), { what: "host-x alive" });
  await unaryCall(client, "ImportVmState", { host_id: "host-x", document: Buffer.from(JSON.stringify(toDocument(generateVmState("vm-ok", { conntrack: 100 })))) });
});
after(async () => {
  client?.close();
  await coord?.close();
  await agent?.close();
  await nc?.close();
  await nats?.stop();
});

function assertPrototypeClean(): void {
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), protoKeys, "Object.prototype was not touched");
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
}

/** Sends raw bytes to an agent subject; returns the error the agent replied with. */
async function sendRaw(subject: string, data: Uint8Array): Promise<{ code: string; message: string }> {
  const msg = await nc.request(subject, data, { timeout: 3000 });
  try {
    parseReply(msg.data);
  } catch (err) {
    return err as { code: string; message: string };
  }
  assert.fail("the agent accepted a bad message");
}

async function assertStillServing(): Promise<void> {
  const inv = await agent.service.inventory();
  assert.ok(inv.vms.some((v) => v.vmId === "vm-ok"));
  const res = await unaryCall<object, { hosts: unknown[] }>(client, "ListHosts", {});
  assert.ok(res.hosts.length > 0);
}

const op = (name: string) => subjects.agentOp("host-x", name as never);

test("bad input - truncated, random and oversized payloads get clear errors and the agent keeps serving", async () => {
  const good = encodeEnvelope({ kind: "describe", migrationId: "", vmId: "vm-ok", epoch: 0, seq: 0, body: {} });
  const truncated = await sendRaw(op("describe"), good.subarray(0, good.length - 5));
  assert.equal(truncated.code, "BAD_REQUEST");
  assert.match(truncated.message, /not valid msgpack|not a netmig envelope|envelope/);
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let i = 0; i < 50; i++) {
    const bytes = Uint8Array.from({ length: 1 + Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256));
    const e = await sendRaw(op(i % 2 ? "transfer" : "chunk"), bytes);
    assert.ok(["BAD_REQUEST", "UNSUPPORTED_VERSION", "PAYLOAD_TOO_LARGE"].includes(e.code), `random payload ${i}: ${e.code} ${e.message}`);
  }
  // Over the agent's 256 KiB cap: refused before decoding.
  const big = await sendRaw(op("write"), new Uint8Array(512 * 1024).fill(0xc0));
  assert.equal(big.code, "PAYLOAD_TOO_LARGE");
  assert.match(big.message, /524288 bytes exceeds the 262144-byte limit/);
  // Deeply nested arrays (0x91 = an array of one) must not take the agent down.
  const deep = await sendRaw(op("write"), new Uint8Array(200 * 1024).fill(0x91));
  assert.equal(deep.code, "BAD_REQUEST", deep.message);
  const unknownOp = await sendRaw(op("explode"), good);
  assert.match(unknownOp.message, /unknown agent command "explode"/);
  await assertStillServing();
  assertPrototypeClean();
});

test("bad input - a __proto__ key, an unknown version and malformed column blocks are refused", async () => {
  // Raw msgpack: an envelope whose body is { "__proto__": { "polluted": 1 } }.
  const raw = Buffer.concat([
    Buffer.from([0x87]),
    ...["v", 1, "kind", "write", "migrationId", "", "vmId", "vm-ok", "epoch", 0, "seq", 0].map((x) => new Packr().pack(x)),
    new Packr().pack("body"), Buffer.from([0x81, 0xa9]), Buffer.from("__proto__"), Buffer.from([0x81, 0xa8]), Buffer.from("polluted"), Buffer.from([0x01]),
  ]);
  const proto = await sendRaw(op("write"), raw);
  assert.equal(proto.code, "BAD_REQUEST");
  assert.match(proto.message, /forbidden key/);
  assertPrototypeClean();

  const v2 = await sendRaw(op("describe"), new Packr({ useRecords: false }).pack({ v: 2, kind: "describe", migrationId: "", vmId: "vm-ok", epoch: 0, seq: 0, body: {} }));
  assert.equal(v2.code, "UNSUPPORTED_VERSION");
  assert.match(v2.message, /envelope version 2 is not supported/);

  const block = encodeBlock("conntrack", generateVmState("x", { conntrack: 3 }).tables.conntrack);
  (block.c[0] as Uint8Array)[0] = 1;
  const shortCol = { ...block, n: 4 };
  const bad = await sendRaw(op("write"), encodeEnvelope({ kind: "write", migrationId: "", vmId: "vm-ok", epoch: 0, seq: 0, body: { upserts: [shortCol], deletes: {} } }));
  assert.equal(bad.code, "BAD_REQUEST");
  assert.match(bad.message, /conntrack.*expected 4 bytes/);

  for (const [sizes, want] of [[{ sockets: 5 }, /prepare request\.sizes has unknown table "sockets"/], [{ conntrack: -3 }, /prepare request\.sizes\.conntrack must be a row count from 0 to/]] as const) {
    const e = await sendRaw(op("prepare"), encodeEnvelope({ kind: "prepare", migrationId: "m-bad", vmId: "vm-new", epoch: 0, seq: 0, body: { srcHostId: "host-y", sizes } }));
    assert.equal(e.code, "BAD_REQUEST");
    assert.match(e.message, want);
  }

  const notBool = await sendRaw(op("describe"), encodeEnvelope({ kind: "describe", migrationId: "", vmId: "vm-ok", epoch: 0, seq: 0, body: { fresh: "no" } }));
  assert.match(notBool.message, /describe request\.fresh must be a boolean/);

  const ext = await sendRaw(op("describe"), new Packr({ moreTypes: true, structuredClone: true }).pack({ v: 1, kind: "describe", migrationId: "", vmId: "vm-ok", epoch: 0, seq: 0, body: { e: new Error("x"), r: /a+/ } }));
  assert.equal(ext.code, "BAD_REQUEST");
  assert.match(ext.message, /a value of type (Error|RegExp)/);
  await assertStillServing();
  assertPrototypeClean();
});

test("bad input - invalid state documents over gRPC get INVALID_ARGUMENT naming the problem", async () => {
  const cases: [string, RegExp][] = [
    ["{not json", /not valid JSON/],
    [JSON.stringify({ schemaVersion: 2, vmId: "v", tables: {} }), /schemaVersion 2 is not supported/],
    [JSON.stringify({ schemaVersion: 1, vmId: "bad id!", tables: {} }), /vmId must be/],
    [JSON.stringify({ schemaVersion: 1, vmId: "v", tables: { sockets: [] } }), /unknown table "sockets"/],
    [JSON.stringify({ schemaVersion: 1, vmId: "v", tables: { fdb: [{ mac: "x", vlan: 70000, ifaceId: "i", ageSec: 0, static: false }] } }), /tables\.fdb\[0\]: fdb\.vlan must be an integer from 0 to 65535/],
    ['{"schemaVersion":1,"vmId":"v","tables":{"fdb":[{"__proto__":{"polluted":1},"mac":"x","vlan":1,"ifaceId":"i","ageSec":0,"static":false}]}}', /fdb has no field "__proto__"/],
    ['{"__proto__":{"polluted":1},"schemaVersion":1,"vmId":"v"}', /unknown field "__proto__"/],
  ];
  for (const [doc, want] of cases) {
    try {
      await unaryCall(client, "ImportVmState", { host_id: "host-x", document: Buffer.from(doc) });
      assert.fail(`accepted: ${doc}`);
    } catch (err) {
      const e = err as ServiceError;
      assert.equal(e.code, 3 /* INVALID_ARGUMENT */, `${doc}: ${e.message}`);
      assert.match(e.details, want);
    }
  }
  try {
    await unaryCall(client, "StartMigration", { vm_id: "vm-ok", dst_host: "no such host!" });
    assert.fail("accepted a bad host id");
  } catch (err) {
    assert.match((err as ServiceError).details, /destination host must be/);
  }
  await assertStillServing();
  assertPrototypeClean();
});

test("bad input - a streaming call that cannot start ends with an error status, not a silent hang", async () => {
  const ended = (call: { on: (ev: string, f: (x?: unknown) => void) => unknown }) =>
    Promise.race([
      new Promise<ServiceError | "end">((resolve) => {
        call.on("error", (e) => resolve(e as ServiceError));
        call.on("end", () => resolve("end"));
      }),
      new Promise<"hang">((resolve) => setTimeout(() => resolve("hang"), 5000)),
    ]);
  const c = client as unknown as Record<string, (req: object) => { on: (ev: string, f: (x?: unknown) => void) => unknown }>;
  const watch = await ended(c.WatchMigration!({ migration_id: "m-no-such-migration" }));
  assert.ok(watch !== "hang" && watch !== "end", `WatchMigration of an unknown id: ${String(watch)}`);
  assert.equal(watch.code, 5 /* NOT_FOUND */, watch.details);
  const evac = await ended(c.EvacuateHost!({ src_host: "host-x", dst_hosts: ["host-x"], concurrency: 2 }));
  assert.ok(evac !== "hang" && evac !== "end", `EvacuateHost to itself: ${String(evac)}`);
  assert.equal(evac.code, 3 /* INVALID_ARGUMENT */, evac.details);
  assert.match(evac.details, /cannot evacuate host host-x to itself/);
  await assertStillServing();
});
