// Finds a TCP port that is free right now, by binding a server to port 0.
import { createServer } from "node:net";

/**
 * Returns a TCP port the OS reports free on `host` (default "127.0.0.1").
 * The port is released before this resolves, so another process may take it
 * first: prefer letting the server under test bind port 0 (or `port: -1` for
 * nats-server) and read back its port, and use this only when a port must be
 * known before the server starts.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new Error(`freePort: unexpected address ${String(addr)} for ${host}`));
        return;
      }
      const { port } = addr;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
