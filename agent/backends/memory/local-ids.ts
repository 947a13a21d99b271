/**
 * Host-local identifiers of VM ports: interface name, OpenFlow port number
 * and conntrack zone. Each host allocates its own; a migration remaps the
 * source's to the destination's instead of copying them.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";

export interface LocalPortIds {
  name: string;
  ofport: number;
  ctZone: number;
}

export class LocalIds {
  private readonly byIface = new Map<string, LocalPortIds>();
  private nextOfport = 1;
  private nextZone: number;

  /** `firstZone` lets hosts start from different zones (makes remapping visible). */
  constructor(private readonly file: string | null, firstZone: number) {
    this.nextZone = firstZone;
    if (file && existsSync(file)) {
      const saved = JSON.parse(readFileSync(file, "utf8")) as { ports: [string, LocalPortIds][]; nextOfport: number; nextZone: number };
      for (const [k, v] of saved.ports) this.byIface.set(k, v);
      this.nextOfport = saved.nextOfport;
      this.nextZone = saved.nextZone;
    }
  }

  get(ifaceId: string): LocalPortIds | undefined {
    return this.byIface.get(ifaceId);
  }

  /** This host's ids for a port, allocated on first use. */
  assign(ifaceId: string): LocalPortIds {
    let ids = this.byIface.get(ifaceId);
    if (!ids) {
      const ofport = this.nextOfport++;
      const ctZone = this.nextZone;
      this.nextZone = this.nextZone >= 0xfffe ? 1 : this.nextZone + 1;
      ids = { name: `vnet${ofport}`, ofport, ctZone };
      this.byIface.set(ifaceId, ids);
      this.save();
    }
    return ids;
  }

  release(ifaceIds: Iterable<string>): void {
    let changed = false;
    for (const id of ifaceIds) changed = this.byIface.delete(id) || changed;
    if (changed) this.save();
  }

  private save(): void {
    if (!this.file) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ ports: [...this.byIface], nextOfport: this.nextOfport, nextZone: this.nextZone }));
    renameSync(tmp, this.file);
  }
}
