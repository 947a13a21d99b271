/**
 * What the coordinator knows about hosts: each agent's last heartbeat and the
 * VMs it reported. A host is alive while its heartbeats keep coming.
 */
import type { NatsConnection, Subscription } from "nats";
import type { VmStatus } from "../protocol/agent-api.js";
import { parseReply } from "../protocol/rpc.js";
import { subjects } from "../protocol/subjects.js";
import type { Logger } from "../protocol/log.js";

export interface HeartbeatVm {
  vmId: string;
  status: VmStatus;
  epoch: number;
  migrationId?: string;
}

export interface HostInfo {
  hostId: string;
  backend: string;
  lastSeenMs: number;
  startedAt: number;
  vms: HeartbeatVm[];
}

export class HostRegistry {
  private readonly hosts = new Map<string, HostInfo>();
  private sub: Subscription | null = null;

  /** `aliveMs`: a host is alive if heard from within this long. Default 5000. */
  constructor(private readonly nc: NatsConnection, private readonly log: Logger, private readonly aliveMs = 5000, private readonly onHeartbeat?: (h: HostInfo) => void) {}

  start(): void {
    this.sub = this.nc.subscribe(subjects.heartbeatAll, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const hb = parseReply<HostInfo>(msg.data);
          if (typeof hb.hostId !== "string" || !Array.isArray(hb.vms)) return;
          const info: HostInfo = { hostId: hb.hostId, backend: String(hb.backend), startedAt: Number(hb.startedAt) || 0, lastSeenMs: Date.now(), vms: hb.vms };
          this.hosts.set(hb.hostId, info);
          this.onHeartbeat?.(info);
        } catch (e) {
          this.log.warn({ err: e, subject: msg.subject }, "ignored a malformed heartbeat");
        }
      },
    });
  }

  stop(): void {
    this.sub?.unsubscribe();
  }

  get(hostId: string): HostInfo | undefined {
    return this.hosts.get(hostId);
  }

  isAlive(hostId: string): boolean {
    const h = this.hosts.get(hostId);
    return !!h && Date.now() - h.lastSeenMs <= this.aliveMs;
  }

  list(): (HostInfo & { alive: boolean })[] {
    return Array.from(this.hosts.values(), (h) => ({ ...h, alive: this.isAlive(h.hostId) })).sort((a, b) => a.hostId.localeCompare(b.hostId));
  }

  /** Live hosts that report the VM as active or frozen. */
  ownersOf(vmId: string): { hostId: string; epoch: number }[] {
    const out: { hostId: string; epoch: number }[] = [];
    for (const h of this.hosts.values()) {
      if (!this.isAlive(h.hostId)) continue;
      const v = h.vms.find((x) => x.vmId === vmId && (x.status === "active" || x.status === "frozen"));
      if (v) out.push({ hostId: h.hostId, epoch: v.epoch });
    }
    return out;
  }
}
