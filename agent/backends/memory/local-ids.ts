/**
 * Host-local identifiers of VM ports: interface name, OpenFlow port number
 * and conntrack zone. Each host allocates its own; a migration remaps the
 * source's to the destination's instead of copying them.
 *
 *   <stateDir>/local-ids.log   [ifaceId, ids] per assigned port, and the
 *                              counters under "" (see keyed-log.ts)
 *
 * Ports are assigned while a migration stages its first round: an append
 * each, never a rewrite of the whole table. A `local-ids.json` written by an
 * older netmig is read once and folded into the log.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { KeyedLog } from "../../keyed-log.js";

export interface LocalPortIds {
  name: string;
  ofport: number;
  ctZone: number;
}

/** The next ids to hand out, kept under the key "". */
interface NextIds {
  nextOfport: number;
  nextZone: number;
}

const COUNTERS = "";

function isEntry(v: unknown): v is LocalPortIds | NextIds {
  if (v === null || typeof v !== "object") return false;
  const o = v as Record<string, unknown>;
  return (typeof o.name === "string" && typeof o.ofport === "number" && typeof o.ctZone === "number") || (typeof o.nextOfport === "number" && typeof o.nextZone === "number");
}

export class LocalIds {
  private readonly log: KeyedLog<LocalPortIds | NextIds>;
  private nextOfport = 1;
  private nextZone: number;

  /** `firstZone` lets hosts start from different zones (makes remapping visible). */
  constructor(file: string | null, firstZone: number) {
    this.nextZone = firstZone;
    this.log = new KeyedLog(file, isEntry);
    const legacy = file?.replace(/\.log$/, ".json");
    if (legacy && legacy !== file && existsSync(legacy)) {
      const saved = JSON.parse(readFileSync(legacy, "utf8")) as { ports: [string, LocalPortIds][]; nextOfport: number; nextZone: number };
      for (const [k, v] of saved.ports) if (k !== COUNTERS && !this.log.get(k)) this.log.set(k, v);
      if (!this.log.get(COUNTERS)) this.log.set(COUNTERS, { nextOfport: saved.nextOfport, nextZone: saved.nextZone });
      rmSync(legacy, { force: true });
    }
    const next = this.log.get(COUNTERS) as NextIds | undefined;
    if (next) {
      this.nextOfport = next.nextOfport;
      this.nextZone = next.nextZone;
    }
  }

  get(ifaceId: string): LocalPortIds | undefined {
    return ifaceId === COUNTERS ? undefined : (this.log.get(ifaceId) as LocalPortIds | undefined);
  }

  /** This host's ids for a port, allocated on first use. */
  assign(ifaceId: string): LocalPortIds {
    let ids = this.get(ifaceId);
    if (!ids) {
      const ofport = this.nextOfport++;
      const ctZone = this.nextZone;
      this.nextZone = this.nextZone >= 0xfffe ? 1 : this.nextZone + 1;
      ids = { name: `vnet${ofport}`, ofport, ctZone };
      this.log.set(COUNTERS, { nextOfport: this.nextOfport, nextZone: this.nextZone });
      this.log.set(ifaceId, ids);
    }
    return ids;
  }

  release(ifaceIds: Iterable<string>): void {
    for (const id of ifaceIds) if (id !== COUNTERS) this.log.delete(id);
  }

  close(): void {
    this.log.close();
  }
}
