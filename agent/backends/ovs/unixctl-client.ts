/**
 * ovs-vswitchd's unixctl socket (what `ovs-appctl` talks to), used directly
 * so that thousands of `fdb/add` commands are one pipelined write instead of
 * one ovs-appctl process each.
 */
import { JsonRpcSocket } from "./jsonrpc-socket.js";

export class UnixctlClient {
  private readonly rpc: JsonRpcSocket;

  /** @param socketPath e.g. /var/run/openvswitch/ovs-vswitchd.<pid>.ctl */
  constructor(socketPath: string, private readonly timeoutMs = 30_000) {
    this.rpc = new JsonRpcSocket(socketPath, "ovs-vswitchd");
  }

  async call(command: string, args: string[]): Promise<string> {
    return String(await this.rpc.call(command, args, this.timeoutMs));
  }

  /** Runs one command many times; returns per-call results or Errors. */
  async callMany(command: string, argsList: string[][]): Promise<(string | Error)[]> {
    if (argsList.length === 0) return [];
    const res = await this.rpc.callMany(command, argsList, this.timeoutMs, true);
    return res.map((r) => (r instanceof Error ? r : String(r)));
  }

  close(): void {
    this.rpc.close();
  }
}
