/**
 * The OVSDB client: `transact` over RFC 7047 JSON-RPC on ovsdb-server's unix
 * socket. Measured against `ovs-vsctl` (a process per call, ~10 ms each,
 * see bench/dataplane.ts), one round trip here is well under a millisecond.
 */
import { BackendError } from "../../../protocol/errors.js";
import { JsonRpcSocket } from "./jsonrpc-socket.js";
import type { OvsRow } from "./ovsdb-data.js";

export type OvsdbOp = Record<string, unknown>;

export class OvsdbClient {
  private readonly rpc: JsonRpcSocket;

  /** @param socketPath ovsdb-server's unix socket, e.g. /var/run/openvswitch/db.sock */
  constructor(socketPath: string, private readonly timeoutMs = 10_000, readonly database = "Open_vSwitch") {
    this.rpc = new JsonRpcSocket(socketPath, "ovsdb-server");
  }

  /** Runs operations as one transaction; throws BackendError naming the first failed op. */
  async transact(ops: OvsdbOp[], what = "transaction"): Promise<Record<string, unknown>[]> {
    if (ops.length === 0) return [];
    const res = (await this.rpc.call("transact", [this.database, ...ops], this.timeoutMs)) as Record<string, unknown>[];
    for (let i = 0; i < res.length; i++) {
      const r = res[i];
      if (r && typeof r === "object" && "error" in r && r.error) {
        throw new BackendError(`ovsdb ${what}: ${String(r.error)}${r.details ? ` (${String(r.details)})` : ""}${i < ops.length ? ` in op ${i} (${String(ops[i]!.op)} ${String(ops[i]!.table ?? "")})` : ""}`);
      }
    }
    return res;
  }

  /** Selects all rows of several tables in one round trip. */
  async selectAll(tables: Record<string, string[]>): Promise<Record<string, OvsRow[]>> {
    const names = Object.keys(tables);
    const res = await this.transact(names.map((t) => ({ op: "select", table: t, where: [], columns: ["_uuid", ...tables[t]!] })), "select");
    const out: Record<string, OvsRow[]> = {};
    names.forEach((t, i) => (out[t] = (res[i]!.rows ?? []) as OvsRow[]));
    return out;
  }

  close(): void {
    this.rpc.close();
  }
}
