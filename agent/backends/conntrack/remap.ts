/**
 * Zone remapping on a destination: source zone → the source port's ifaceId
 * (from RemapContext.srcPortZones) → this host's zone for that port.
 * Zone 0 (the shared default zone, used by mark-selected VMs) stays 0.
 */
import { BadRequestError } from "../../../protocol/errors.js";
import type { RowBlock } from "../../../protocol/state/row-block.js";

export class ZoneRemapper {
  private readonly bySrcZone = new Map<number, string>();

  /**
   * @param srcPortZones the source's zone per ifaceId
   * @param dstZoneOf this host's zone for an ifaceId
   */
  constructor(srcPortZones: Record<string, number>, private readonly dstZoneOf: (ifaceId: string) => number) {
    // Sorted so two ports sharing a zone map the same way on every host.
    for (const ifaceId of Object.keys(srcPortZones).sort()) {
      const z = srcPortZones[ifaceId]!;
      if (z > 0 && !this.bySrcZone.has(z)) this.bySrcZone.set(z, ifaceId);
    }
  }

  /** The source port (ifaceId) of a source zone, or null for zone 0. */
  ifaceOf(srcZone: number, vmId: string): string | null {
    if (srcZone === 0) return null;
    const ifaceId = this.bySrcZone.get(srcZone);
    if (ifaceId === undefined) {
      throw new BadRequestError(`conntrack entry in source zone ${srcZone}, which is not the zone of any of the VM's ports`, { vmId });
    }
    return ifaceId;
  }

  zone(srcZone: number, vmId: string): number {
    const ifaceId = this.ifaceOf(srcZone, vmId);
    return ifaceId === null ? 0 : this.dstZoneOf(ifaceId);
  }

  /** The entries with this host's zones: one pass over the zone column, copied only if a zone changes. */
  remap(block: RowBlock<"conntrack">, vmId: string): RowBlock<"conntrack"> {
    return block.mapColumn("zone", (z) => this.zone(z, vmId));
  }
}
