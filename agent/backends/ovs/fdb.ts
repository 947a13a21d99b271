/**
 * L2 learning (fdb) entries of a VM: the MACs learned on its ports.
 * Read with `fdb/show`, written with `fdb/add` (static entries) and removed
 * with `fdb/del`, all through ovs-vswitchd's unixctl socket in one
 * pipelined write.
 *
 * On a destination the copied entries are added static at activation, so
 * frames reach the VM before it sends anything, then released after a hold
 * time so that normal learning takes over. Entries static on the source
 * stay static.
 */
import { BackendError } from "../../../protocol/errors.js";
import type { FdbRow } from "../../../protocol/state/tables.js";
import type { UnixctlClient } from "./unixctl-client.js";

export interface FdbEntry {
  ofport: number;
  vlan: number;
  mac: string;
  ageSec: number;
  static: boolean;
}

export function parseFdbShow(text: string): FdbEntry[] {
  const out: FdbEntry[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*(\d+)\s+(\d+)\s+([0-9a-f:]{17})\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    const isStatic = m[4] === "static";
    out.push({ ofport: Number(m[1]), vlan: Number(m[2]), mac: m[3]!, ageSec: isStatic ? 0 : Number(m[4]) || 0, static: isStatic });
  }
  return out;
}

export class Fdb {
  constructor(private readonly ctl: () => Promise<UnixctlClient>, private readonly bridge: string) {}

  async show(): Promise<FdbEntry[]> {
    const c = await this.ctl();
    return parseFdbShow(await c.call("fdb/show", [this.bridge]));
  }

  /** Adds static entries: [port name, vlan, mac]. Throws naming the first failure. */
  async add(entries: [string, number, string][], vmId: string): Promise<void> {
    const c = await this.ctl();
    const res = await c.callMany("fdb/add", entries.map(([port, vlan, mac]) => [this.bridge, port, String(vlan), mac]));
    const failed = res.map((r, i) => [r, i] as const).filter(([r]) => r instanceof Error);
    if (failed.length) {
      const [err, i] = failed[0]!;
      throw new BackendError(`fdb/add failed for ${failed.length} of ${entries.length} entries (first: ${entries[i]!.join(" ")}: ${(err as Error).message})`, { vmId });
    }
  }

  /** Deletes entries: [vlan, mac]. Missing entries are fine. */
  async del(entries: [number, string][]): Promise<void> {
    const c = await this.ctl();
    await c.callMany("fdb/del", entries.map(([vlan, mac]) => [this.bridge, String(vlan), mac]));
  }
}

/** The row form of a learned entry on one of the VM's ports. */
export function fdbRow(e: FdbEntry, ifaceId: string): FdbRow {
  return { mac: e.mac, vlan: e.vlan, ifaceId, ageSec: e.ageSec, static: e.static };
}
