/**
 * What netmig must remember about a VM on this host to release it even after
 * its ports are gone (libvirt deletes the tap before the release hook runs)
 * or after an agent restart: its ports' zones, its mirrors, and the fdb
 * entries held static after an activation. One small JSON file per VM.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface Footprint {
  /** Conntrack zone per ifaceId. */
  zones: Record<string, number>;
  /** Names of mirrors that selected the VM's ports. */
  mirrors: string[];
  /** fdb entries [vlan, mac] added static at activation, to release at `holdUntilMs`. */
  heldFdb: [number, string][];
  holdUntilMs: number;
  /** QoS and Queue row uuids the VM's ports used (root tables: deleted on release when unreferenced). */
  qosRows: string[];
  queueRows: string[];
}

export function emptyFootprint(): Footprint {
  return { zones: {}, mirrors: [], heldFdb: [], holdUntilMs: 0, qosRows: [], queueRows: [] };
}

export class FootprintStore {
  private readonly cache = new Map<string, string>();

  constructor(private readonly dir: string) {}

  private file(vmId: string): string {
    return join(this.dir, "vms", `${encodeURIComponent(vmId)}.json`);
  }

  async load(vmId: string): Promise<Footprint> {
    try {
      const text = await readFile(this.file(vmId), "utf8");
      this.cache.set(vmId, text);
      return { ...emptyFootprint(), ...(JSON.parse(text) as Partial<Footprint>) };
    } catch {
      return emptyFootprint();
    }
  }

  /** Writes only when the content changed. */
  async save(vmId: string, fp: Footprint): Promise<void> {
    const text = JSON.stringify(fp);
    if (this.cache.get(vmId) === text) return;
    await mkdir(join(this.dir, "vms"), { recursive: true });
    await writeFile(`${this.file(vmId)}.tmp`, text);
    await rename(`${this.file(vmId)}.tmp`, this.file(vmId));
    this.cache.set(vmId, text);
  }

  async delete(vmId: string): Promise<void> {
    this.cache.delete(vmId);
    await rm(this.file(vmId), { force: true });
  }

  async list(): Promise<string[]> {
    try {
      return (await readdir(join(this.dir, "vms"))).filter((n) => n.endsWith(".json")).map((n) => decodeURIComponent(n.slice(0, -5)));
    } catch {
      return [];
    }
  }
}
