/**
 * A JSON-RPC 1.0 connection over a unix socket, as OVS speaks it (RFC 7047
 * for ovsdb-server, the same framing for ovs-vswitchd's unixctl socket):
 * requests are pipelined, replies matched by id, the server's "echo"
 * requests answered. Every call has a deadline.
 */
import { createConnection, type Socket } from "node:net";
import { BackendError, TimeoutError, UnavailableError } from "../../../protocol/errors.js";
import { JsonStreamSplitter } from "../common/json-stream.js";

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  method: string;
}

export class JsonRpcSocket {
  private sock: Socket | null = null;
  private connecting: Promise<Socket> | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  /** @param path unix socket path; @param what name for errors ("ovsdb-server", "ovs-vswitchd") */
  constructor(readonly path: string, private readonly what: string, private readonly connectTimeoutMs = 5000) {}

  private connect(): Promise<Socket> {
    if (this.sock) return Promise.resolve(this.sock);
    if (this.connecting) return this.connecting;
    const timeoutErr = new UnavailableError(`${this.what}: cannot connect to ${this.path} within ${this.connectTimeoutMs} ms`);
    this.connecting = new Promise<Socket>((resolve, reject) => {
      const s = createConnection(this.path);
      s.setEncoding("utf8");
      const splitter = new JsonStreamSplitter();
      const timer = setTimeout(() => {
        s.destroy();
        reject(timeoutErr);
      }, this.connectTimeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        this.sock = s;
        resolve(s);
      });
      s.on("data", (chunk: string) => {
        let msgs: unknown[];
        try {
          msgs = splitter.push(chunk);
        } catch (e) {
          s.destroy(e as Error);
          return;
        }
        for (const m of msgs) this.onMessage(s, m as Record<string, unknown>);
      });
      s.on("error", (e) => {
        clearTimeout(timer);
        reject(new UnavailableError(`${this.what}: ${this.path}: ${e.message}`, {}, { cause: e }));
      });
      s.on("close", () => {
        if (this.sock === s) this.sock = null;
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new UnavailableError(`${this.what}: connection to ${this.path} closed during ${p.method}`));
          this.pending.delete(id);
        }
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private onMessage(s: Socket, m: Record<string, unknown>): void {
    if (m.method === "echo" && m.id !== undefined) {
      s.write(JSON.stringify({ id: m.id, result: m.params ?? [], error: null }));
      return;
    }
    if (typeof m.id !== "number") return; // notifications (monitor updates) are not used
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error !== null && m.error !== undefined) {
      p.reject(new BackendError(`${this.what} ${p.method}: ${typeof m.error === "string" ? m.error.trim() : JSON.stringify(m.error)}`));
    } else p.resolve(m.result);
  }

  /** Sends one request; resolves with its result. */
  async call(method: string, params: unknown[], timeoutMs = 10_000): Promise<unknown> {
    const [r] = await this.callMany(method, [params], timeoutMs);
    return r;
  }

  /**
   * Sends many requests of one method back to back (one write) and waits for
   * all replies. Per-request errors are returned as Error values, not thrown.
   */
  async callMany(method: string, paramsList: unknown[][], timeoutMs = 30_000, settle = false): Promise<unknown[]> {
    if (this.closed) throw new UnavailableError(`${this.what}: client closed`);
    const timeoutErr = new TimeoutError(`${this.what} ${method}: no reply within ${timeoutMs} ms`);
    const s = await this.connect();
    const promises: Promise<unknown>[] = [];
    const parts: string[] = [];
    for (const params of paramsList) {
      const id = this.nextId++;
      promises.push(
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            this.pending.delete(id);
            reject(timeoutErr);
          }, timeoutMs);
          this.pending.set(id, { resolve, reject, timer, method });
        }),
      );
      parts.push(JSON.stringify({ method, params, id }));
    }
    s.write(parts.join(""));
    if (!settle) return Promise.all(promises);
    const out = await Promise.allSettled(promises);
    return out.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error)));
  }

  close(): void {
    this.closed = true;
    this.sock?.destroy();
    this.sock = null;
  }
}
