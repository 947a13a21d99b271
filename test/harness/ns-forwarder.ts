/**
 * Runs inside a test namespace:
 *
 *   ip netns exec <ns> node ns-forwarder.js <socket>=<host>:<port> [...]
 *
 * For each mapping, accepts on a Unix socket, which the file system makes
 * reachable from the test process in the root namespace, and pipes each
 * connection to <host>:<port> inside the namespace. So tests reach services
 * on a namespace network without any address or route in the root namespace.
 * Prints "ready" once every socket listens; exits on SIGTERM.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

/** Open connections, bounded so a runaway test cannot exhaust descriptors. */
const MAX_CONNECTIONS = 256;

const mappings = process.argv.slice(2).map((arg) => {
  const m = /^(.+)=([^=:]+):(\d{1,5})$/.exec(arg);
  if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) {
    console.error(`ns-forwarder: bad mapping ${JSON.stringify(arg)}; usage: ns-forwarder <unix-socket-path>=<host>:<port> [...]`);
    process.exit(2);
  }
  return { path: m[1]!, host: m[2]!, port: Number(m[3]) };
});
if (mappings.length === 0) {
  console.error("usage: ns-forwarder <unix-socket-path>=<host>:<port> [...]");
  process.exit(2);
}

const open = new Set<Socket>();
const servers: Server[] = [];

function forward(host: string, port: number) {
  return (a: Socket) => {
    if (open.size >= MAX_CONNECTIONS) {
      a.destroy();
      return;
    }
    const b = connect({ host, port });
    open.add(a);
    a.pipe(b);
    b.pipe(a);
    const end = () => {
      a.destroy();
      b.destroy();
      open.delete(a);
    };
    a.on("error", end).on("close", end);
    b.on("error", end).on("close", end);
  };
}

let listening = 0;
for (const { path, host, port } of mappings) {
  const server = createServer(forward(host, port));
  servers.push(server);
  server.on("error", (err) => {
    console.error(`ns-forwarder: ${path}: ${err.message}`);
    process.exit(1);
  });
  server.listen(path, () => {
    if (++listening === mappings.length) console.log("ready");
  });
}

process.on("SIGTERM", () => {
  for (const s of servers) s.close();
  for (const s of open) s.destroy();
  process.exit(0);
});
