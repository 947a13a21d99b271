/**
 * The coordinator's typed client for agent commands (protocol/agent-api.ts).
 * Every call has a deadline.
 */
import type { NatsConnection } from "nats";
import {
  AgentOp, type ActivateReply, type TableSizes, type DescribeReply, type ExportReply, type FreezeReply, type InventoryReply, type TransferReply, type TransferRequest,
} from "../protocol/agent-api.js";
import { call } from "../protocol/rpc.js";
import { subjects } from "../protocol/subjects.js";

export interface Target {
  hostId: string;
  vmId: string;
  migrationId: string;
  epoch: number;
}

export class AgentClient {
  /** `controlTimeoutMs`: deadline for control commands. Default 5000. */
  constructor(private readonly nc: NatsConnection, private readonly controlTimeoutMs = 5000) {}

  private call<R>(t: Target, op: AgentOp, body: unknown, timeoutMs = this.controlTimeoutMs): Promise<R> {
    return call<R>(this.nc, subjects.agentOp(t.hostId, op), op, { migrationId: t.migrationId, vmId: t.vmId, epoch: t.epoch }, body, timeoutMs);
  }

  inventory(hostId: string): Promise<InventoryReply> {
    return call<InventoryReply>(this.nc, subjects.agentOp(hostId, AgentOp.inventory), AgentOp.inventory, { migrationId: "", vmId: "", epoch: 0 }, {}, this.controlTimeoutMs);
  }
  /** `fresh` false: as the agent last observed it (no dataplane read), counts where it has them. */
  describe(t: Target, fresh = true): Promise<DescribeReply> {
    return this.call(t, AgentOp.describe, fresh ? {} : { fresh: false });
  }
  /** `sizes`: the source's rows per table, for the destination to make room for before the freeze (a stop-and-copy). */
  prepare(t: Target, srcHostId: string, sizes?: TableSizes): Promise<{ ok: true }> {
    return this.call(t, AgentOp.prepare, { srcHostId, ...(sizes ? { sizes } : {}) });
  }
  transfer(t: Target, req: TransferRequest): Promise<TransferReply> {
    // The agent enforces the round's own deadline; give the reply a little more.
    return this.call(t, AgentOp.transfer, req, (req.timeoutMs ?? 60_000) + 5000);
  }
  freeze(t: Target): Promise<FreezeReply> {
    return this.call(t, AgentOp.freeze, {});
  }
  thaw(t: Target): Promise<{ ok: true }> {
    return this.call(t, AgentOp.thaw, {});
  }
  activate(t: Target): Promise<ActivateReply> {
    return this.call(t, AgentOp.activate, {});
  }
  release(t: Target): Promise<{ ok: true }> {
    return this.call(t, AgentOp.release, {});
  }
  abort(t: Target): Promise<{ ok: true }> {
    return this.call(t, AgentOp.abort, {});
  }
  export(t: Target, sink: string, timeoutMs: number): Promise<ExportReply> {
    return this.call(t, AgentOp.export, { sink }, timeoutMs);
  }
}
