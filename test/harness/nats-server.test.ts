// Tests of the nats-server launcher against the real binary.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { connect, Events, type NatsConnection } from "nats";
import { freePort } from "./free-port.js";
import {
  findNatsServer,
  NatsServerNotFoundError,
  NatsServerStartError,
  startNatsServer,
  type NatsServerHandle,
} from "./nats-server.js";
import { Deferred, waitFor } from "./wait.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when some file under `dir` contains `needle` (JetStream stores message bodies as they are). */
async function treeContains(dir: string, needle: string): Promise<boolean> {
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const content = await readFile(join(entry.parentPath ?? entry.path, entry.name));
    if (content.includes(needle)) return true;
  }
  return false;
}

async function withServer(
  srv: NatsServerHandle,
  body: (srv: NatsServerHandle) => Promise<void>,
  nc?: () => NatsConnection | undefined,
): Promise<void> {
  try {
    await body(srv);
  } finally {
    await nc?.()?.close();
    await srv.stop();
  }
}

test("harness - nats-server starts on a free port and serves JetStream", async () => {
  const srv = await startNatsServer();
  let nc: NatsConnection | undefined;
  await withServer(
    srv,
    async () => {
      assert.ok(srv.running);
      assert.ok(srv.port > 0 && srv.port < 65536, `port ${srv.port}`);
      assert.equal(srv.url, `nats://127.0.0.1:${srv.port}`);
      assert.ok(isAlive(srv.pid));
      assert.ok(srv.storeDir !== null && srv.storeDir.startsWith(srv.dir));

      nc = await connect({ servers: srv.url });
      const received = new Deferred<string>();
      const sub = nc.subscribe("harness.echo", { max: 1 });
      void (async () => {
        for await (const m of sub) received.resolve(dec.decode(m.data));
      })().catch((err: unknown) => received.reject(err));
      nc.publish("harness.echo", enc.encode("hello"));
      assert.equal(await received.wait({ timeoutMs: 5_000, what: "published message" }), "hello");

      const kv = await nc.jetstream().views.kv("t");
      await kv.put("k", enc.encode("v"));
      const entry = await kv.get("k");
      assert.equal(entry === null ? null : dec.decode(entry.value), "v");
    },
    () => nc,
  );
});

test("harness - nats-server kill is seen by the client and restart keeps JetStream data", async () => {
  const srv = await startNatsServer();
  let nc: NatsConnection | undefined;
  await withServer(
    srv,
    async () => {
      const conn = await connect({ servers: srv.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
      nc = conn;
      const events: string[] = [];
      void (async () => {
        for await (const s of conn.status()) events.push(s.type);
      })();

      const marker = `survives-kill-${process.pid}-${Date.now()}`;
      const kv = await conn.jetstream().views.kv("t");
      await kv.put("k", enc.encode(marker));
      // The server acks before its flusher writes the block file; a SIGKILL
      // before that write would lose the value, so wait until it is on disk.
      const storeDir = srv.storeDir;
      assert.ok(storeDir !== null);
      await waitFor(() => treeContains(storeDir, marker), { what: "KV value written to the JetStream store" });

      const { port, pid: firstPid } = srv;
      await srv.kill();
      assert.equal(srv.running, false);
      assert.equal(isAlive(firstPid), false, "killed server process is gone");
      await waitFor(() => events.includes(Events.Disconnect), { what: "client disconnect event" });
      assert.ok(existsSync(storeDir), "kill() keeps the store");

      await srv.restart();
      assert.equal(srv.running, true);
      assert.equal(srv.port, port, "same port after restart");
      assert.notEqual(srv.pid, firstPid);
      await waitFor(() => events.includes(Events.Reconnect), { what: "client reconnect event" });

      const entry = await kv.get("k");
      assert.equal(entry === null ? null : dec.decode(entry.value), marker);
    },
    () => nc,
  );
});

test("harness - nats-server stop({ keepData: true }) allows a restart with the same data", async () => {
  const srv = await startNatsServer();
  await withServer(srv, async () => {
    const nc = await connect({ servers: srv.url });
    const kv = await nc.jetstream().views.kv("t");
    await kv.put("k", enc.encode("kept"));
    await nc.close();

    await srv.stop({ keepData: true });
    assert.equal(srv.running, false);
    assert.ok(existsSync(srv.dir));

    await srv.restart();
    const nc2 = await connect({ servers: srv.url });
    try {
      const entry = await (await nc2.jetstream().views.kv("t")).get("k");
      assert.equal(entry === null ? null : dec.decode(entry.value), "kept");
    } finally {
      await nc2.close();
    }
  });
});

test("harness - nats-server stop is idempotent and removes the temp dir", async () => {
  const srv = await startNatsServer();
  const { pid, dir } = srv;
  assert.ok(existsSync(dir));

  await Promise.all([srv.stop(), srv.stop()]);
  await srv.stop();

  assert.equal(srv.running, false);
  assert.equal(isAlive(pid), false, "server process is gone");
  assert.equal(existsSync(dir), false, "temp dir removed");
  await assert.rejects(srv.restart(), /cannot be restarted/);
  assert.throws(() => srv.signal("SIGHUP"), /not running/);
});

test("harness - nats-server signal reaches the server process", async () => {
  const srv = await startNatsServer({ jetstream: false });
  await withServer(srv, async () => {
    srv.signal("SIGHUP");
    await waitFor(() => srv.log().includes("Reloaded server configuration"), { what: "config reload logged" });

    srv.signal("SIGTERM");
    await waitFor(() => !srv.running, { what: "server exit after SIGTERM" });
  });
});

test("harness - nats-server honours port, maxPayloadBytes and jetstream: false", async () => {
  const port = await freePort();
  const srv = await startNatsServer({ port, maxPayloadBytes: 64 * 1024, jetstream: false });
  let nc: NatsConnection | undefined;
  await withServer(
    srv,
    async () => {
      assert.equal(srv.port, port);
      assert.equal(srv.storeDir, null);
      nc = await connect({ servers: srv.url });
      assert.equal(nc.info?.max_payload, 64 * 1024);
      // Without JetStream nobody answers the JS API: the request fails with 503 (no responders).
      await assert.rejects(nc.jetstreamManager(), (err: unknown) => {
        assert.equal((err as { code?: unknown }).code, "503", String(err));
        return true;
      });
    },
    () => nc,
  );
});

test("harness - nats-server start fails fast with the server's output when the port is taken", async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const addr = blocker.address();
  assert.ok(addr !== null && typeof addr === "object");
  try {
    const started = Date.now();
    await assert.rejects(startNatsServer({ port: addr.port, startTimeoutMs: 8_000 }), (err: unknown) => {
      assert.ok(err instanceof NatsServerStartError, String(err));
      assert.match(err.message, /exited early/);
      assert.match(err.serverLog, /address already in use/);
      return true;
    });
    assert.ok(Date.now() - started < 5_000, "early exit is detected before the start timeout");
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});

test("harness - nats-server missing binary error says how to install it", async () => {
  assert.notEqual(findNatsServer(), null, "nats-server is installed (node scripts/setup.mjs installs it)");
  await assert.rejects(startNatsServer({ binary: "/nonexistent/nats-server" }), (err: unknown) => {
    assert.ok(err instanceof NatsServerNotFoundError, String(err));
    assert.match(err.message, /apt-get install nats-server/);
    return true;
  });
});
